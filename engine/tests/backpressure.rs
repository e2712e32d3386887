//! Bounded mailboxes: a core that falls behind refuses client requests with `SlowDown` once its
//! mailbox holds `mailbox_depth_max` messages, instead of queueing memory without bound, and
//! serves again once it catches up.

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
