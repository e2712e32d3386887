//! `tessera device replace` end to end, against the real server: 9 devices in 3 zones; one
//! device's directory disappears, the node fails it and restores redundancy on the other
//! devices; the operator replaces it with a new empty directory through the CLI; the status
//! reports full redundancy; then a whole *different* zone disappears and every object still
//! reads back bit-exact.

mod common;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tessera::admin::StatusReport;
use tessera::cli::admin;

const BUCKET: &str = "replace";

/// (healthy, path) of every device.
fn devices(st: &StatusReport) -> Vec<(bool, PathBuf)> {
    st.devices.iter().map(|d| (d.healthy, PathBuf::from(d.path.as_deref().unwrap_or("")))).collect()
}

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
        .env("TESSERA_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run the tessera CLI")
}

fn size_for(i: u64) -> usize {
    // Inline (<= 16 KiB), one short stripe, and multi-stripe (1 MiB of data per stripe).
    match i % 4 {
        0 => 3000 + i as usize,
        1 => 16 * 1024 + 1 + (i as usize * 7919) % 200_000,
        2 => (1 << 20) + (i as usize * 104_729) % 300_000,
        _ => (2 << 20) + 4096 + (i as usize * 15_485_863) % 1_000_000,
    }
}

async fn put_all(c: &aws_sdk_s3::Client, prefix: &str, seed: u64, n: u64) -> Vec<(String, u64, usize)> {
    let mut v = Vec::new();
    for i in 0..n {
        let (key, s, len) = (format!("{prefix}/{i:02}"), seed ^ (i + 1).wrapping_mul(0x9E37_79B9), size_for(i));
        c.put_object().bucket(BUCKET).key(&key).body(ByteStream::from(data(s, len))).send().await.unwrap();
        v.push((key, s, len));
    }
    v
}

async fn read_all(c: &aws_sdk_s3::Client, objects: &[(String, u64, usize)], phase: &str) {
    for (key, s, len) in objects {
        let o = c
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("[{phase}] GET {key}: {} {}", status_of(&e), code(&e)));
        let got = o.body.collect().await.unwrap_or_else(|e| panic!("[{phase}] GET {key} body: {e:?}")).into_bytes();
        assert!(got.len() == *len && got.as_ref() == data(*s, *len).as_slice(), "[{phase}] {key}: wrong bytes");
    }
    eprintln!("[replace] {phase}: {} objects read back bit-exact", objects.len());
}

fn rename_away(p: &Path) {
    std::fs::rename(p, p.with_extension("away")).unwrap_or_else(|e| panic!("rename {} away: {e}", p.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_device_is_replaced_by_the_cli_and_the_node_then_survives_losing_another_zone() {
    let seed: u64 = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("[replace] seed {seed} (rerun with TEST_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let dev = |i: usize| data_dir.join(format!("d{i}"));
    let mut args: Vec<String> = Vec::new();
    for i in 0..9 {
        args.push("--device".into());
        args.push(format!("z{}={}", i / 3 + 1, dev(i).display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    format(data_dir, &args);
    let srv = Server::start_with(data_dir, "127.0.0.1:0", &args);
    let c = srv.client();
    c.create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut objects = put_all(&c, "before", seed, 16).await;
    let st = status(&srv);
    assert_eq!(devices(&st).len(), 9);

    // Device 4 (zone z2) disappears. The health probe fails it and the node re-places its
    // shards zone-safely on the 8 others.
    rename_away(&dev(4));
    wait_status(&srv, "device 4 failed and redundancy restored elsewhere", Duration::from_secs(40), |st| {
        !devices(st)[4].0 && st.objects_below_redundancy == 0 && st.repairs_queued == 0
    })
    .await;
    assert!(!dev(4).exists(), "the server re-created the missing device directory");
    read_all(&c, &objects, "device 4 failed").await;

    // A replacement onto another device's path is refused, and changes nothing.
    let endpoint = srv.endpoint.clone();
    let out =
        cli(&["device", "replace", "--device", "4", "--path", &dev(5).to_string_lossy(), "--endpoint", &endpoint]);
    assert!(!out.status.success(), "replacing onto device 5's path was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("path of device 5"), "{err}");

    // The operator replaces it with a new, empty directory and waits for full redundancy.
    let new4 = data_dir.join("d4-new");
    let out = cli(&[
        "device",
        "replace",
        "--device",
        "dev4",
        "--path",
        &new4.to_string_lossy(),
        "--wait",
        "60",
        "--endpoint",
        &endpoint,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "tessera device replace failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("replaced") && text.contains("fully redundant"), "{text}");
    assert!(text.contains(&format!("--device z2={}", new4.display())), "no note about the new path: {text}");
    let st = status(&srv);
    let table = admin::render_status(&st);
    eprintln!("{table}");
    assert!(devices(&st)[4].0 && devices(&st)[4].1 == new4, "{table}");
    assert_eq!(st.objects_below_redundancy, 0, "{table}");
    assert!(table.contains("9 healthy, 0 failed"), "{table}");

    // New objects use the new device too.
    objects.extend(put_all(&c, "after", seed.rotate_left(7), 12).await);
    let shards_on_new = walk_files(&new4).iter().filter(|p| p.contains("seg-")).count();
    assert!(shards_on_new > 0, "nothing was written to the replacement device");

    // A different zone, z3, disappears: everything still reads back bit-exact.
    for i in 6..9 {
        rename_away(&dev(i));
    }
    wait_status(&srv, "zone z3 failed", Duration::from_secs(40), |st| devices(st)[6..9].iter().all(|d| !d.0)).await;
    read_all(&c, &objects, "zone z3 gone after the replacement").await;
    for i in 6..9 {
        assert!(!dev(i).exists(), "the server re-created {}", dev(i).display());
    }
}

fn walk_files(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// The background I/O shares and the scrub period are set on the server's command line, and
/// the status reports what is in force; shares outside 1..=99 are refused before the server
/// starts.
#[test]
fn io_shares_and_scrub_period_are_set_on_the_command_line_and_shown_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--repair-share", "10", "--scrub-share", "2", "--compaction-share", "25", "--scrub-period-hours", "48"];
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &args);
    let st = status(&srv);
    let shares = st.io_shares;
    assert_eq!((shares.repair, shares.scrub, shares.compaction), (10, 2, 25), "{st:?}");
    assert_eq!(st.scrub_period_secs, 48 * 3600);
    let out = cli(&["status", "--endpoint", &srv.endpoint]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tessera status failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("repair 10 %, scrub 2 %, compaction 25 % (scrub period 48 h)"), "{text}");
    drop(srv);

    // Defaults when no flag is given: repair 20, scrub 5, compaction 15; a week.
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_in(dir.path(), "127.0.0.1:0");
    let st = status(&srv);
    let shares = st.io_shares;
    assert_eq!((shares.repair, shares.scrub, shares.compaction), (20, 5, 15));
    assert_eq!(st.scrub_period_secs, 7 * 24 * 3600);
    drop(srv);

    assert_refused(dir.path(), &[["--repair-share", "0"], ["--scrub-share", "100"], ["--scrub-period-hours", "0"]]);
}

/// Each `[flag, value]` makes `tessera server` exit 2 naming the flag, before it creates
/// anything.
fn assert_refused(dir: &Path, bad: &[[&str; 2]]) {
    for bad in bad {
        let d = dir.join("never");
        let out = cli(&["server", "--listen", "127.0.0.1:0", "--data", d.to_str().unwrap(), bad[0], bad[1]]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?} was not refused: {err}");
        assert!(err.contains(bad[0]), "{bad:?}: the error does not name the flag: {err}");
        assert!(!d.exists(), "{bad:?}: a refused start created its data directory");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_written_with_one_chunk_size_read_back_after_a_restart_with_another() {
    let seed: u64 = std::env::var("TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("[chunk] seed {seed} (rerun with TEST_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    // 128 KiB chunks, one stripe in flight: every size class, including multi-stripe objects.
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &["--chunk-kib", "128", "--stripes-in-flight", "1"]);
    let c = srv.client();
    c.create_bucket().bucket(BUCKET).send().await.unwrap();
    let mut objects = put_all(&c, "c128", seed, 8).await;
    read_all(&c, &objects, "written with 128 KiB chunks").await;
    drop(srv);
    // The defaults (64 KiB, two in flight) over the same data: old objects keep their chunk.
    let srv = Server::start_in(dir.path(), "127.0.0.1:0");
    let c = srv.client();
    read_all(&c, &objects, "128 KiB objects after a restart with the default chunk").await;
    objects.extend(put_all(&c, "c64", seed ^ 1, 8).await);
    read_all(&c, &objects, "both chunk sizes").await;
    drop(srv);

    assert_refused(
        dir.path(),
        &[["--chunk-kib", "6"], ["--chunk-kib", "0"], ["--chunk-kib", "8192"], ["--stripes-in-flight", "0"]],
    );
}
