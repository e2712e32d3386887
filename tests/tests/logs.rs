//! Logs an operator can ship: with `--log-format json` every stderr line is one JSON object,
//! each request has an access line whose request id is the `x-amz-request-id` the client got,
//! and no colour codes reach a stderr that is not a terminal (text format too);
//! `--no-access-log` turns the access lines off.

mod common;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server whose stderr goes to `log` (a file: not a terminal).
fn start(data: &Path, log: &Path, extra: &[&str]) -> (Child, String) {
    let stderr = std::fs::File::create(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(["server", "--listen", "127.0.0.1:0", "--cores", "2", "--segment-mib", "8", "--data"])
        .arg(data)
        .args(extra)
        .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
        .env("TESSERA_SECRET_KEY", SECRET_KEY)
        .env("TESSERA_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn tessera");
    let addr = ready_address(&mut child, Duration::from_secs(60));
    (child, format!("http://{addr}"))
}

fn stop(mut child: Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) on our own child, which `child` keeps from being reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
}

/// PUT one object, then GET a missing key; returns the 404's request id.
async fn load(endpoint: &str) -> String {
    let c = client_with(endpoint, ACCESS_KEY, SECRET_KEY);
    c.create_bucket().bucket("logs").send().await.expect("create bucket");
    c.put_object().bucket("logs").key("k").body(ByteStream::from(data(1, 5000))).send().await.expect("PUT");
    let e = c.get_object().bucket("logs").key("absent").send().await.expect_err("absent");
    assert_eq!(status_of(&e), 404);
    e.as_service_error().and_then(|s| s.request_id()).expect("the 404 carries x-amz-request-id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_an_access_line_per_request_with_the_clients_request_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.json");
    let (child, endpoint) = start(&dir.path().join("data"), &log, &["--log-format", "json"]);
    let rid = load(&endpoint).await;
    stop(child);

    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file:\n{text}");
    let mut access = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        if v["target"] == "tessera::access" {
            access.push(v);
        }
    }
    let put = access
        .iter()
        .find(|v| v["operation"] == "PutObject")
        .unwrap_or_else(|| panic!("no access line for the PUT: {access:?}"));
    assert_eq!(
        (put["status"].as_u64(), put["bytes_in"].as_u64(), put["method"].as_str()),
        (Some(200), Some(5000), Some("PUT"))
    );
    assert_eq!(put["path"], "/logs/k");
    assert!(put["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{put}");
    assert!(put["duration_us"].as_u64().is_some(), "{put}");
    let miss = access
        .iter()
        .find(|v| v["request_id"] == rid.as_str())
        .unwrap_or_else(|| panic!("no access line with the client's request id {rid}: {access:?}"));
    assert_eq!((miss["operation"].as_str(), miss["status"].as_u64()), (Some("GetObject"), Some(404)));
    assert_eq!(access.len(), 3, "one line per request (CreateBucket, PUT, GET): {access:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_colour_off_a_terminal_and_the_access_log_can_be_switched_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.txt");
    let (child, endpoint) = start(&dir.path().join("data"), &log, &[]);
    let rid = load(&endpoint).await;
    stop(child);
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file:\n{text}");
    assert!(text.lines().any(|l| l.contains("tessera::access") && l.contains(&rid)), "{text}");

    let log = dir.path().join("stderr-off.txt");
    let (child, endpoint) = start(&dir.path().join("data2"), &log, &["--no-access-log"]);
    load(&endpoint).await;
    stop(child);
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(text.contains("INFO"), "the log is not at info level, so this proves nothing:\n{text}");
    assert!(!text.contains("tessera::access"), "access lines with --no-access-log:\n{text}");
}
