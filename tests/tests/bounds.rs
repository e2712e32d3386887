//! Per-core bounds on connections and requests in flight: past them a client gets 503 SlowDown
//! at once instead of the server holding memory for it without limit; what was admitted
//! completes, and the server serves again once the load is gone.

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY_BYTES: usize = 1000;

/// A signed PUT whose head is sent and whose body is held back: it stays in flight.
async fn stalled_put(srv: &Server, key: &str) -> (TcpStream, Vec<u8>) {
    let mut r = Raw {
        method: "PUT",
        path: format!("/bounds/{key}"),
        query: String::new(),
        headers: vec![("content-length".into(), BODY_BYTES.to_string())],
        body: data(7, BODY_BYTES),
    };
    sign(&mut r, &srv.addr, "UNSIGNED-PAYLOAD", SECRET_KEY);
    let mut head = format!("PUT {} HTTP/1.1\r\n", r.path);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(&srv.addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    (s, r.body)
}

/// The status of the response on `s`, if one arrives within `wait`.
async fn status_within(s: &mut TcpStream, wait: Duration) -> Option<(u16, String)> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, s.read(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_per_core_bound_get_slow_down_and_admitted_ones_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &["--requests-per-core-max", "1"]);
    srv.client().create_bucket().bucket("bounds").send().await.expect("create bucket");

    // Two cores, one request each: of six stalled PUTs at most two are admitted.
    let mut puts = Vec::new();
    for i in 0..6 {
        puts.push(stalled_put(&srv, &format!("k{i}")).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut refused, mut admitted) = (0, Vec::new());
    for (mut s, body) in puts {
        match status_within(&mut s, Duration::from_millis(1500)).await {
            Some((503, text)) => {
                assert!(text.contains("<Code>SlowDown</Code>"), "{text}");
                refused += 1;
            }
            Some((status, text)) => panic!("a stalled PUT was answered {status} before its body:\n{text}"),
            None => admitted.push((s, body)),
        }
    }
    assert!(refused >= 4, "only {refused} of 6 were refused");
    assert!(!admitted.is_empty(), "nothing was admitted");
    // The admitted ones complete once their bodies arrive.
    for (s, body) in &mut admitted {
        s.write_all(body).await.expect("body");
        let (status, text) = status_within(s, Duration::from_secs(30)).await.expect("an answer");
        assert_eq!(status, 200, "{text}");
    }
    // And the server serves again.
    let c = srv.client();
    c.put_object().bucket("bounds").key("after").body(data(3, 100).into()).send().await.expect("PUT after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_core_bound_get_slow_down_and_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &["--connections-per-core-max", "2"]);
    // Two cores, two connections each: of eight idle connections at least four are refused.
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(TcpStream::connect(&srv.addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = 0;
    for s in &mut conns {
        if let Some((status, text)) = status_within(s, Duration::from_millis(500)).await {
            assert_eq!(status, 503, "{text}");
            assert!(text.contains("<Code>SlowDown</Code>"), "{text}");
            refused += 1;
        }
    }
    assert!(refused >= 4, "only {refused} of 8 connections were refused");
    drop(conns);
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.client().list_buckets().send().await.expect("served again once the connections are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_abandoned_with_request_timeout_and_frees_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Server::start_with(dir.path(), "127.0.0.1:0", &["--requests-per-core-max", "1"]);
    let c = srv.client();
    c.create_bucket().bucket("bounds").send().await.expect("create bucket");
    let (mut s, body) = stalled_put(&srv, "stalled").await;
    s.write_all(&body[..100]).await.expect("part of the body");
    let limit = tessera::body::BODY_IDLE_TIMEOUT + Duration::from_secs(15);
    let (status, text) = status_within(&mut s, limit).await.expect("an answer before the limit");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>RequestTimeout</Code>"), "{text}");
    let e = c.head_object().bucket("bounds").key("stalled").send().await.expect_err("nothing stored");
    assert_eq!(status_of(&e), 404);
    // Its core's only request slot is free again: a burst of PUTs all lands.
    for i in 0..8 {
        c.put_object().bucket("bounds").key(format!("after{i}")).body(data(i, 100).into()).send().await.expect("PUT");
    }
}
