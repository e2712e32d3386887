//! Measurements and their reporting: per-op latency histograms, byte and op counts, CPU time
//! from getrusage, the printed table and the JSON file. Shared by every workload, engine-direct
//! now and S3-over-HTTP later.

use engine::util::human_bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Highest latency the histograms track exactly (longer ones are clamped): 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Significant decimal digits of every histogram bucket (under 0.1% error).
const HISTOGRAM_SIGFIG: u8 = 3;

/// One client thread's results for one phase; merged across threads at the end.
pub struct Recorder {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, HISTOGRAM_SIGFIG).expect("histogram bounds are valid"),
            ops: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
        }
    }

    pub fn ok(&mut self, latency: Duration, bytes: u64) {
        self.hist.saturating_record((latency.as_micros() as u64).clamp(1, MAX_LATENCY_US));
        self.ops += 1;
        self.bytes += bytes;
    }

    pub fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    pub fn merge(&mut self, o: Recorder) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Latency quantiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// CPU seconds used, split into what the load generator spent and the rest of the process
/// (the engine's cores, when the engine runs in-process).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cpu {
    pub client_secs: f64,
    pub process_secs: f64,
}

impl Cpu {
    /// CPU used by threads other than the clients', as a percentage of one core.
    pub fn other_pct(&self, wall_secs: f64) -> f64 {
        100.0 * (self.process_secs - self.client_secs).max(0.0) / wall_secs.max(1e-9)
    }
    pub fn client_pct(&self, wall_secs: f64) -> f64 {
        100.0 * self.client_secs / wall_secs.max(1e-9)
    }
}

/// The result of one phase (one kind of operation at one size and concurrency).
#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    pub name: String,
    pub object_bytes: u64,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub bytes: u64,
    pub secs: f64,
    pub mb_per_s: f64,
    pub ops_per_s: f64,
    pub latency: Latency,
    pub cpu: Cpu,
    /// Client CPU as % of one core.
    pub client_cpu_pct: f64,
    /// Everything else in the process (the engine), as % of one core.
    pub engine_cpu_pct: f64,
}

impl OpResult {
    pub fn new(name: &str, object_bytes: u64, concurrency: usize, r: Recorder, secs: f64, cpu: Cpu) -> OpResult {
        OpResult {
            name: name.to_string(),
            object_bytes,
            concurrency,
            ops: r.ops,
            errors: r.errors,
            first_error: r.first_error,
            bytes: r.bytes,
            secs,
            mb_per_s: r.bytes as f64 / 1e6 / secs.max(1e-9),
            ops_per_s: r.ops as f64 / secs.max(1e-9),
            latency: Latency::of(&r.hist),
            cpu,
            client_cpu_pct: cpu.client_pct(secs),
            engine_cpu_pct: cpu.other_pct(secs),
        }
    }
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage; `who` is RUSAGE_SELF or RUSAGE_THREAD.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// User + system CPU seconds of the calling thread.
pub fn thread_cpu_secs() -> f64 {
    rusage(libc::RUSAGE_THREAD)
}

/// User + system CPU seconds of the whole process (all threads, live and finished).
pub fn process_cpu_secs() -> f64 {
    rusage(libc::RUSAGE_SELF)
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

/// Print the per-op table: rate, latency quantiles and CPU split.
pub fn print_ops(results: &[OpResult]) {
    println!(
        "{:<12} {:>9} {:>5} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>4}",
        "op", "size", "conc", "ops", "MB/s", "ops/s", "p50", "p90", "p99", "p99.9", "max", "cli%", "eng%", "err"
    );
    for r in results {
        let l = r.latency;
        println!(
            "{:<12} {:>9} {:>5} {:>8} {:>10.1} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7.0} {:>7.0} {:>4}",
            r.name,
            human_bytes(r.object_bytes),
            r.concurrency,
            r.ops,
            r.mb_per_s,
            r.ops_per_s,
            fmt_us(l.p50_us),
            fmt_us(l.p90_us),
            fmt_us(l.p99_us),
            fmt_us(l.p999_us),
            fmt_us(l.max_us),
            r.client_cpu_pct,
            r.engine_cpu_pct,
            r.errors
        );
        if let Some(e) = &r.first_error {
            println!("  first error of {}: {e}", r.name);
        }
    }
    println!("(MB = 10^6 bytes; cli% / eng% = CPU of the client threads / the rest of the process, % of one core)");
}

/// Parse a size: a plain byte count or a number with K/KiB, M/MiB, G/GiB (all powers of 2).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("size {s:?} must start with a number, e.g. 16MiB or 4096"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        u => return Err(format!("unknown size unit {u:?} in {s:?}: use KiB, MiB or GiB")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Write any serialisable report to `path` as pretty JSON.
pub fn write_json<T: Serialize>(path: &std::path::Path, report: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_powers_of_two() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1000), "1000 B");
        // What the reports print as a size is a size the options accept.
        for n in [16 << 20, 4096, 1000, 1 << 30] {
            assert_eq!(parse_size(&human_bytes(n)), Ok(n));
        }
    }

    #[test]
    fn merged_recorders_keep_every_sample() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.ok(Duration::from_micros(100), 10);
        b.ok(Duration::from_micros(300), 10);
        b.error("boom".into());
        a.merge(b);
        assert_eq!((a.ops, a.bytes, a.errors), (2, 20, 1));
        assert_eq!(a.hist.max(), 300);
        assert_eq!(a.first_error.as_deref(), Some("boom"));
    }
}
