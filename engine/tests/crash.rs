//! Crash safety: a child process writes, overwrites and deletes objects and reports each
//! acknowledged operation on stdout; the parent SIGKILLs it at random instants, reopens the
//! engine and checks that every acknowledged write survived and nothing torn is visible.
//!
//! The child is this test binary itself, re-executed with `CRASH_CHILD_DIR` set and the ignored
//! test `crash_child_writer` selected.

mod common;
use common::crash_model::*;
use common::*;
use engine::{Error, RequestError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUCKET: &str = "crash";
/// Concurrent writers in the child; writer `w` owns keys `w*KEYS_PER_WRITER..`, so each key has
/// at most one operation in flight and "last acknowledged" is well defined.
const WRITERS: usize = 3;
const KEYS_PER_WRITER: usize = 4;
const KILLS: usize = 24;
/// On a slow or busy machine a round acknowledges less and meets fewer checkpoints: rounds go
/// on past KILLS (up to this many, each running longer) until the kills have met KILLS
/// checkpoints and recycled files, so the test checks the same situations however fast the
/// machine is.
const ROUNDS_MAX: usize = 3 * KILLS;
/// The child writes for a random time up to this long before it is killed.
const MAX_RUN_MS: u64 = 700;
/// The child stops on its own after this long (if the parent died, it must not run forever).
const CHILD_LIFETIME_MS: u64 = 20_000;

fn key_name(i: usize) -> String {
    format!("k/{i:02}")
}

/// A size drawn from a mix: inline (<= 16 KiB), one stripe, and several stripes (1 MiB each).
fn pick_size(rng: &mut ChaCha8Rng) -> usize {
    match rng.gen_range(0..10) {
        0..=3 => rng.gen_range(0..=engine::INLINE_MAX_BYTES as usize),
        4..=7 => rng.gen_range(engine::INLINE_MAX_BYTES as usize + 1..400 << 10),
        _ => rng.gen_range(1 << 20..(5 << 20) / 2),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child: runs only when re-executed by `acked_writes_survive_sigkill_and_no_torn_object_is_visible`.
#[test]
#[ignore = "child mode of the crash test; runs only when re-executed with CRASH_CHILD_DIR"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("CRASH_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("CRASH_CHILD_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    // A small checkpoint threshold: log checkpoints run all the time, so kills land inside
    // them (while the new generation is written, and while it is installed).
    // (Each waits 25 ms before its switch, so kills also land between "written" and "switched".)
    let e = open_cfg(Path::new(&dir), 2, |cfg| {
        cfg.checkpoint_min_bytes = 128 << 10;
        cfg.checkpoint_install_delay_ms = 25;
    });
    match block_on(e.create_bucket(BUCKET)) {
        Ok(()) | Err(Error::Request(RequestError::BucketAlreadyExists(_))) => {}
        Err(err) => panic!("create bucket: {err}"),
    }
    say("READY");
    let deadline = Instant::now() + Duration::from_millis(CHILD_LIFETIME_MS);
    let writer = |w: usize| {
        let e = e.clone();
        async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (w as u64).wrapping_mul(0x9E37_79B9));
            let mut n = 0u64;
            while Instant::now() < deadline {
                let key = key_name(w * KEYS_PER_WRITER + rng.gen_range(0..KEYS_PER_WRITER));
                n += 1;
                if rng.gen_range(0..6) == 0 {
                    say(&format!("BEGIN DEL {key}"));
                    e.delete_object(BUCKET, &key, None).await.expect("delete");
                    say(&format!("ACK DEL {key}"));
                } else {
                    // Content seeds are unique per child run, writer and operation.
                    let cseed = seed.wrapping_mul(1_000_003) ^ ((w as u64) << 40) ^ n;
                    let size = pick_size(&mut rng);
                    say(&format!("BEGIN PUT {key} {cseed} {size}"));
                    let info = e.put_bytes(BUCKET, &key, Default::default(), data(cseed, size)).await.expect("put");
                    assert_eq!(info.size, size as u64);
                    say(&format!("ACK PUT {key} {cseed} {size}"));
                }
                if n.is_multiple_of(16) {
                    let (c, r) = e
                        .stats()
                        .await
                        .map(|v| v.iter().fold((0u64, 0u64), |a, s| (a.0 + s.checkpoints, a.1 + s.log_files_recycled)))
                        .unwrap_or((0, 0));
                    say(&format!("CHECKPOINTS {c} {r}"));
                }
            }
        }
    };
    block_on(futures::future::join_all((0..WRITERS).map(writer)));
    e.shutdown();
}

/// Applies the child's output; only whole lines count (the last one may be torn by the kill).
fn apply_child_output(model: &mut Model, out: &str) -> usize {
    let complete = out.rfind('\n').map_or("", |i| &out[..=i]);
    apply_lines(model, complete.lines())
}

#[test]
fn acked_writes_survive_sigkill_and_no_torn_object_is_visible() {
    let seed: u64 = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("crash test seed {seed} (replay with TEST_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::new();
    let mut total_acks = 0;
    let mut checkpoints = 0u64;
    let mut recycled = 0u64;
    let mut round = 0;
    while round < KILLS || (round < ROUNDS_MAX && (checkpoints < KILLS as u64 || recycled < KILLS as u64)) {
        round += 1;
        let child_seed: u64 = rng.gen();
        // The first KILLS rounds die at any moment; the extra ones (a busy machine) run longer
        // each, so that they reach the checkpoints and recycled files the first ones missed.
        let run_ms =
            if round <= KILLS { rng.gen_range(0..MAX_RUN_MS) } else { rng.gen_range(MAX_RUN_MS..4 * MAX_RUN_MS) };
        let mut child = Command::new(&exe)
            .args(["crash_child_writer", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("CRASH_CHILD_DIR", dir.path())
            .env("CRASH_CHILD_SEED", child_seed.to_string())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(logs.path().join("child.stderr")).unwrap())
            .spawn()
            .expect("spawn the child writer");
        let out = Arc::new(Mutex::new(String::new()));
        let ready = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let reader = {
            let (out, ready) = (out.clone(), ready.clone());
            let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match stdout.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let s = String::from_utf8_lossy(&buf);
                            if s.trim_end().ends_with("READY") {
                                *ready.0.lock().unwrap() = true;
                                ready.1.notify_all();
                            }
                            out.lock().unwrap().push_str(&s);
                        }
                    }
                }
            })
        };
        {
            let (lock, cv) = &*ready;
            let (g, t) = cv.wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(30), |r| !*r).unwrap();
            assert!(!t.timed_out() || *g, "round {round}, seed {seed}: the child never became ready");
        }
        std::thread::sleep(Duration::from_millis(run_ms));
        child.kill().expect("SIGKILL the child"); // std sends SIGKILL on Unix
        let status = child.wait().unwrap();
        if std::os::unix::process::ExitStatusExt::signal(&status) != Some(libc::SIGKILL) {
            let err = std::fs::read_to_string(logs.path().join("child.stderr")).unwrap_or_default();
            panic!("round {round}, seed {seed}: the child exited on its own ({status}):\n{err}");
        }
        reader.join().unwrap();
        let text = out.lock().unwrap().clone();
        let acks = apply_child_output(&mut model, &text);
        total_acks += acks;
        // The last "CHECKPOINTS c r" line: checkpoints, and log files recycled by them.
        let (c, r) = text
            .lines()
            .filter_map(|l| {
                let mut n = l.strip_prefix("CHECKPOINTS ")?.split_whitespace().map(|v| v.parse::<u64>().ok());
                Some((n.next()??, n.next()??))
            })
            .max()
            .unwrap_or((0, 0));
        checkpoints += c;
        recycled += r;
        let e = open(dir.path());
        verify(&e, BUCKET, &mut model, &format!("round {round}, seed {seed}"));
        e.shutdown();
        println!("round {round}: killed after {run_ms} ms, {acks} acknowledged operations");
    }
    assert!(total_acks > KILLS * 5, "seed {seed}: only {total_acks} operations were acknowledged in all rounds");
    println!("{checkpoints} log checkpoints completed in the children, {recycled} log files recycled by them");
    assert!(checkpoints >= KILLS as u64, "seed {seed}: only {checkpoints} checkpoints ran; kills did not meet them");
    // Later generations are written over retired ones' files: kills land on those too.
    assert!(recycled >= KILLS as u64, "seed {seed}: only {recycled} log files were recycled");
}
