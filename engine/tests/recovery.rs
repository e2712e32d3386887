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
/// small checkpoint threshold, overwrites of small (inline, log-held) objects make each shard
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
