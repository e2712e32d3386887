//! The operator's endpoints against the real server: `/health/live` and `/health/ready`
//! answer without credentials, ready turns 503 when too few devices can take a stripe and back
//! to 200 when the device returns; `/metrics` needs its bearer token when one is set, parses
//! with a Prometheus text parser (every sample line), and its counters move with the load by
//! exactly the requests made. The same paths, signed, are still S3's (bucket `health`,
//! bucket `metrics`).

mod common;
use aws_sdk_s3::primitives::ByteStream;
use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TOKEN: &str = "metrics-token-for-the-test";

async fn get(addr: &str, path: &str, auth: Option<&str>) -> RawResponse {
    let mut headers = vec![("host".to_string(), addr.to_string())];
    if let Some(a) = auth {
        headers.push(("authorization".into(), a.to_string()));
    }
    let r = Raw { method: "GET", path: path.into(), query: String::new(), headers, body: vec![] };
    send(addr, &r, None).await
}

fn header<'a>(r: &'a RawResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Every sample of a scrape by `name{sorted labels}` (histograms as their `_bucket`, `_sum`
/// and `_count` lines), after checking that the Prometheus parser recognises every line.
fn scrape(body: &str) -> HashMap<String, f64> {
    for line in body.lines() {
        let info = prometheus_parse::LineInfo::parse(line);
        let known = matches!(
            info,
            prometheus_parse::LineInfo::Doc { .. }
                | prometheus_parse::LineInfo::Type { .. }
                | prometheus_parse::LineInfo::Sample { .. }
        );
        assert!(known, "a line the Prometheus parser does not take: {line:?}");
    }
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parses");
    assert!(!parsed.samples.is_empty(), "no samples:\n{body}");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let v = match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => {
                for b in h {
                    out.insert(format!("{key}le={}", b.less_than), b.count);
                }
                continue;
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, v);
    }
    out
}

async fn metrics(addr: &str) -> HashMap<String, f64> {
    let r = get(addr, "/metrics", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    scrape(&r.text())
}

fn val(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

async fn wait_ready(addr: &str, want: u16, timeout: Duration) -> RawResponse {
    let t0 = Instant::now();
    loop {
        let r = get(addr, "/health/ready", None).await;
        if r.status == want {
            return r;
        }
        assert!(t0.elapsed() < timeout, "/health/ready still {} after {timeout:?}: {}", r.status, r.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_without_s3_credentials_and_follow_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &["--metrics-token", TOKEN]);
    let addr = srv.addr.clone();

    let live = get(&addr, "/health/live", None).await;
    assert_eq!((live.status, live.text().as_str()), (200, "live\n"));
    let ready = get(&addr, "/health/ready", None).await;
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    assert!(header(&ready, "x-amz-request-id").is_some());

    // The token is required, and only the right one opens.
    for auth in [None, Some("Bearer wrong"), Some("Basic bWV0cmljcw==")] {
        let r = get(&addr, "/metrics", auth).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
        assert!(!r.text().contains("tessera_requests"), "metrics leaked without the token");
    }

    // Signed, the same paths are S3's: no bucket `metrics` yet; `health/live` an object.
    let c = srv.client();
    let e = c.list_objects_v2().bucket("metrics").send().await.expect_err("no bucket named metrics");
    assert_eq!(code(&e), "NoSuchBucket");
    c.create_bucket().bucket("health").send().await.expect("create bucket health");
    c.put_object().bucket("health").key("live").body(ByteStream::from_static(b"an object")).send().await.expect("PUT");
    let o = c.get_object().bucket("health").key("live").send().await.expect("GET health/live signed");
    assert_eq!(o.body.collect().await.expect("body").into_bytes().as_ref(), b"an object");

    // Counters move by exactly the load.
    let before = metrics(&addr).await;
    assert_eq!(val(&before, "tessera_ready{}"), 1.0);
    assert_eq!(val(&before, "tessera_device_healthy{device=3,zone=z2}"), 1.0, "{before:?}");
    assert!(val(&before, "tessera_device_filesystem_free_bytes{device=0,zone=z1}") > 0.0, "{before:?}");
    assert!(val(&before, "tessera_connections_open{}") >= 1.0);
    const PUTS: usize = 7;
    const SIZE: usize = 200_000;
    c.create_bucket().bucket("load").send().await.expect("create bucket");
    for i in 0..PUTS {
        c.put_object()
            .bucket("load")
            .key(format!("k{i}"))
            .body(ByteStream::from(data(i as u64, SIZE)))
            .send()
            .await
            .expect("PUT");
    }
    let e = c.get_object().bucket("load").key("absent").send().await.expect_err("absent");
    assert_eq!(status_of(&e), 404);
    let after = metrics(&addr).await;
    let put_ok = "tessera_requests_total{operation=PutObject,status=200}";
    assert_eq!(val(&after, put_ok) - val(&before, put_ok), PUTS as f64, "{after:?}");
    let get_404 = "tessera_requests_total{operation=GetObject,status=404}";
    assert_eq!(val(&after, get_404) - val(&before, get_404), 1.0);
    let count = "tessera_request_duration_seconds_count{operation=PutObject}";
    assert_eq!(val(&after, count) - val(&before, count), PUTS as f64, "{after:?}");
    let inf = "tessera_request_duration_seconds{operation=PutObject}le=inf";
    assert_eq!(val(&after, inf), val(&after, count), "the +Inf bucket holds every request");
    let got_in = val(&after, "tessera_received_bytes_total{}") - val(&before, "tessera_received_bytes_total{}");
    assert!(got_in >= (PUTS * SIZE) as f64, "received {got_in} bytes for {PUTS} x {SIZE}");
    let objects = val(&after, "tessera_objects{}");
    assert_eq!(objects, (PUTS + 1) as f64, "objects: {after:?}");
    // The scrape itself is counted (by the next one).
    let again = metrics(&addr).await;
    assert!(val(&again, "tessera_requests_total{operation=Metrics,status=200}") >= 2.0);
    assert!(val(&again, "tessera_requests_total{operation=Metrics,status=401}") >= 3.0);

    // A device goes away: a 4+2 stripe needs all 6 (at most 2 per zone), so the node is not
    // ready; it is again once the device is back. Liveness does not change.
    let dev = srv.data.join("dev3");
    let away = dev.with_extension("away");
    std::fs::rename(&dev, &away).expect("take dev3 away");
    let r = wait_ready(&addr, 503, Duration::from_secs(30)).await;
    assert!(r.text().starts_with("not ready: 5 of 6 devices"), "{}", r.text());
    assert!(!r.text().contains(&*srv.data.to_string_lossy()), "a path in the probe: {}", r.text());
    assert_eq!(get(&addr, "/health/live", None).await.status, 200);
    // The engine's health probe (every 5 s) marks the device failed; the metrics follow.
    wait_status(&srv, "dev3 failed", Duration::from_secs(30), |st| !st.devices[3].healthy).await;
    let m = metrics(&addr).await;
    assert_eq!(val(&m, "tessera_ready{}"), 0.0);
    assert_eq!(val(&m, "tessera_device_healthy{device=3,zone=z2}"), 0.0);
    // `tessera status` exits 2 while degraded, naming the device; 0 once healthy again.
    let (code, err) = status_cli(&srv.endpoint);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("degraded") && err.contains("dev3"), "{err}");
    std::fs::rename(&away, &dev).expect("bring dev3 back");
    wait_ready(&addr, 200, Duration::from_secs(30)).await;
    let t0 = Instant::now();
    loop {
        let (code, err) = status_cli(&srv.endpoint);
        if code == Some(0) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "still degraded 60 s after dev3 came back: {err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `tessera status` as an operator runs it: (exit code, stderr).
fn status_cli(endpoint: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(["status", "--endpoint", endpoint])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
        .env("TESSERA_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run tessera status");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DEVICE"), "no status table");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}
