//! Self-healing: repair of damaged shards, the scrubber, device failure at runtime (with
//! injected I/O faults) and the health report.

mod common;
use common::*;
use engine::io::failpoints::{self, FailOp, Fault};
use engine::{Engine, HealConfig, Layout};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes per shard of a full stripe at the default chunk size.
const CHUNK: u64 = 256 << 10;
/// Every wait in these tests gives up after this long.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// Healing tuned for tests: quick repair polls, no scrub or probe unless asked.
fn heal_cfg() -> HealConfig {
    HealConfig { scrub: false, repair_poll_ms: 20, health_probe_ms: 0, ..HealConfig::default() }
}

fn open_heal(_root: &Path, l: Layout, heal: HealConfig) -> Engine {
    if !l.devices.iter().any(|d| d.path.join("tessera.sb").exists()) {
        engine::format(&l).expect("format");
    }
    open_devices(l.devices, heal)
}

fn flip(path: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset).unwrap();
    f.sync_all().unwrap();
}

fn seg_of_device(root: &Path, dev: usize) -> PathBuf {
    let files: Vec<PathBuf> =
        segment_files(root).into_iter().filter(|p| p.starts_with(root.join(format!("dev{dev}")))).collect();
    assert_eq!(files.len(), 1, "device {dev} should hold exactly one segment: {files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn repair_rewrites_bad_shards_so_the_next_read_needs_no_rebuild() {
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // One tablet so that every object lands in the same segment per device, in put order.
    let mut l = Layout::embedded(root, 1);
    l.tablets = 1;
    let e = open_heal(root, l.clone(), heal_cfg());
    block_on(e.create_bucket("rep")).unwrap();
    // Eight objects of two full stripes each: slot j of every device's segment is stripe j.
    let objects: Vec<(String, bytes::Bytes)> = (0..8).map(|i| (format!("o{i}"), data(seed ^ i, 2 << 20))).collect();
    for (k, d) in &objects {
        put(&e, "rep", k, d.clone());
    }
    e.shutdown();
    drop(e);
    // One bad shard in every stripe, on a random device.
    for j in 0..16u64 {
        let dev = rng.gen_range(0..6);
        flip(&seg_of_device(root, dev), j * CHUNK + rng.gen_range(0..CHUNK));
    }
    let e = open_heal(root, l.clone(), heal_cfg());
    for (k, d) in &objects {
        assert_eq!(get(&e, "rep", k), d.as_ref(), "{k}: wrong bytes");
    }
    let degraded = degraded_reads(&e);
    assert!(degraded > 0, "no read needed a rebuild: the flips missed every data shard");
    wait_for("the repair queue to drain", &e, WAIT_LIMIT, |s| s.repairs_queued == 0 && s.repaired_parts > 0);
    let before = degraded_reads(&e);
    for (k, d) in &objects {
        assert_eq!(get(&e, "rep", k), d.as_ref(), "{k}: wrong bytes after repair");
    }
    assert_eq!(degraded_reads(&e), before, "a read after repair still had to rebuild from parity");
    e.shutdown();
    drop(e);
    // The repair is durable: after a restart nothing needs a rebuild either.
    let e = open_heal(root, l, heal_cfg());
    for (k, d) in &objects {
        assert_eq!(get(&e, "rep", k), d.as_ref(), "{k}: wrong bytes after restart");
    }
    assert_eq!(degraded_reads(&e), 0, "the repaired shards did not survive a restart");
    e.shutdown();
}

#[test]
fn scrubber_finds_every_flipped_shard_and_repair_fixes_it() {
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut l = Layout::embedded(root, 1);
    l.tablets = 1;
    let e = open_heal(root, l.clone(), heal_cfg());
    block_on(e.create_bucket("scr")).unwrap();
    // 12 objects of one full stripe each: slot j of every device's segment is object j.
    let objects: Vec<(String, bytes::Bytes)> = (0..12).map(|i| (format!("s{i:02}"), data(seed ^ i, 1 << 20))).collect();
    for (k, d) in &objects {
        put(&e, "scr", k, d.clone());
    }
    e.shutdown();
    drop(e);
    // 0, 1 or 2 bad shards per stripe (at most m), on random devices, in data or parity.
    let mut expected = 0u64;
    for j in 0..objects.len() as u64 {
        let n = rng.gen_range(0..=2usize);
        let mut devs: Vec<usize> = (0..6).collect();
        for _ in 0..n {
            let dev = devs.remove(rng.gen_range(0..devs.len()));
            for _ in 0..rng.gen_range(1..4) {
                flip(&seg_of_device(root, dev), j * CHUNK + rng.gen_range(0..CHUNK));
            }
            expected += 1;
        }
    }
    println!("{expected} bad shards planted");
    let fast = HealConfig { scrub: true, scrub_bytes_per_sec: 256 << 20, ..heal_cfg() };
    let e = open_heal(root, l, fast);
    // Phase one: only the scrubber looks, so everything found is its own.
    let st = wait_for("a first scrub pass", &e, WAIT_LIMIT, |s| s.scrub_passes >= 1);
    assert_eq!(st.scrub_errors, expected, "the scrubber's first pass missed bad shards");
    // Phase two: clients read while repair finishes and the scrubber goes round again.
    let reader = {
        let (e, objects) = (e.clone(), objects.clone());
        std::thread::spawn(move || {
            for _ in 0..3 {
                for (k, d) in &objects {
                    assert_eq!(get(&e, "scr", k), d.as_ref(), "{k}: a GET returned wrong bytes");
                }
            }
        })
    };
    let passes = st.scrub_passes;
    let st =
        wait_for("repair and a clean pass", &e, WAIT_LIMIT, |s| s.repairs_queued == 0 && s.scrub_passes >= passes + 2);
    reader.join().unwrap();
    assert_eq!(st.scrub_errors, expected, "later passes found damage repair should have fixed");
    assert_eq!(st.repair_failures, 0);
    let before = degraded_reads(&e);
    for (k, d) in &objects {
        assert_eq!(get(&e, "scr", k), d.as_ref(), "{k}: wrong bytes after repair");
    }
    let after = degraded_reads(&e);
    if after != before {
        println!("{:#?}\n{:#?}", block_on(e.status()).unwrap(), block_on(e.stats()).unwrap());
    }
    assert_eq!(after, before, "a shard was still bad after repair");
    e.shutdown();
}

#[test]
fn failed_device_is_rebuilt_elsewhere_and_reported() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open_heal(root, layout9(root), heal_cfg());
    block_on(e.create_bucket("dev")).unwrap();
    let objects: Vec<(String, bytes::Bytes)> =
        (0..10).map(|i| (format!("d{i}"), data(seed ^ i, 300_000 + i as usize * 77_777))).collect();
    for (k, d) in &objects {
        put(&e, "dev", k, d.clone());
    }
    // Device 4 fails hard: every read and write there errors.
    let dev4 = root.join("dev4");
    failpoints::set(&dev4, FailOp::Read, Fault::Error, None);
    failpoints::set(&dev4, FailOp::Write, Fault::Error, None);
    failpoints::set(&dev4, FailOp::Sync, Fault::Error, None);
    // Reads keep answering with the right bytes (rebuilt) and the errors fail the device.
    for (k, d) in &objects {
        assert_eq!(get(&e, "dev", k), d.as_ref(), "{k}: wrong bytes with device 4 failing");
    }
    let st = wait_for("rebuild off device 4", &e, WAIT_LIMIT, |s| {
        !s.devices[4].healthy && s.objects_below_redundancy == 0 && s.repairs_queued == 0
    });
    assert!(st.devices[4].io_errors > 0);
    assert!(st.devices.iter().filter(|d| d.healthy).count() == 8, "{st:#?}");
    // New writes avoid the failed device and succeed.
    put(&e, "dev", "after", data(seed, 123_456));
    e.shutdown();
    drop(e);
    // With device 4 gone for good, everything is still there and fully redundant.
    failpoints::clear(&dev4);
    std::fs::remove_dir_all(&dev4).unwrap();
    let e = open_heal(root, layout9(root), heal_cfg());
    for (k, d) in &objects {
        assert_eq!(get(&e, "dev", k), d.as_ref(), "{k}: wrong bytes after losing device 4");
    }
    assert_eq!(degraded_reads(&e), 0, "an object still had a shard on the removed device");
    e.shutdown();
}

#[test]
fn health_probe_fails_a_foreign_device_and_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let probe = HealConfig { health_probe_ms: 30, ..heal_cfg() };
    let e = open_heal(root, layout9(root), probe);
    let sb = root.join("dev7/tessera.sb");
    let saved = std::fs::read(&sb).unwrap();
    std::fs::write(&sb, b"not a superblock").unwrap();
    wait_for("the probe to fail device 7", &e, WAIT_LIMIT, |s| !s.devices[7].healthy);
    std::fs::write(&sb, &saved).unwrap();
    wait_for("the probe to bring device 7 back", &e, WAIT_LIMIT, |s| s.devices.iter().all(|d| d.healthy));
    e.shutdown();
}

#[test]
fn write_errors_on_one_device_lose_no_acknowledged_object() {
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open_heal(root, layout9(root), heal_cfg());
    block_on(e.create_bucket("wre")).unwrap();
    let bad = root.join(format!("dev{}", rng.gen_range(0..9)));
    failpoints::set(&bad, FailOp::Write, Fault::ShortWrite, Some(2));
    failpoints::set(&bad, FailOp::Write, Fault::Error, None);
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..24u64 {
        let d = data(seed ^ i, rng.gen_range(1..3 << 20));
        match block_on(e.put_bytes("wre", &format!("w{i}"), Default::default(), d.clone())) {
            Ok(_) => acked.push((format!("w{i}"), d)),
            Err(err) => {
                refused += 1;
                println!("put w{i} refused: {err}");
            }
        }
    }
    println!("{} acknowledged, {refused} refused", acked.len());
    assert!(acked.len() >= 20, "the engine stopped serving writes after one device failed");
    for (k, d) in &acked {
        assert_eq!(get(&e, "wre", k), d.as_ref(), "{k}: acknowledged object reads back wrong");
    }
    e.shutdown();
    drop(e);
    failpoints::clear(&bad);
    std::fs::remove_dir_all(&bad).unwrap();
    let e = open_heal(root, layout9(root), heal_cfg());
    for (k, d) in &acked {
        assert_eq!(get(&e, "wre", k), d.as_ref(), "{k}: acknowledged object lost with the bad device");
    }
    e.shutdown();
}

#[test]
fn fsync_errors_acknowledge_no_write() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open_heal(root, layout9(root), heal_cfg());
    block_on(e.create_bucket("fsy")).unwrap();
    put(&e, "fsy", "before", data(seed, 1 << 20));
    // Every flush on every device fails: nothing may be acknowledged.
    for i in 0..9 {
        failpoints::set(&root.join(format!("dev{i}")), FailOp::Sync, Fault::Error, None);
    }
    for i in 0..6u64 {
        let r = block_on(e.put_bytes(
            "fsy",
            &format!("f{i}"),
            Default::default(),
            data(seed ^ i, 5000 + i as usize * 400_000),
        ));
        assert!(r.is_err(), "put f{i} was acknowledged although no flush succeeded");
    }
    // Every failed flush fails its device (and so do the log's attempts to move to other
    // mirrors), so a read may now be refused; it never answers wrong bytes.
    if let Ok((_, got)) = block_on(e.get_bytes("fsy", "before", None)) {
        assert_eq!(got, data(seed, 1 << 20).as_ref(), "wrong bytes with every flush failing");
    }
    e.shutdown();
    drop(e);
    for i in 0..9 {
        failpoints::clear(&root.join(format!("dev{i}")));
    }
    let e = open_heal(root, layout9(root), heal_cfg());
    assert_eq!(get(&e, "fsy", "before"), data(seed, 1 << 20).as_ref());
    e.shutdown();
}
