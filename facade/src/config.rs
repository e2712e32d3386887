//! The server's configuration: where data lives, which devices, which credentials.

use crate::handler::Credentials;
use engine::{DeviceSpec, Layout};
use std::path::{Path, PathBuf};

pub const CREDENTIALS_FILE: &str = "credentials";

pub struct ServerConfig {
    pub listen: String,
    pub data: PathBuf,
    /// Explicit devices; empty means the embedded default under `data`.
    pub devices: Vec<DeviceSpec>,
    pub k: usize,
    pub m: usize,
    /// Whether `--ec` was given: then it must be the set's.
    pub ec_given: bool,
    pub cores: usize,
    /// Pin each core's thread to its CPU (the default).
    pub pin: bool,
    pub domain: Option<String>,
    pub region: String,
    /// Size of each preallocated segment file, in MiB (tests use small ones).
    pub segment_mib: u64,
    /// Bytes per shard of a stripe, for objects written from now on.
    pub chunk_bytes: usize,
    /// Stripes of one object written at once.
    pub stripes_in_flight: usize,
    /// Hash every PUT's MD5 alone instead of batching a core's PUTs over SIMD lanes (for
    /// measuring the batcher).
    pub md5_single_stream: bool,
    /// Append to the metadata log through the page cache + fdatasync (for measuring the
    /// default O_DIRECT|O_DSYNC appends).
    pub log_buffered: bool,
    /// Background I/O shares (percent of the device bytes while the foreground is busy).
    pub io_shares: engine::IoShares,
    /// The scrubber re-reads the whole data set once per this many seconds.
    pub scrub_period_secs: u64,
    /// Bounds per core, past which clients get 503 SlowDown (see `server`).
    pub connections_per_core_max: usize,
    pub requests_per_core_max: usize,
    /// Serve HTTPS with this certificate and key (re-read on SIGHUP); plain HTTP when `None`.
    pub tls: Option<crate::tls::TlsFiles>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>` (see `probe`).
    pub metrics_token: Option<String>,
    /// Log one line per request (target `tessera::access`).
    pub access_log: bool,
}

/// Parse `K+M`.
pub fn parse_ec(s: &str) -> Result<(usize, usize), String> {
    let (k, m) = s.split_once('+').ok_or_else(|| format!("--ec {s:?} must be written K+M, e.g. 4+2"))?;
    let k = k.trim().parse().map_err(|_| format!("--ec {s:?}: K is not a number"))?;
    let m = m.trim().parse().map_err(|_| format!("--ec {s:?}: M is not a number"))?;
    Ok((k, m))
}

impl ServerConfig {
    pub fn layout(&self, shards: u32) -> Layout {
        let mut l = Layout::embedded(&self.data, shards);
        if !self.devices.is_empty() {
            l.devices = self.devices.clone();
        }
        l.k = self.k;
        l.m = self.m;
        l
    }
}

/// The EC (k, m) of the set, from the first device whose superblock reads; `None` when no
/// device of the list holds one.
pub fn formatted_ec(l: &Layout) -> Option<(usize, usize)> {
    l.devices.iter().find_map(|d| {
        let bytes = std::fs::read(d.path.join(engine::superblock::SUPERBLOCK_FILE)).ok()?;
        let sb = engine::superblock::Superblock::decode(&bytes).ok()?;
        Some((sb.k as usize, sb.m as usize))
    })
}

/// Whether `dir` is absent or an empty directory (a first start of the embedded default).
pub fn is_absent_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// The command line that formats `devices` (or the embedded default under `data`).
pub fn format_command(data: &Path, devices: &[DeviceSpec], k: usize, m: usize) -> String {
    let mut cmd = format!("tessera format --data {}", data.display());
    for d in devices {
        cmd.push_str(&format!(" --device {}={}", d.zone, d.path.display()));
    }
    cmd.push_str(&format!(" --ec {k}+{m}"));
    cmd
}

/// Decide, before anything is written, whether `tessera server` may use this layout: a set
/// that is formatted with the asked EC (or with no EC asked) goes on; an unformatted one is
/// formatted only when it is the embedded default on a first start (`first_start`: the data
/// directory was absent or empty). Returns whether to format.
pub fn check_start(cfg: &ServerConfig, layout: &Layout, first_start: bool) -> Result<bool, String> {
    match formatted_ec(layout) {
        Some((k, m)) => {
            if cfg.ec_given && (k, m) != (cfg.k, cfg.m) {
                return Err(format!(
                    "this device set was formatted with EC {k}+{m}; --ec {}+{} asks for another. The EC of a \
                     set is fixed when it is formatted: drop --ec (or give {k}+{m}), or format new devices",
                    cfg.k, cfg.m
                ));
            }
            Ok(false)
        }
        None if !cfg.devices.is_empty() => Err(format!(
            "none of the {} --device directories holds a tessera device ({} has no superblock): an \
             unmounted disk or a mistyped path? `tessera server` never formats a --device. To make a \
             new, empty store on them, run once:\n  {}",
            cfg.devices.len(),
            cfg.devices[0].path.display(),
            format_command(&cfg.data, &cfg.devices, cfg.k, cfg.m)
        )),
        None if !first_start => Err(format!(
            "the data directory {} holds files but no formatted device: it was not made by `tessera \
             server` (or its devices are elsewhere: give them with --device). To make a new, empty \
             store there, run once:\n  {}",
            cfg.data.display(),
            format_command(&cfg.data, &[], cfg.k, cfg.m)
        )),
        None => Ok(true),
    }
}

/// `tessera format`: lock the data directory, refuse devices that hold a tessera device, write
/// the superblocks.
pub fn format_cli(data: &Path, devices: Vec<DeviceSpec>, k: usize, m: usize, cores: usize) -> Result<(), String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let _lock = engine::dirlock::DirLock::acquire(data, "data directory").map_err(|e| e.to_string())?;
    let tablets = if cores == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { cores };
    let mut layout = Layout::embedded(data, tablets as u32);
    let explicit = !devices.is_empty();
    if explicit {
        layout.devices = devices;
    }
    layout.k = k;
    layout.m = m;
    // Each device directory is locked too: a running server's devices are refused.
    let mut locks = Vec::new();
    for d in &layout.devices {
        if d.path.exists() {
            locks.push(engine::dirlock::DirLock::acquire(&d.path, "device").map_err(|e| e.to_string())?);
        }
    }
    engine::format(&layout).map_err(|e| format!("nothing formatted: {e}"))?;
    let zones: std::collections::BTreeSet<&str> = layout.devices.iter().map(|d| d.zone.as_str()).collect();
    println!(
        "formatted {} devices in {} zones, EC {k}+{m}, {tablets} tablets; start with: tessera server --data {}{}",
        layout.devices.len(),
        zones.len(),
        data.display(),
        if explicit {
            layout.devices.iter().map(|d| format!(" --device {}={}", d.zone, d.path.display())).collect::<String>()
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Root credentials: from the environment, else from `data/credentials`, else generated and
/// stored there (mode 0600). Returns them and whether they were just generated.
pub fn credentials(data: &Path) -> std::io::Result<(Credentials, &'static str)> {
    if let (Ok(a), Ok(s)) = (std::env::var("TESSERA_ACCESS_KEY"), std::env::var("TESSERA_SECRET_KEY")) {
        if !a.is_empty() && !s.is_empty() {
            return Ok((Credentials { access_key: a, secret_key: s }, "environment"));
        }
    }
    let path = data.join(CREDENTIALS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut a = None;
        let mut s = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("access_key=") {
                a = Some(v.trim().to_string());
            }
            if let Some(v) = line.strip_prefix("secret_key=") {
                s = Some(v.trim().to_string());
            }
        }
        if let (Some(a), Some(s)) = (a, s) {
            return Ok((Credentials { access_key: a, secret_key: s }, "stored"));
        }
    }
    use rand::Rng;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::thread_rng();
    let access_key: String =
        "TSR".chars().chain((0..17).map(|_| UPPER[rng.gen_range(0..UPPER.len())] as char)).collect();
    let secret_key: String = (0..40).map(|_| SECRET[rng.gen_range(0..SECRET.len())] as char).collect();
    std::fs::create_dir_all(data)?;
    let body = format!("access_key={access_key}\nsecret_key={secret_key}\n");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
    }
    Ok((Credentials { access_key, secret_key }, "generated"))
}
