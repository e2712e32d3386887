//! Recovery replays the log: the index and the segment files it rebuilds must match what was
//! acknowledged before the restart.

mod common;
use common::*;

/// Replaying "put A; delete A; put B" with A and B in the same (active) segment takes that
/// segment's live bytes to zero in the middle of the replay; the segment must survive, since B
/// (replayed later) still lives in it.
#[test]
fn replay_keeps_a_segment_whose_bytes_die_and_are_reused_later_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    block_on(e.create_bucket("rec")).unwrap();
    put(&e, "rec", "a", data(1, 300 << 10));
    block_on(e.delete_object("rec", "a", None)).unwrap();
    put(&e, "rec", "b", data(2, 300 << 10));
    // The same with an overwrite by an inline object instead of a delete.
    put(&e, "rec", "c", data(3, 300 << 10));
    put(&e, "rec", "c", data(4, 10));
    put(&e, "rec", "d", data(5, 2 << 20));
    e.shutdown();
    drop(e);
    for round in 0..2 {
        let e = open(dir.path());
        assert_eq!(get(&e, "rec", "b"), data(2, 300 << 10).as_ref(), "round {round}");
        assert_eq!(get(&e, "rec", "c"), data(4, 10).as_ref(), "round {round}");
        assert_eq!(get(&e, "rec", "d"), data(5, 2 << 20).as_ref(), "round {round}");
        e.shutdown();
    }
}

/// Checkpoints run on the core's event loop while other writers and readers go on: with a
/// small checkpoint threshold, overwrites of small (inline, log-held) objects make each tablet
/// rewrite its log many times. Every read-after-write is exact across them, every final value
/// survives a restart, and the log's two append paths (O_DIRECT|O_DSYNC, and page cache +
/// fdatasync) read each other's logs.
#[test]
fn checkpoints_during_concurrent_small_writes_and_reads_lose_nothing() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let small_log = |direct: bool| {
        move |cfg: &mut engine::EngineConfig| {
            cfg.checkpoint_min_bytes = 256 << 10;
            cfg.log_direct = direct;
        }
    };
    let e = open_cfg(dir.path(), 2, small_log(true));
    block_on(e.create_bucket("ckp")).unwrap();
    // Sizes cross 4 KiB log blocks at every offset: 1 B to 16 KiB (all inline).
    let size = |t: u64, i: u64| 1 + ((seed ^ (t * 7919 + i * 104_729)) % (16 << 10)) as usize;
    let writer = |t: u64| {
        let e = e.clone();
        async move {
            let mut last = std::collections::BTreeMap::new();
            for i in 0..400u64 {
                let key = format!("t{t}/k{}", i % 24);
                let body = data(seed ^ (t << 32) ^ i, size(t, i));
                e.put_bytes("ckp", &key, Default::default(), body.clone()).await.expect("put");
                let (_, got) = e.get_bytes("ckp", &key, None).await.expect("get");
                assert!(got == body.as_ref(), "{key}: read after write differs (round {i})");
                last.insert(key, body);
            }
            last
        }
    };
    let finals = block_on(futures::future::join_all((0..4).map(writer)));
    let stats = block_on(e.stats()).unwrap();
    let checkpoints: u64 = stats.iter().map(|s| s.checkpoints).sum();
    assert!(checkpoints >= 8, "only {checkpoints} checkpoints ran: the test does not test them");
    // Most generations were written over a retired one's file, so the logs read back below
    // end in older generations' frames, which must not be replayed.
    let recycled: u64 = stats.iter().map(|s| s.log_files_recycled).sum();
    assert!(recycled >= 6, "only {recycled} log files recycled in {checkpoints} checkpoints");
    let check = |e: &engine::Engine, what: &str| {
        for m in &finals {
            for (k, v) in m {
                assert!(get(e, "ckp", k) == v.as_ref(), "{k}: wrong bytes {what}");
            }
        }
    };
    check(&e, "after the writers");
    e.shutdown();
    drop(e);
    // The buffered append path reads and extends the same logs, and the other way round.
    let e = open_cfg(dir.path(), 2, small_log(false));
    check(&e, "after a restart (buffered appends)");
    put(&e, "ckp", "t0/k0", data(seed, 5000));
    e.shutdown();
    drop(e);
    let e = open_cfg(dir.path(), 2, small_log(true));
    assert_eq!(get(&e, "ckp", "t0/k0"), data(seed, 5000).as_ref());
    e.shutdown();
}

/// A checkpoint cut short by a crash can leave a log file numbered one above the recovered
/// generation on a device that is not a mirror at the next start. That start numbers its own
/// generation above every file on disk, so no two files ever share a generation number (one
/// abandoned, one in use, with inline objects at the same offsets), and the abandoned one is
/// removed with the other older generations.
#[test]
fn a_start_numbers_its_log_generation_above_an_abandoned_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let e = open(root);
    block_on(e.create_bucket("gen")).unwrap();
    put(&e, "gen", "k", data(9, 3000));
    e.shutdown();
    drop(e);
    let wal_files = || -> Vec<(usize, u64)> {
        let mut v = Vec::new();
        for dev in 0..6 {
            let Ok(rd) = std::fs::read_dir(root.join(format!("dev{dev}/shard-0000"))) else { continue };
            for f in rd.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if let Some(g) =
                    name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")).and_then(|s| s.parse().ok())
                {
                    v.push((dev, g));
                }
            }
        }
        v
    };
    let before = wal_files();
    let gen = before.iter().map(|(_, g)| *g).max().expect("tablet 0 has a log");
    let mirrors: Vec<usize> = before.iter().map(|(d, _)| *d).collect();
    let other = (0..6).find(|d| !mirrors.contains(d)).expect("a device that is not a mirror");
    // The abandoned next generation: a header and nothing more (no CheckpointEnd).
    let abandoned = engine::wal::wal_path(&root.join(format!("dev{other}")), 0, gen + 1);
    std::fs::create_dir_all(abandoned.parent().unwrap()).unwrap();
    let mut bytes = Vec::new();
    let set_id = engine::superblock::open(&layout(root).devices).unwrap().set_id;
    engine::wal::frame_into(
        &mut bytes,
        gen + 1,
        &engine::record::Record::Header { tablet: 0, gen: gen + 1, set_id }.encode(),
    );
    std::fs::write(&abandoned, &bytes).unwrap();

    let e = open(root);
    assert_eq!(get(&e, "gen", "k"), data(9, 3000).as_ref());
    let after = wal_files();
    assert!(
        after.iter().all(|(_, g)| *g > gen + 1),
        "a start reused a generation number on disk: {after:?} (abandoned {})",
        gen + 1
    );
    assert!(!abandoned.exists(), "the abandoned generation was left behind");
    e.shutdown();
}

/// Bucket attributes (a bucket's policy, ...) are durable in tablet 0's log, survive the
/// checkpoint every start writes and a second start that reads only that checkpoint, and go
/// with their bucket.
#[test]
fn bucket_attributes_survive_restarts_and_checkpoints_and_die_with_their_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let attrs = |e: &engine::Engine| block_on(e.bucket_attrs(None)).unwrap();
    let triple = |b: &str, a: &str, v: &str| (b.to_string(), a.to_string(), v.to_string());
    let e = open(dir.path());
    block_on(e.create_bucket("pol")).unwrap();
    block_on(e.create_bucket("other")).unwrap();
    block_on(e.set_bucket_attr("pol", "policy", Some("first".into()))).unwrap();
    block_on(e.set_bucket_attr("other", "policy", Some("theirs".into()))).unwrap();
    block_on(e.set_bucket_attr("pol", "policy", Some("second".into()))).unwrap();
    block_on(e.set_bucket_attr("pol", "lifecycle", Some("rules".into()))).unwrap();
    let missing = block_on(e.set_bucket_attr("nope", "policy", Some("x".into())));
    assert!(
        matches!(missing, Err(engine::Error::Request(engine::error::RequestError::NoSuchBucket(_)))),
        "{missing:?}"
    );
    assert_eq!(
        attrs(&e),
        vec![
            triple("other", "policy", "theirs"),
            triple("pol", "lifecycle", "rules"),
            triple("pol", "policy", "second")
        ]
    );
    block_on(e.set_bucket_attr("other", "policy", None)).unwrap();
    assert_eq!(block_on(e.bucket_attrs(Some("other"))).unwrap(), vec![]);
    e.shutdown();
    drop(e);
    // The first start replays the records and writes a checkpoint of them; the second reads
    // only that checkpoint.
    for round in 0..2 {
        let e = open(dir.path());
        assert_eq!(
            attrs(&e),
            vec![triple("pol", "lifecycle", "rules"), triple("pol", "policy", "second")],
            "start {round}"
        );
        e.shutdown();
    }
    let e = open(dir.path());
    block_on(e.delete_bucket("pol")).unwrap();
    assert_eq!(attrs(&e), vec![]);
    block_on(e.create_bucket("pol")).unwrap();
    assert_eq!(attrs(&e), vec![], "a new bucket of the same name starts without the old one's attributes");
    e.shutdown();
    drop(e);
    let e = open(dir.path());
    assert_eq!(attrs(&e), vec![]);
    e.shutdown();
}

/// Node-wide attributes (users and their keys) are durable in tablet 0's log, survive the
/// checkpoint every start writes and a second start that reads only that checkpoint, and a
/// removal stays removed.
#[test]
fn system_attributes_survive_restarts_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let attrs = |e: &engine::Engine| block_on(e.system_attrs()).unwrap();
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    let e = open(dir.path());
    block_on(e.set_system_attr("user/alice", Some("a1".into()))).unwrap();
    block_on(e.set_system_attr("user/bob", Some("b1".into()))).unwrap();
    block_on(e.set_system_attr("user/alice", Some("a2".into()))).unwrap();
    block_on(e.set_system_attr("user/carol", Some("c1".into()))).unwrap();
    block_on(e.set_system_attr("user/bob", None)).unwrap();
    // Removing what is not there is not an error and changes nothing.
    block_on(e.set_system_attr("user/nobody", None)).unwrap();
    assert_eq!(attrs(&e), vec![pair("user/alice", "a2"), pair("user/carol", "c1")]);
    e.shutdown();
    drop(e);
    for round in 0..2 {
        let e = open(dir.path());
        assert_eq!(attrs(&e), vec![pair("user/alice", "a2"), pair("user/carol", "c1")], "start {round}");
        if round == 1 {
            // A change after a checkpoint-only start is durable too.
            block_on(e.set_system_attr("user/carol", None)).unwrap();
        }
        e.shutdown();
    }
    let e = open(dir.path());
    assert_eq!(attrs(&e), vec![pair("user/alice", "a2")]);
    e.shutdown();
}
