//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

pub mod crash_model;

use bytes::Bytes;
use engine::{DeviceSpec, Engine, EngineConfig, HealConfig, Layout};
use std::path::Path;

pub fn layout(root: &Path) -> Layout {
    Layout::embedded(root, 2)
}

/// Open (formatting on first use) the embedded 6-device, 3-zone, 4+2 layout under `root`.
pub fn open(root: &Path) -> Engine {
    open_with(root, 2)
}

/// Like `open`, without background repair or scrub: for tests that plant damage and check how
/// reads alone deal with it.
pub fn open_no_heal(root: &Path) -> Engine {
    open_cfg(root, 2, |cfg| {
        cfg.heal.repair = false;
        cfg.heal.scrub = false;
    })
}

pub fn open_with(root: &Path, cores: usize) -> Engine {
    open_cfg(root, cores, |_| {})
}

pub fn open_cfg(root: &Path, cores: usize, tune: impl FnOnce(&mut EngineConfig)) -> Engine {
    let l = layout(root);
    // Format only a fresh root: a test may have taken some devices away on purpose.
    if !l.devices.iter().any(|d| d.path.join("tessera.sb").exists()) {
        engine::format(&l).expect("format");
    }
    let mut cfg = test_config(l.devices);
    cfg.cores = cores;
    tune(&mut cfg);
    Engine::open(cfg).expect("open")
}

/// What every test engine runs with: 2 unpinned cores, 8 MiB segments, a small buffer pool,
/// 256 KiB chunks (the tests that plant damage compute shard offsets from that `CHUNK`; the
/// default chunk is covered by the server tests in `tests/`).
pub fn test_config(devices: Vec<DeviceSpec>) -> EngineConfig {
    let mut cfg = EngineConfig::new(devices);
    cfg.chunk_bytes = 256 << 10;
    cfg.cores = 2;
    cfg.segment_bytes = 8 << 20;
    cfg.pool_buffers = 64;
    cfg.pin = false;
    cfg
}

/// Open already formatted `devices` with the test configuration and `heal`.
pub fn open_devices(devices: Vec<DeviceSpec>, heal: HealConfig) -> Engine {
    let mut cfg = test_config(devices);
    cfg.heal = heal;
    Engine::open(cfg).expect("open")
}

/// Nine devices in three zones (z1..z3, three each), EC 4+2: a failed device's shards can be
/// re-placed zone-safely on the others.
pub fn layout9(root: &Path) -> Layout {
    let mut l = Layout::embedded(root, 2);
    l.devices = (0..9).map(|i| DeviceSpec::new(format!("z{}", i / 3 + 1), root.join(format!("dev{i}")))).collect();
    l
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn data(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

pub fn put(e: &Engine, b: &str, k: &str, d: Bytes) -> engine::ObjectInfo {
    block_on(e.put_bytes(b, k, Default::default(), d)).expect("put")
}

pub fn get(e: &Engine, b: &str, k: &str) -> Vec<u8> {
    block_on(e.get_bytes(b, k, None)).expect("get").1
}

/// Every segment file of every device (for corruption tests).
pub fn segment_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(root).unwrap().flatten() {
        for s in std::fs::read_dir(d.path()).unwrap().flatten() {
            if s.path().is_dir() {
                for f in std::fs::read_dir(s.path()).unwrap().flatten() {
                    if f.file_name().to_string_lossy().starts_with("seg-") {
                        v.push(f.path());
                    }
                }
            }
        }
    }
    v.sort();
    v
}

/// Feed `d` to a body channel in 1 MiB chunks while `call` consumes it.
pub async fn with_body<T>(d: Bytes, call: impl FnOnce(engine::PutBody) -> futures::future::BoxFuture<'static, T>) -> T {
    let (tx, rx) = engine::body_channel();
    let feed = async move {
        let mut off = 0;
        while off < d.len() {
            let n = (d.len() - off).min(1 << 20);
            if tx.send_async(engine::BodyItem::Data(d.slice(off..off + n))).await.is_err() {
                return;
            }
            off += n;
        }
        let _ = tx.send_async(engine::BodyItem::End { checksum: None }).await;
    };
    let (_, r) = futures::join!(feed, call(rx));
    r
}

pub fn upload_part(e: &Engine, b: &str, k: &str, upload: &str, n: u32, d: Bytes) -> engine::Result<engine::PartInfo> {
    let (e, b, k, u) = (e.clone(), b.to_string(), k.to_string(), upload.to_string());
    block_on(with_body(d, move |rx| Box::pin(async move { e.upload_part(&b, &k, &u, n, None, rx).await })))
}

/// A whole multipart upload of `parts` (their bytes); returns the object's info.
pub fn multipart_put(e: &Engine, b: &str, k: &str, parts: &[Bytes]) -> engine::ObjectInfo {
    let id = block_on(e.create_multipart(b, k, Default::default())).expect("create upload");
    let mut list = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let info = upload_part(e, b, k, &id, i as u32 + 1, p.clone()).expect("upload part");
        list.push((info.number, info.etag));
    }
    block_on(e.complete_multipart(b, k, &id, list, Default::default())).expect("complete")
}

pub fn md5_hex(d: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(d))
}

/// Objects of every kind a device loss or corruption test should cover: inline, one partial
/// stripe, exactly one stripe, several stripes, and multipart. (key, expected bytes).
pub fn put_object_zoo(e: &Engine, bucket: &str) -> Vec<(String, Bytes)> {
    let mut v = Vec::new();
    for (i, &n) in [0usize, 1, 4096, 16 << 10, (16 << 10) + 1, 300 << 10, 1 << 20, (3 << 20) + 5].iter().enumerate() {
        let k = format!("zoo/single-{n}");
        let d = data(1000 + i as u64, n);
        put(e, bucket, &k, d.clone());
        v.push((k, d));
    }
    let parts = [data(2000, 5 << 20), data(2001, (1 << 20) + 3)];
    let k = "zoo/multipart".to_string();
    let info = multipart_put(e, bucket, &k, &parts);
    assert!(info.etag.ends_with("-2\""), "{}", info.etag);
    let mut whole = Vec::new();
    for p in &parts {
        whole.extend_from_slice(p);
    }
    v.push((k, Bytes::from(whole)));
    v
}

/// Every object reads back bit-exact, whole and in a range that crosses stripes and parts.
pub fn check_object_zoo(e: &Engine, bucket: &str, zoo: &[(String, Bytes)], ctx: &str) {
    for (k, d) in zoo {
        let (info, got) = block_on(e.get_bytes(bucket, k, None)).unwrap_or_else(|err| panic!("{ctx}: {k}: {err}"));
        assert_eq!(info.size, d.len() as u64, "{ctx}: {k}");
        assert!(got == d.as_ref(), "{ctx}: {k} differs from what was written");
        if d.len() > 2 {
            let (a, b) = (d.len() as u64 / 3, d.len() as u64 - 2);
            let (_, got) = block_on(e.get_bytes(bucket, k, Some(engine::RangeSpec::FromTo(a, Some(b)))))
                .unwrap_or_else(|err| panic!("{ctx}: {k} range: {err}"));
            assert!(got == d[a as usize..=b as usize], "{ctx}: {k} range {a}-{b} differs");
        }
    }
}

pub fn degraded_reads(e: &Engine) -> u64 {
    block_on(e.stats()).unwrap().iter().map(|s| s.degraded_reads).sum()
}

/// A random seed for a test, printed so a failure can be replayed with TEST_SEED.
pub fn seed() -> u64 {
    let s = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {s} (replay with TEST_SEED={s})");
    s
}

/// Polls `Engine::status()` until `done` holds; fails the test after `limit`, showing the status.
pub fn wait_for(
    what: &str,
    e: &Engine,
    limit: std::time::Duration,
    mut done: impl FnMut(&engine::HealthStatus) -> bool,
) -> engine::HealthStatus {
    let start = std::time::Instant::now();
    loop {
        let st = block_on(e.status()).unwrap();
        if done(&st) {
            return st;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}: {st:#?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
