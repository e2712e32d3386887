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
