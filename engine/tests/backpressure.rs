//! Bounded queues. Mailboxes: a core that falls behind refuses client requests with `SlowDown`
//! once its mailbox holds `mailbox_depth_max` messages, instead of queueing memory without
//! bound, and serves again once it catches up. Commit queues: a write is refused before it
//! writes anything while its tablet's queue is full, one whose data is written waits, and
//! nothing acknowledged is lost. Repair queues: what does not fit is found again by a rescan.

mod common;
use common::*;
use engine::Error;
use std::time::Duration;

const DEPTH: usize = 4;
const REQUESTS: usize = 10;

#[test]
fn a_full_mailbox_refuses_client_requests_with_slow_down_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_cfg(dir.path(), 2, |cfg| {
        cfg.mailbox_depth_max = DEPTH;
        cfg.heal.repair = false;
        cfg.heal.scrub = false;
        cfg.heal.health_probe_ms = 0;
    });
    block_on(e.create_bucket("backpressure")).unwrap();
    let key = (0..).map(|i| format!("k{i}")).find(|k| e.owner("backpressure", k).1 == 1).unwrap();
    put(&e, "backpressure", &key, data(1, 100));

    // Hold core 1's thread (as a long blocking call would) until the test has sent its burst.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    e.spawn_on(1, move || async move {
        let _ = started_tx.send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    })
    .unwrap();
    started_rx.recv_timeout(Duration::from_secs(10)).expect("core 1 ran the blocking task");

    let burst = futures::future::join_all((0..REQUESTS).map(|_| e.head_object("backpressure", &key)));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = release_tx.send(());
    });
    let results = block_on(burst);
    releaser.join().unwrap();
    let refused = results.iter().filter(|r| matches!(r, Err(Error::SlowDown(_)))).count();
    let served = results.iter().filter(|r| r.as_ref().is_ok_and(|i| i.size == 100)).count();
    assert_eq!(refused + served, REQUESTS, "every request is served or refused: {results:?}");
    assert!(served <= DEPTH, "only a mailbox's worth is queued: {served} served");
    assert!(refused >= REQUESTS - DEPTH, "the rest is refused: {refused} refused");

    // Caught up: requests are served again.
    assert_eq!(block_on(e.head_object("backpressure", &key)).unwrap().size, 100);
    e.shutdown();
}

/// How long each log flush takes while the test lines writers up behind it: long enough for
/// the test's few steps to happen while one batch is on its way (the test waits for states,
/// and never asserts that anything is fast).
const LOG_LATENCY_MS: u64 = 1000;
/// Polls of the engine's stats while waiting for a state, at most.
const POLLS: usize = 400;
/// Tries of the whole sequence (a very slow machine may let a batch end between two steps).
const ROUNDS: usize = 3;

#[test]
fn a_full_commit_queue_refuses_new_writes_and_lets_written_ones_wait_losing_nothing() {
    use engine::io::failpoints::{self, FailOp, Fault};
    use engine::{body_channel, BodyItem, PutOptions};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let tune = |cfg: &mut engine::EngineConfig| {
        cfg.commit_queue_depth_max = 1;
        cfg.heal.repair = false;
        cfg.heal.scrub = false;
        cfg.heal.health_probe_ms = 0;
    };
    let e = open_cfg(&root, 2, tune);
    block_on(e.create_bucket("commits")).unwrap();
    // Every key of this test on one tablet: they share its commit queue.
    let (tablet, core) = e.owner("commits", "k0");
    let mut keys = {
        let e = e.clone();
        (0..).map(|i| format!("k{i}")).filter(move |k| e.owner("commits", k).0 == tablet)
    };
    let devices: Vec<std::path::PathBuf> = layout(&root).devices.iter().map(|d| d.path.clone()).collect();
    for d in &devices {
        failpoints::set(d, FailOp::Sync, Fault::LatencyMs(LOG_LATENCY_MS), None);
    }
    let stats = |e: &engine::Engine| block_on(e.stats()).unwrap().swap_remove(core);
    let wait_stats = |e: &engine::Engine, what: &str, done: &dyn Fn(&engine::CoreStats) -> bool| {
        for _ in 0..POLLS {
            if done(&stats(e)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("gave up waiting for {what}: {:?}", stats(e));
    };
    let put_thread = |e: &engine::Engine, k: String, d: bytes::Bytes| {
        let e = e.clone();
        std::thread::spawn(move || block_on(e.put_bytes("commits", &k, PutOptions::default(), d)))
    };

    let mut acked: Vec<(String, bytes::Bytes)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let (mut saw_refusal, mut saw_wait) = (false, false);
    for round in 0..ROUNDS {
        // H: admitted while the queue is empty; its body is held back until the queue is full.
        let (h, h_bytes) = (keys.next().unwrap(), data(round as u64, 300));
        let (tx, body) = body_channel();
        tx.send(BodyItem::Data(h_bytes.clone())).unwrap();
        let h_writer = {
            let (e, k) = (e.clone(), h.clone());
            std::thread::spawn(move || block_on(e.put_object("commits", &k, PutOptions::default(), body)))
        };
        wait_stats(&e, "H to take its first chunk", &|_| tx.is_empty());
        // A: its batch is taken by the commit leader and stays on its way (the slow flush).
        let before = stats(&e).sched_bytes[0];
        let (a, a_bytes) = (keys.next().unwrap(), data(100 + round as u64, 200));
        let a_writer = put_thread(&e, a.clone(), a_bytes.clone());
        wait_stats(&e, "A's batch to start", &|s| s.sched_bytes[0] > before && s.commit_queue_len == 0);
        // B: queued behind A's batch, which fills the queue (one record).
        let (b, b_bytes) = (keys.next().unwrap(), data(200 + round as u64, 200));
        let b_writer = put_thread(&e, b.clone(), b_bytes.clone());
        wait_stats(&e, "B to be queued", &|s| s.commit_queue_len == 1);
        // C: refused before it writes anything.
        let (c, c_bytes) = (keys.next().unwrap(), data(300 + round as u64, 200));
        let waits = stats(&e).commit_queue_waits;
        match block_on(e.put_bytes("commits", &c, PutOptions::default(), c_bytes.clone())) {
            Err(Error::SlowDown(_)) => {
                saw_refusal = true;
                refused.push(c);
            }
            Ok(_) => acked.push((c, c_bytes)),
            Err(err) => panic!("{c}: {err}"),
        }
        // H's data is written: at its commit it waits for room rather than being refused.
        tx.send(BodyItem::End { checksum: None }).unwrap();
        for (k, d, w) in [(h, h_bytes, h_writer), (a, a_bytes, a_writer), (b, b_bytes, b_writer)] {
            match w.join().unwrap() {
                Ok(_) => acked.push((k, d)),
                Err(err) => panic!("{k}: {err}"),
            }
        }
        saw_wait |= stats(&e).commit_queue_waits > waits;
        if saw_refusal && saw_wait {
            break;
        }
    }
    for d in &devices {
        failpoints::clear(d);
    }

    for s in block_on(e.stats()).unwrap() {
        assert!(s.commit_queue_peak <= 1, "core {}: the commit queue held {} records", s.core, s.commit_queue_peak);
    }
    assert!(saw_refusal, "no write was refused while the queue was full: {:?}", stats(&e));
    assert!(saw_wait, "H did not wait for room: {:?}", stats(&e));
    // Everything acknowledged is there, also after a restart; nothing refused was stored.
    let check = |e: &engine::Engine, when: &str| {
        for (k, d) in &acked {
            assert_eq!(get(e, "commits", k), d.as_ref(), "{k} ({when})");
        }
        for k in &refused {
            let r = block_on(e.head_object("commits", k));
            assert!(
                matches!(r, Err(Error::Request(engine::error::RequestError::NoSuchKey { .. }))),
                "{k}: a refused write was stored ({when}): {r:?}"
            );
        }
    };
    check(&e, "before the restart");
    e.shutdown();
    drop(e);
    let e = open_cfg(&root, 2, tune);
    check(&e, "after the restart");
    e.shutdown();
}

/// Objects in the test's repair queue at most, and objects with a shard on the failed device.
const REPAIR_QUEUE_MAX: usize = 2;
const REPAIR_OBJECTS: usize = 24;

#[test]
fn a_full_repair_queue_leaves_the_rest_to_a_rescan_and_every_object_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let l = layout9(root);
    engine::format(&l).unwrap();
    let mut cfg = test_config(l.devices.clone());
    cfg.heal = engine::HealConfig { scrub: false, repair_poll_ms: 20, health_probe_ms: 0, ..Default::default() };
    cfg.repair_queue_depth_max = REPAIR_QUEUE_MAX;
    let e = engine::Engine::open(cfg.clone()).unwrap();
    let tablets = e.device_set().tablets as u64;
    block_on(e.create_bucket("rep")).unwrap();
    // Erasure-coded (above the inline limit): six of the nine devices each.
    let objects: Vec<(String, bytes::Bytes)> =
        (0..REPAIR_OBJECTS).map(|i| (format!("o{i:02}"), data(i as u64, 64 << 10))).collect();
    for (k, d) in &objects {
        put(&e, "rep", k, d.clone());
    }
    // Device 0 fails: more objects need a rebuild than the queues hold.
    block_on(e.set_device_health(0, false)).unwrap();
    let limit = Duration::from_secs(30);
    let start = std::time::Instant::now();
    loop {
        let stats = block_on(e.stats()).unwrap();
        let queued: u64 = stats.iter().map(|s| s.repairs_queued).sum();
        assert!(queued <= tablets * REPAIR_QUEUE_MAX as u64, "{queued} objects queued for repair");
        let st = block_on(e.status()).unwrap();
        if st.objects_below_redundancy == 0 && st.repairs_queued == 0 {
            break;
        }
        assert!(start.elapsed() < limit, "repair did not finish: {st:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = block_on(e.stats()).unwrap();
    let overflows: u64 = stats.iter().map(|s| s.repair_queue_overflows).sum();
    let rescans: u64 = stats.iter().map(|s| s.repair_rescans).sum();
    assert!(overflows > 0 && rescans > 0, "the queue never overflowed: {stats:?}");
    assert_eq!(stats.iter().map(|s| s.repair_failures).sum::<u64>(), 0);
    for (k, d) in &objects {
        assert_eq!(get(&e, "rep", k), d.as_ref(), "{k}");
    }
    e.shutdown();
    drop(e);
    // Rebuilt for good: after a restart, without device 0, nothing needs a rebuild.
    cfg.devices.remove(0);
    let e = engine::Engine::open(cfg).unwrap();
    for (k, d) in &objects {
        assert_eq!(get(&e, "rep", k), d.as_ref(), "{k} after the restart without device 0");
    }
    assert_eq!(degraded_reads(&e), 0, "an object still needed a rebuild");
    e.shutdown();
}
