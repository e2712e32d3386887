//! Protocol tests of the S3 workloads: against a fake S3 server written here (canned responses,
//! chunked transfer coding, aws-chunked decoding with the CRC32C trailer checked), and against
//! `target/debug/tessera` when it has been built (skipped with a printed reason otherwise).

use crate::payload::SizeDist;
use crate::s3_mode::{run_workload, Common, PayloadMode, Report, Workload};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn common(endpoint: &str, payload: PayloadMode, prefix: &str) -> Common {
    Common {
        endpoint: endpoint.to_string(),
        access_key: "AKBENCH".into(),
        secret_key: "secret-bench".into(),
        region: "us-east-1".into(),
        bucket: "bench-test".into(),
        prefix: prefix.into(),
        size: SizeDist { min: 1, max: 200 * 1024 },
        concurrency: 4,
        client_threads: 2,
        duration_secs: 10,
        ops: Some(200),
        objects: 40,
        payload,
        random_payload: true,
        verify: true,
        seed: 42,
        skip_prepare: false,
        server_pid: None,
        json: None,
        plot: None,
        quiet: true,
    }
}

fn assert_clean(r: &Report, what: &str) {
    for x in &r.results {
        assert_eq!(
            x.result.errors, 0,
            "{what}: {} had errors {:?}, first {:?}",
            x.result.name, x.errors_by_code, x.result.first_error
        );
    }
    assert!(r.results.iter().any(|x| x.result.ops > 0), "{what}: no operation ran");
}

#[derive(Default)]
struct Fake {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    trailers_checked: AtomicU64,
    requests: AtomicU64,
    corrupt_gets: AtomicBool,
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

/// Decode an aws-chunked body and check its x-amz-checksum-crc32c trailer.
fn decode_aws_chunked(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let e = find(b, b"\r\n").ok_or("chunk size line without CRLF")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..e]).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())?;
        b = &b[e + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[..size]);
        if &b[size..size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        b = &b[size + 2..];
    }
    let t = std::str::from_utf8(b).map_err(|e| e.to_string())?;
    let want = format!("x-amz-checksum-crc32c:{}\r\n\r\n", crate::payload::base64(&crc32c::crc32c(&out).to_be_bytes()));
    if t != want {
        return Err(format!("trailer {t:?}, expected {want:?}"));
    }
    Ok(out)
}

async fn fake_conn(fake: Arc<Fake>, mut s: TcpStream) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 65536];
    loop {
        // Head.
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut hs);
        req.parse(&buf[..head_end]).expect("the client sends well-formed heads");
        let method = req.method.unwrap_or("").to_string();
        let target = req.path.unwrap_or("").to_string();
        let header = |n: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(n))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let auth = header("authorization").unwrap_or_default();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKBENCH/"), "unsigned request: {auth:?}");
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let chunked = header("content-encoding").is_some_and(|v| v.contains("aws-chunked"));
        let sha = header("x-amz-content-sha256").unwrap_or_default();
        let decoded_len: Option<usize> = header("x-amz-decoded-content-length").and_then(|v| v.parse().ok());
        while buf.len() < head_end + len {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let raw: Vec<u8> = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        fake.requests.fetch_add(1, Ordering::Relaxed);
        let body = if chunked {
            assert_eq!(sha, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
            let b = decode_aws_chunked(&raw).expect("valid aws-chunked body");
            assert_eq!(Some(b.len()), decoded_len, "x-amz-decoded-content-length");
            fake.trailers_checked.fetch_add(1, Ordering::Relaxed);
            b
        } else {
            if !raw.is_empty() && sha != "UNSIGNED-PAYLOAD" {
                assert_eq!(sha, crate::sigv4::sha256_hex(&raw), "signed payload hash");
            }
            raw
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let key = path.trim_start_matches('/').split_once('/').map(|(_, k)| k.to_string());
        let mut out: Vec<u8> = Vec::new();
        let not_found = |out: &mut Vec<u8>, head: bool| {
            let x = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
            out.extend_from_slice(format!("HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n", x.len()).as_bytes());
            if !head {
                out.extend_from_slice(x.as_bytes());
            }
        };
        match (method.as_str(), key) {
            ("PUT", None) => out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ("PUT", Some(k)) => {
                fake.objects.lock().expect("fake lock").insert(k, body);
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n");
            }
            ("GET", Some(k)) => match fake.objects.lock().expect("fake lock").get(&k).cloned() {
                Some(mut data) => {
                    if fake.corrupt_gets.load(Ordering::Relaxed) && !data.is_empty() {
                        data[0] ^= 1;
                    }
                    // Chunked transfer coding in uneven pieces, with a chunk extension.
                    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                    for c in data.chunks(999) {
                        out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
                        out.extend_from_slice(c);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\nx-trailer: y\r\n\r\n");
                }
                None => not_found(&mut out, false),
            },
            ("HEAD", Some(k)) => match fake.objects.lock().expect("fake lock").get(&k).map(|d| d.len()) {
                Some(n) => out.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").as_bytes()),
                None => not_found(&mut out, true),
            },
            ("DELETE", Some(k)) => {
                fake.objects.lock().expect("fake lock").remove(&k);
                out.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
            }
            ("GET", None) => {
                let q: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
                let max: usize = q.get("max-keys").and_then(|v| v.parse().ok()).unwrap_or(1000);
                let after = q.get("continuation-token").map(|t| t.replace("%2F", "/")).unwrap_or_default();
                let objs = fake.objects.lock().expect("fake lock");
                let keys: Vec<&String> = objs.keys().filter(|k| k.as_str() > after.as_str()).take(max + 1).collect();
                let truncated = keys.len() > max;
                let page = &keys[..keys.len().min(max)];
                let mut x = format!("<ListBucketResult><IsTruncated>{truncated}</IsTruncated>");
                for k in page {
                    x.push_str(&format!("<Contents><Key>{k}</Key></Contents>"));
                }
                if truncated {
                    x.push_str(&format!("<NextContinuationToken>{}</NextContinuationToken>", page[page.len() - 1]));
                }
                x.push_str("</ListBucketResult>");
                out.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{x}", x.len()).as_bytes());
            }
            (m, k) => panic!("fake server got an unexpected request {m} {k:?}"),
        }
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn start_fake() -> (String, Arc<Fake>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
    let addr = l.local_addr().expect("local address");
    let fake = Arc::new(Fake::default());
    let f = fake.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(fake_conn(f.clone(), s));
        }
    });
    (format!("http://{addr}"), fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_workload_round_trips_every_payload_mode_through_a_fake_server() {
    let (ep, fake) = start_fake().await;
    for mode in [PayloadMode::Unsigned, PayloadMode::Signed, PayloadMode::ChunkedTrailer] {
        let c = common(&ep, mode, &format!("{mode:?}/"));
        let w = Workload::Mixed { get: 45, head: 30, put: 15, delete: 10 };
        let r = run_workload(&c, w).await.expect("mixed run");
        assert_clean(&r, &format!("{mode:?}"));
        assert!(r.results.iter().any(|x| x.result.name == "GET" && x.result.ops > 0));
    }
    assert!(fake.trailers_checked.load(Ordering::Relaxed) >= 40, "chunked PUTs reached the fake with trailers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_corrupted_get_bytes_by_code() {
    let (ep, fake) = start_fake().await;
    let c = common(&ep, PayloadMode::Unsigned, "c/");
    run_workload(&Common { ops: Some(1), ..c.clone() }, Workload::Get).await.expect("prepare");
    fake.corrupt_gets.store(true, Ordering::Relaxed);
    let r = run_workload(&Common { skip_prepare: true, ops: Some(20), ..c }, Workload::Get).await.expect("get run");
    let get = r.results.iter().find(|x| x.result.name == "GET").expect("GET row");
    assert_eq!(get.errors_by_code.get("VerifyMismatch"), Some(&20), "{:?}", get.errors_by_code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_every_key_and_reports_missing_objects_by_code() {
    let (ep, fake) = start_fake().await;
    let c = Common {
        objects: 2500,
        size: SizeDist { min: 0, max: 0 },
        ops: Some(9),
        concurrency: 1,
        ..common(&ep, PayloadMode::Unsigned, "l/")
    };
    let r = run_workload(&c, Workload::List { max_keys: 1000 }).await.expect("list run");
    assert_clean(&r, "list");
    let list = &r.results[0];
    assert_eq!(list.result.ops, 9);
    assert_eq!(fake.objects.lock().expect("fake lock").len(), 2500);
    // 9 pages = 3 full listings of 1000 + 1000 + 500 keys, each checked against --objects.
    assert!(list.keys_per_s.is_some_and(|k| k > 0.0));
    let c = Common { skip_prepare: true, objects: 3000, ..c };
    let r = run_workload(&c, Workload::List { max_keys: 1000 }).await.expect("list run");
    assert_eq!(r.results[0].errors_by_code.get("ListCountMismatch"), Some(&3));
    let r = run_workload(&Common { skip_prepare: true, ops: Some(50), ..c }, Workload::Get).await.expect("get run");
    assert!(r.results[0].errors_by_code.contains_key("NoSuchKey"), "{:?}", r.results[0].errors_by_code);
}

/// `target/debug/tessera`, if built (CARGO_TARGET_DIR or the workspace's target/).
fn tessera_binary() -> Option<std::path::PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug/tessera");
    p.exists().then_some(p)
}

struct Server {
    child: std::process::Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tessera() -> Option<Server> {
    use std::io::BufRead;
    let Some(bin) = tessera_binary() else {
        eprintln!("SKIPPED: target/debug/tessera is not built (cargo build -p tessera)");
        return None;
    };
    let dir = tempfile::tempdir().expect("temporary data directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let mut child = std::process::Command::new(bin)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--segment-mib", "16", "--data"])
        .arg(dir.path())
        .env("TESSERA_ACCESS_KEY", "AKBENCH")
        .env("TESSERA_SECRET_KEY", "secret-bench")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tessera");
    let out = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(out).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l.starts_with("tessera ready:"));
    assert!(ready, "tessera exited without printing 'tessera ready:'");
    std::thread::spawn(move || lines.for_each(drop));
    Some(Server { child, endpoint: format!("http://127.0.0.1:{port}"), _dir: dir })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_clean_and_verified_against_tessera() {
    let Some(srv) = start_tessera() else { return };
    let ep = srv.endpoint.as_str();
    let mixed = Workload::Mixed { get: 45, head: 30, put: 15, delete: 10 };
    for mode in [PayloadMode::Unsigned, PayloadMode::Signed] {
        let c = common(ep, mode, &format!("{mode:?}/"));
        assert_clean(&run_workload(&c, mixed.clone()).await.expect("mixed"), &format!("mixed {mode:?}"));
    }
    let c = common(ep, PayloadMode::Unsigned, "p/");
    assert_clean(&run_workload(&c, Workload::Put).await.expect("put"), "put");
    assert_clean(&run_workload(&c, Workload::Get).await.expect("get"), "get");
    let l = Common {
        objects: 1200,
        size: SizeDist { min: 0, max: 0 },
        ops: Some(6),
        ..common(ep, PayloadMode::Unsigned, "l/")
    };
    assert_clean(&run_workload(&l, Workload::List { max_keys: 500 }).await.expect("list"), "list");
    let m = Common {
        size: SizeDist { min: 11 << 20, max: 11 << 20 },
        objects: 4,
        ops: Some(2),
        ..common(ep, PayloadMode::Signed, "m/")
    };
    let r = run_workload(&m, Workload::Multipart { part_size: 5 << 20, part_concurrency: 3 }).await.expect("multipart");
    assert_clean(&r, "multipart");
    let d = Common { ops: None, ..common(ep, PayloadMode::Unsigned, "d/") };
    let r = run_workload(&d, Workload::Delete).await.expect("delete");
    assert_clean(&r, "delete");
    assert_eq!(r.results[0].result.ops, 40);
}

/// aws-chunked uploads with a CRC32C trailer (the SDKs' default) through the whole mixed
/// workload, every GET verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_trailer_puts_run_clean_against_tessera() {
    let Some(srv) = start_tessera() else { return };
    let c = common(&srv.endpoint, PayloadMode::ChunkedTrailer, "ct/");
    let r = run_workload(&c, Workload::Mixed { get: 45, head: 30, put: 15, delete: 10 }).await.expect("mixed");
    assert_clean(&r, "mixed chunked-trailer");
}
