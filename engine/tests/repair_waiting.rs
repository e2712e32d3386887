//! A repair that has no zone-safe room (the embedded 6 devices, one failed) waits: the object
//! stays counted below redundancy, the error is logged once per change of state (not once per
//! read or scrub pass that finds the object again), and the wait ends when the device is back.
//!
//! Its own test binary: it installs a process-wide tracing subscriber that counts the errors.

mod common;
use common::*;
use engine::{EngineConfig, HealConfig, Layout};
use std::sync::Mutex;
use std::time::Duration;

const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Every ERROR event's message, from every thread.
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct CountErrors;

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for CountErrors {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() == tracing::Level::ERROR
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut m = Message(String::new());
        e.record(&mut m);
        ERRORS.lock().unwrap_or_else(|p| p.into_inner()).push(m.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn repair_errors() -> Vec<String> {
    ERRORS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|m| m.contains("repair") || m.contains("redundancy"))
        .cloned()
        .collect()
}

#[test]
fn a_repair_without_room_waits_counted_below_redundancy_and_logs_once() {
    tracing::subscriber::set_global_default(CountErrors).expect("the only subscriber of this binary");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let l = Layout::embedded(root, 2);
    engine::format(&l).unwrap();
    let mut cfg = EngineConfig::new(l.devices.clone());
    cfg.cores = 2;
    cfg.segment_bytes = 8 << 20;
    cfg.pool_buffers = 64;
    cfg.pin = false;
    // A fast scrubber and probe: both keep finding the degraded objects again.
    cfg.heal = HealConfig {
        scrub: true,
        scrub_bytes_per_sec: 512 << 20,
        repair_poll_ms: 10,
        health_probe_ms: 50,
        ..HealConfig::default()
    };
    let e = engine::Engine::open(cfg).expect("open");
    block_on(e.create_bucket("wait")).unwrap();
    let objects: Vec<(String, bytes::Bytes)> =
        (0..12u64).map(|i| (format!("w{i:02}"), data(i + 1, 100_000 + i as usize * 90_001))).collect();
    for (k, d) in &objects {
        put(&e, "wait", k, d.clone());
    }
    let n = objects.len() as u64;
    let dev2 = root.join("dev2");
    std::fs::rename(&dev2, root.join("dev2.away")).unwrap();
    let st = wait_for("device 2 failed and every object waiting", &e, WAIT_LIMIT, |s| {
        !s.devices[2].healthy && s.repairs_waiting == n && s.repairs_queued == 0
    });
    let passes = st.scrub_passes;
    // Reads and scrub passes find every object degraded again and again.
    for _ in 0..5 {
        for (k, d) in &objects {
            assert_eq!(get(&e, "wait", k), d.as_ref(), "{k}");
        }
    }
    let st =
        wait_for("two more scrub passes", &e, WAIT_LIMIT, |s| s.scrub_passes >= passes + 2 && s.repairs_queued == 0);
    assert_eq!(st.objects_below_redundancy, n, "waiting objects must stay counted below redundancy: {st:#?}");
    assert_eq!(st.repairs_waiting, n, "{st:#?}");
    assert_eq!(st.repair_failures, 0, "no room is not a failure: {st:#?}");
    let logged = repair_errors();
    println!("repair errors logged: {logged:#?}");
    // Once per tablet that has waiting objects (2 tablets), however often they were found.
    assert!(!logged.is_empty(), "the wait was never reported");
    assert!(logged.len() <= 2, "logged {} times for one change of state: {logged:#?}", logged.len());
    assert!(logged.iter().all(|m| m.contains("cannot restore full redundancy")), "{logged:#?}");

    // The device comes back: the waiting objects are retried and are whole again.
    std::fs::rename(root.join("dev2.away"), &dev2).unwrap();
    let st = wait_for("device 2 back and nothing waiting", &e, WAIT_LIMIT, |s| {
        s.devices[2].healthy && s.repairs_waiting == 0 && s.repairs_queued == 0 && s.objects_below_redundancy == 0
    });
    assert_eq!(st.repair_failures, 0, "{st:#?}");
    assert_eq!(repair_errors().len(), logged.len(), "errors logged after the device came back");
    for (k, d) in &objects {
        assert_eq!(get(&e, "wait", k), d.as_ref(), "{k} after device 2 came back");
    }
    e.shutdown();
}
