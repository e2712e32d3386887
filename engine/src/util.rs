//! Small helpers shared by the engine's modules.

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub const ALIGN_BYTES: usize = 4096;

pub fn align_up(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}

/// A byte count for people, in binary units: exact when it is a whole number of its largest
/// unit (`16 MiB`, `4 KiB`, `1000 B`), else with one decimal rounded down (`1.5 GiB`), so a
/// limit or a size is never shown larger than it is. The one formatter of the project's
/// command-line output (`tessera doctor`, `tessera status`, `tessera-bench`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    let Some(&(unit, name)) = UNITS.iter().find(|(unit, _)| n >= *unit) else {
        return format!("{n} B");
    };
    if n.is_multiple_of(unit) {
        return format!("{} {name}", n / unit);
    }
    let tenths = u128::from(n) * 10 / u128::from(unit);
    format!("{}.{} {name}", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_is_exact_when_it_can_be_and_never_rounds_up() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(3 << 20), "3 MiB");
        assert_eq!(human_bytes((3 << 20) + (512 << 10)), "3.5 MiB");
        // 8 MiB less one byte is below 8 MiB, and says so.
        assert_eq!(human_bytes((8 << 20) - 1), "7.9 MiB");
        assert_eq!(human_bytes(64 << 30), "64 GiB");
        assert_eq!(human_bytes(5 << 40), "5 TiB");
        assert_eq!(human_bytes(1 << 50), "1024 TiB");
        assert_eq!(human_bytes(u64::MAX), "16777215.9 TiB");
    }
}
