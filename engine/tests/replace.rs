//! Replacing a device (`Engine::replace_device`), and what a missing device must not do: be
//! created again behind the operator's back.

mod common;
use common::*;
use engine::{DeviceSpec, Engine, HealConfig, Layout};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every wait in these tests gives up after this long.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Quick repair polls and probes, no scrub.
fn heal_cfg() -> HealConfig {
    HealConfig { scrub: false, repair_poll_ms: 20, health_probe_ms: 50, ..HealConfig::default() }
}

fn away(p: &Path) -> PathBuf {
    p.with_extension("away")
}

#[test]
fn a_replaced_device_gets_back_every_shard_and_the_set_survives_losing_another_zone() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The embedded layout: 6 devices, 3 zones, 4+2. With one device gone there is no
    // zone-safe room to re-place anything: only a replacement restores redundancy.
    let l = Layout::embedded(root, 2);
    engine::format(&l).unwrap();
    let e = open_devices(l.devices.clone(), heal_cfg());
    block_on(e.create_bucket("rep")).unwrap();
    let mut zoo = put_object_zoo(&e, "rep");
    for i in 0..6u64 {
        let k = format!("more/{i}");
        let d = data(seed ^ i, 200_000 + (i as usize) * 300_001);
        put(&e, "rep", &k, d.clone());
        zoo.push((k, d));
    }
    let erasure_coded = zoo.iter().filter(|(_, d)| d.len() as u64 > engine::INLINE_MAX_BYTES).count() as u64;

    // Device 3 (zone z2) disappears; the probe fails it; nothing can be re-placed.
    let dev3 = root.join("dev3");
    std::fs::rename(&dev3, away(&dev3)).unwrap();
    let st = wait_for("device 3 failed and its objects waiting for room", &e, WAIT_LIMIT, |s| {
        !s.devices[3].healthy && s.repairs_queued == 0 && s.repairs_waiting == erasure_coded
    });
    assert_eq!(st.objects_below_redundancy, erasure_coded, "{st:#?}");
    assert_eq!(st.repair_failures, 0, "no room is not a repair failure: {st:#?}");
    assert!(!dev3.exists(), "the engine re-created the missing device directory {}", dev3.display());
    check_object_zoo(&e, "rep", &zoo, "device 3 missing");

    // Refusals first: another device's path, and a path holding a device of the set.
    let err = block_on(e.replace_device(3, &root.join("dev4"), false)).unwrap_err();
    assert!(err.to_string().contains("path of device 4"), "{err}");
    let err = block_on(e.replace_device(3, &away(&dev3), false)).unwrap_err();
    assert!(err.to_string().contains("holds device 3 of this set"), "{err}");
    let busy = root.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("precious"), b"x").unwrap();
    let err = block_on(e.replace_device(3, &busy, false)).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(busy.join("precious").exists());
    // The refusals changed nothing.
    let st = block_on(e.status()).unwrap();
    assert_eq!(st.objects_below_redundancy, erasure_coded);

    // The replacement: a new directory at another path.
    let new3 = root.join("dev3-new");
    let report = block_on(e.replace_device(3, &new3, false)).expect("replace device 3");
    assert_eq!(report.device, 3);
    assert_eq!(report.zone, "z2");
    assert_eq!(report.old_path.as_deref(), Some(dev3.as_path()));
    assert!(report.seg_base >= 1);
    let st = wait_for("the rebuild onto the new device", &e, WAIT_LIMIT, |s| {
        s.objects_below_redundancy == 0 && s.repairs_queued == 0 && s.repairs_waiting == 0
    });
    assert!(st.devices[3].healthy && st.devices[3].path.as_deref() == Some(new3.as_path()), "{st:#?}");
    assert_eq!(st.repair_failures, 0, "{st:#?}");
    assert!(!dev3.exists(), "the old path was re-created");
    check_object_zoo(&e, "rep", &zoo, "after the rebuild");
    // New writes are accepted again (they need all 6 devices).
    put(&e, "rep", "after", data(seed, 2 << 20));
    zoo.push(("after".into(), data(seed, 2 << 20)));

    // Zone z1 (devices 0 and 1) fails: every stripe now needs the rebuilt device's shards.
    for i in 0..2 {
        let p = root.join(format!("dev{i}"));
        std::fs::rename(&p, away(&p)).unwrap();
    }
    wait_for("the probe to fail zone z1", &e, WAIT_LIMIT, |s| !s.devices[0].healthy && !s.devices[1].healthy);
    let before = degraded_reads(&e);
    check_object_zoo(&e, "rep", &zoo, "zone z1 failed after the replacement");
    assert!(degraded_reads(&e) > before, "reads did not need parity: zone z1 held nothing?");
    e.shutdown();
    drop(e);

    // A restart lists the new device in the old one's place and finds it fully redundant.
    for i in 0..2 {
        let p = root.join(format!("dev{i}"));
        assert!(!p.exists(), "the engine re-created {}", p.display());
        std::fs::rename(away(&p), &p).unwrap();
    }
    let mut devices = l.devices.clone();
    devices[3] = DeviceSpec::new("z2", &new3);
    let e = open_devices(devices, HealConfig { health_probe_ms: 0, ..heal_cfg() });
    let st = block_on(e.status()).unwrap();
    assert!(st.devices.iter().all(|d| d.healthy), "{st:#?}");
    assert_eq!(st.objects_below_redundancy, 0, "{st:#?}");
    check_object_zoo(&e, "rep", &zoo, "after a restart");
    assert_eq!(degraded_reads(&e), 0, "a read after restart still needed parity");
    e.shutdown();
}

trait FailDevices {
    fn set_device_health_blocking(&self, devs: &[u16]);
}

impl FailDevices for Engine {
    fn set_device_health_blocking(&self, devs: &[u16]) {
        for d in devs {
            block_on(self.set_device_health(*d, false)).unwrap();
        }
    }
}

#[test]
fn replacing_a_device_that_had_not_failed_moves_its_shards_to_the_new_one() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let l = Layout::embedded(root, 2);
    engine::format(&l).unwrap();
    let e = open_devices(l.devices.clone(), HealConfig { health_probe_ms: 0, ..heal_cfg() });
    block_on(e.create_bucket("live")).unwrap();
    let objects: Vec<(String, bytes::Bytes)> =
        (0..8u64).map(|i| (format!("o{i}"), data(seed ^ i, 100_000 + i as usize * 250_000))).collect();
    for (k, d) in &objects {
        put(&e, "live", k, d.clone());
    }
    // Refused replacements of a device in service change nothing: it stays in service,
    // nothing is queued for rebuild, no read is degraded.
    let busy = root.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("precious"), b"x").unwrap();
    for (target, words) in [
        (busy.clone(), "not empty"),
        (root.join("no-such-parent").join("dev5"), "parent directory does not exist"),
        (root.join("dev4"), "path of device 4"),
    ] {
        let err = block_on(e.replace_device(5, &target, false)).unwrap_err();
        assert!(err.to_string().contains(words), "{}: {err}", target.display());
        let st = block_on(e.status()).unwrap();
        assert!(st.devices[5].healthy, "a refused replacement took device 5 out of service: {st:#?}");
        assert_eq!((st.repairs_queued, st.objects_below_redundancy), (0, 0), "{st:#?}");
    }
    assert!(busy.join("precious").exists());
    let degraded = degraded_reads(&e);
    for (k, d) in &objects {
        assert_eq!(get(&e, "live", k), d.as_ref(), "{k}: wrong bytes after a refused replacement");
    }
    assert_eq!(degraded_reads(&e), degraded, "reads went degraded after a refused replacement");
    // Device 5 is still fine, but the operator swaps it (a disk with a bad SMART report).
    let new5 = root.join("dev5-new");
    block_on(e.replace_device(5, &new5, false)).expect("replace device 5");
    wait_for("the rebuild onto the new device 5", &e, WAIT_LIMIT, |s| {
        s.objects_below_redundancy == 0 && s.repairs_queued == 0
    });
    // The old device 5 can go: nothing reads it any more.
    std::fs::rename(root.join("dev5"), root.join("dev5.old")).unwrap();
    // And zone z1 fails too: the rebuilt shards on the new device are needed.
    e.set_device_health_blocking(&[0, 1]);
    for (k, d) in &objects {
        assert_eq!(get(&e, "live", k), d.as_ref(), "{k}: wrong bytes");
    }
    e.shutdown();
}

#[test]
fn a_missing_device_directory_is_never_created_again() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // 9 devices, 3 per zone.
    let l = layout9(root);
    engine::format(&l).unwrap();
    // No probe: the engine finds out about the missing devices only by using them.
    let e = open_devices(l.devices.clone(), HealConfig { health_probe_ms: 0, ..heal_cfg() });
    block_on(e.create_bucket("gone")).unwrap();
    let objects: Vec<(String, bytes::Bytes)> =
        (0..6u64).map(|i| (format!("g{i}"), data(seed ^ i, 50_000 + i as usize * 400_000))).collect();
    for (k, d) in &objects {
        put(&e, "gone", k, d.clone());
    }
    // Device 0's directory vanishes (an unmounted disk, a yanked drive).
    let z1: Vec<PathBuf> = vec![root.join("dev0")];
    for p in &z1 {
        std::fs::rename(p, away(p)).unwrap();
    }
    // The operator fails device 3: both tablets' logs were mirrored there ({0,1,3} and
    // {1,2,3}) and move, and the engine, not knowing device 0 is gone, picks it as a new
    // mirror of tablet 0's log.
    e.set_device_health_blocking(&[3]);
    // Writes and reads go on; each one that touches z1 finds it missing.
    for i in 0..4u64 {
        let _ = block_on(e.put_bytes("gone", &format!("n{i}"), Default::default(), data(seed + i, 3 << 20)));
    }
    for (k, d) in &objects {
        assert_eq!(get(&e, "gone", k), d.as_ref(), "{k}: wrong bytes");
    }
    for p in &z1 {
        assert!(!p.exists(), "the engine re-created the missing device directory {}", p.display());
    }
    e.shutdown();
    drop(e);
    for p in &z1 {
        assert!(!p.exists(), "shutdown re-created {}", p.display());
    }
    // A restart without them does not create them either.
    let e = open_devices(l.devices.clone(), HealConfig { health_probe_ms: 0, ..heal_cfg() });
    for (k, d) in &objects {
        assert_eq!(get(&e, "gone", k), d.as_ref(), "{k}: wrong bytes after restart");
    }
    e.shutdown();
    for p in &z1 {
        assert!(!p.exists(), "a restart re-created {}", p.display());
    }
}
