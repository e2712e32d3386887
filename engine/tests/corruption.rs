//! Bit rot: a flipped byte in a shard is caught by its checksum and rebuilt from parity, never
//! returned; more than m bad shards in a stripe give `Error::Unreadable`, never wrong bytes; a
//! damaged log mirror is outvoted by the others.

mod common;
use common::*;
use engine::{Engine, Error, RangeSpec, RequestError, StorageError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes per shard of a full stripe at the default chunk size.
const CHUNK: u64 = 256 << 10;

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

/// Read like a client: the chunks that arrive before an error must be a prefix of the truth.
fn get_checked(e: &Engine, key: &str, range: Option<RangeSpec>, truth: &[u8]) -> Result<Vec<u8>, Error> {
    let (_, r, rx) = block_on(e.get_object("rot", key, range))?;
    let want = &truth[r.start as usize..r.end as usize];
    let mut got = Vec::new();
    while let Ok(chunk) = rx.recv() {
        match chunk {
            Ok(b) => {
                got.extend_from_slice(&b);
                assert!(want.starts_with(&got), "{key}: wrong bytes returned before any error");
            }
            Err(err) => return Err(err),
        }
    }
    assert_eq!(got.len(), want.len(), "{key}: short read without an error");
    Ok(got)
}

#[test]
fn flipped_shard_bytes_are_rebuilt_from_parity_and_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open_no_heal(root);
    block_on(e.create_bucket("rot")).unwrap();
    // Four stripes: three full (1 MiB of data each) and a 5-byte tail stripe.
    let truth = data(77, (3 << 20) + 5);
    put(&e, "rot", "obj", truth.clone());
    e.shutdown();
    drop(e);

    // Two devices of different zones: one bad shard per device in every stripe. Devices 0 and
    // 3 are not adjacent in the rotation, so at least one of them holds a data shard.
    for dev in [0, 3] {
        let seg = seg_of_device(root, dev);
        for s in 0..4 {
            flip(&seg, s * CHUNK + 17 + dev as u64);
        }
    }
    let e = open_no_heal(root);
    assert_eq!(get_checked(&e, "obj", None, &truth).unwrap(), truth.as_ref());
    assert!(degraded_reads(&e) > 0, "corrupt shards were read without a rebuild being counted");
    let r = RangeSpec::FromTo(CHUNK - 3, Some((2 << 20) + 9));
    get_checked(&e, "obj", Some(r), &truth).unwrap();
    e.shutdown();
    drop(e);

    // A third bad shard in stripe 2 only: that stripe is beyond repair.
    flip(&seg_of_device(root, 5), 2 * CHUNK + 4000);
    let e = open_no_heal(root);
    let err = get_checked(&e, "obj", None, &truth).unwrap_err();
    assert!(matches!(err, Error::Storage(StorageError::Unreadable(_))), "expected Unreadable, got {err}");
    let in_stripe_2 = RangeSpec::FromTo((2 << 20) + 100, Some((2 << 20) + 200));
    let err = get_checked(&e, "obj", Some(in_stripe_2), &truth).unwrap_err();
    assert!(matches!(err, Error::Storage(StorageError::Unreadable(_))), "expected Unreadable, got {err}");
    // The other stripes still read (rebuilt where needed).
    let outside = RangeSpec::FromTo(0, Some((2 << 20) - 1));
    assert_eq!(get_checked(&e, "obj", Some(outside), &truth).unwrap(), &truth[..2 << 20]);
    let tail = RangeSpec::Suffix(5);
    assert_eq!(get_checked(&e, "obj", Some(tail), &truth).unwrap(), &truth[3 << 20..]);
    e.shutdown();
}

/// The newest log generation's mirror files of every tablet: tablet dir name (`shard-NNNN`) → paths.
fn wal_mirrors(root: &Path) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
    let mut by_tablet: std::collections::BTreeMap<String, Vec<(String, PathBuf)>> = Default::default();
    for d in std::fs::read_dir(root).unwrap().flatten() {
        for s in std::fs::read_dir(d.path()).unwrap().flatten().filter(|s| s.path().is_dir()) {
            for f in std::fs::read_dir(s.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with("wal-") {
                    let tablet = s.file_name().to_string_lossy().to_string();
                    by_tablet.entry(tablet).or_default().push((name, f.path()));
                }
            }
        }
    }
    by_tablet
        .into_iter()
        .map(|(s, mut v)| {
            let newest = v.iter().map(|(n, _)| n.clone()).max().unwrap();
            v.retain(|(n, _)| *n == newest);
            (s, v.into_iter().map(|(_, p)| p).collect())
        })
        .collect()
}

#[test]
fn damaged_log_mirrors_are_outvoted_by_the_longest_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open_no_heal(root);
    block_on(e.create_bucket("rot")).unwrap();
    let mut objects = Vec::new();
    for i in 0..40u64 {
        // Mostly inline objects (their bytes live only in the log), some striped.
        let n = if i % 5 == 0 { 200 << 10 } else { 100 + i as usize * 300 };
        let k = format!("w/{i:02}");
        put(&e, "rot", &k, data(i, n));
        objects.push((k, data(i, n)));
    }
    block_on(e.delete_object("rot", "w/03", None)).unwrap();
    objects.retain(|(k, _)| k != "w/03");
    e.shutdown();
    drop(e);

    let mirrors = wal_mirrors(root);
    assert!(!mirrors.is_empty());
    for (tablet, files) in &mirrors {
        assert_eq!(files.len(), 3, "{tablet}: the log should have m+1 = 3 mirrors: {files:?}");
        // One mirror loses its tail (the last record fails its checksum), another its header
        // (the whole generation is unusable); the third is intact and must be the one used.
        let len = std::fs::metadata(&files[0]).unwrap().len();
        flip(&files[0], len - 3);
        flip(&files[1], 5);
    }
    for round in 0..2 {
        let e = open_no_heal(root);
        for (k, d) in &objects {
            assert_eq!(get(&e, "rot", k), d.as_ref(), "round {round}: {k}");
        }
        assert!(matches!(block_on(e.head_object("rot", "w/03")), Err(Error::Request(RequestError::NoSuchKey { .. }))));
        // The engine keeps working after recovering from one mirror.
        put(&e, "rot", "after", data(999, 5000));
        assert_eq!(get(&e, "rot", "after"), data(999, 5000).as_ref());
        e.shutdown();
    }
}

/// Objects keep the chunk they were written with: after a restart with a smaller chunk (and so
/// smaller pool buffers), their larger shards are still read, rebuilt from parity when bad, and
/// repaired, at their own size.
#[test]
fn shards_of_a_larger_chunk_than_the_pool_s_are_read_rebuilt_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open_no_heal(root);
    block_on(e.create_bucket("rot")).unwrap();
    let truth = data(78, (2 << 20) + 12_345);
    put(&e, "rot", "big", truth.clone());
    e.shutdown();
    drop(e);
    // One bad shard in the first stripe (device 0: data shard 0 or a parity shard).
    flip(&seg_of_device(root, 0), 4321);
    let small = |cfg: &mut engine::EngineConfig| cfg.chunk_bytes = 64 << 10;
    let e = open_cfg(root, 2, |cfg| {
        small(cfg);
        cfg.heal.scrub = false;
    });
    assert_eq!(get_checked(&e, "big", None, &truth).expect("degraded read"), truth);
    let r = RangeSpec::FromTo(CHUNK - 7, Some(CHUNK + 70_000));
    assert!(get_checked(&e, "big", Some(r), &truth).is_ok(), "a range across 256 KiB shards");
    wait_for("the repair of the flipped shard", &e, std::time::Duration::from_secs(15), |s| {
        s.repairs_queued == 0 && s.repaired_parts > 0
    });
    let before: u64 = block_on(e.stats()).unwrap().iter().map(|s| s.degraded_reads).sum();
    assert_eq!(get_checked(&e, "big", None, &truth).expect("read after repair"), truth);
    let after: u64 = block_on(e.stats()).unwrap().iter().map(|s| s.degraded_reads).sum();
    assert_eq!(before, after, "a read after the repair still rebuilt from parity");
    e.shutdown();
}
