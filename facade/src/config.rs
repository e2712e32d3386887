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
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>` (see `probe`).
    pub metrics_token: Option<String>,
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

/// Whether any device of the set already carries a superblock.
pub fn any_formatted(l: &Layout) -> bool {
    l.devices.iter().any(|d| d.path.join(engine::superblock::SUPERBLOCK_FILE).exists())
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
