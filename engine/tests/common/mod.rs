//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use engine::{Engine, EngineConfig, Layout};
use std::path::Path;

pub fn layout(root: &Path) -> Layout {
    Layout::embedded(root, 2)
}

/// Open (formatting on first use) the embedded 6-device, 3-zone, 4+2 layout under `root`.
pub fn open(root: &Path) -> Engine {
    open_with(root, 2)
}

pub fn open_with(root: &Path, cores: usize) -> Engine {
    let l = layout(root);
    if !l.devices[0].path.join("tessera.sb").exists() && !l.devices[1].path.join("tessera.sb").exists() {
        engine::format(&l).expect("format");
    }
    let mut cfg = EngineConfig::new(l.devices);
    cfg.cores = cores;
    cfg.segment_bytes = 8 << 20;
    cfg.pool_buffers = 64;
    cfg.pin = false;
    Engine::open(cfg).expect("open")
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
