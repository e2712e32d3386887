//! Space reclamation: under a steady overwrite workload that leaves a few long-lived objects in
//! every segment, compaction keeps the bytes on disk bounded, and concurrent overwrites never
//! lose or corrupt data.

mod common;
use common::*;
use engine::{Engine, EngineConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;

const SEGMENT_BYTES: u64 = 2 << 20;
const WRITERS: usize = 3;
const OPS_PER_WRITER: usize = 100;
const HOT_KEYS_PER_WRITER: usize = 2;
/// Every this many operations a writer adds a new object it never touches again.
const COLD_EVERY: usize = 8;

fn open_small_segments(root: &Path) -> Engine {
    let l = layout(root);
    if !l.devices.iter().any(|d| d.path.join("tessera.sb").exists()) {
        engine::format(&l).unwrap();
    }
    let mut cfg = EngineConfig::new(l.devices);
    cfg.cores = 2;
    cfg.segment_bytes = SEGMENT_BYTES;
    cfg.pool_buffers = 64;
    cfg.pin = false;
    Engine::open(cfg).unwrap()
}

fn disk_bytes(root: &Path) -> u64 {
    segment_files(root).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
}

/// Bytes the live objects need on disk at 4+2 (shards are padded to 4 KiB).
fn live_disk_bytes(model: &BTreeMap<String, (u64, usize)>) -> u64 {
    model.values().map(|&(_, n)| (n as u64).div_ceil(4 * 4096) * 4096 * 6).sum()
}

fn bound(model: &BTreeMap<String, (u64, usize)>) -> u64 {
    // Sealed segments stay at least COMPACT_LIVE_PERCENT live, so at most twice the live bytes;
    // plus per tablet and device a few segments in flight (active, being compacted).
    let slack = 2 * 6 * 4 * SEGMENT_BYTES;
    live_disk_bytes(model) * 100 / engine::COMPACT_LIVE_PERCENT + slack
}

#[test]
fn overwrite_loop_keeps_disk_bounded_and_every_object_intact() {
    let seed: u64 = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("compaction test seed {seed} (replay with TEST_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let e = open_small_segments(dir.path());
    block_on(e.create_bucket("gcb")).unwrap();
    let peak = std::sync::atomic::AtomicU64::new(0);
    let writer = |w: usize| {
        let (e, peak, root) = (e.clone(), &peak, dir.path());
        async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ w as u64);
            let mut model: BTreeMap<String, (u64, usize)> = BTreeMap::new();
            for op in 0..OPS_PER_WRITER {
                let (key, size) = if op % COLD_EVERY == COLD_EVERY - 1 {
                    (format!("cold/{w}/{op}"), 64 << 10)
                } else {
                    (format!("hot/{w}/{}", rng.gen_range(0..HOT_KEYS_PER_WRITER)), rng.gen_range(256 << 10..1 << 20))
                };
                let s = seed ^ ((w as u64) << 32) ^ op as u64;
                e.put_bytes("gcb", &key, Default::default(), data(s, size)).await.unwrap();
                model.insert(key, (s, size));
                peak.fetch_max(disk_bytes(root), std::sync::atomic::Ordering::Relaxed);
            }
            model
        }
    };
    let models = block_on(futures::future::join_all((0..WRITERS).map(writer)));
    let model: BTreeMap<String, (u64, usize)> = models.into_iter().flatten().collect();
    let written: u64 = (WRITERS * OPS_PER_WRITER) as u64 * (640 << 10) * 3 / 2;
    let (live, limit) = (live_disk_bytes(&model), bound(&model));
    // Let the last passes finish: every commit may start one.
    for i in 0..50 {
        if disk_bytes(dir.path()) <= limit {
            break;
        }
        put(&e, "gcb", "tick", data(i, 10));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let now = disk_bytes(dir.path());
    let peak = peak.into_inner();
    println!(
        "live {} MiB on disk, segments now {} MiB, peak {} MiB, bound {} MiB, ~{} MiB written",
        live >> 20,
        now >> 20,
        peak >> 20,
        limit >> 20,
        written >> 20
    );
    assert!(now <= limit, "seed {seed}: {now} bytes of segments for {live} live bytes (bound {limit})");
    assert!(peak <= limit * 3 / 2, "seed {seed}: peak {peak} bytes of segments for {live} live bytes");
    for (k, &(s, n)) in &model {
        assert!(get(&e, "gcb", k) == data(s, n).as_ref(), "seed {seed}: {k} differs after compaction");
    }
    e.shutdown();
    drop(e);
    // The relocations replay: everything reads back after a restart too.
    let e = open_small_segments(dir.path());
    for (k, &(s, n)) in &model {
        assert!(get(&e, "gcb", k) == data(s, n).as_ref(), "seed {seed}: {k} differs after restart");
    }
    e.shutdown();
}
