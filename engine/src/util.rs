//! Small helpers shared by the engine's modules.

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub const ALIGN_BYTES: usize = 4096;

pub fn align_up(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}
