//! A real `tessera` process on a loopback port with temporary devices, and clients for it.
#![allow(dead_code)]

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

pub const ACCESS_KEY: &str = "TESTACCESSKEY0000001";
pub const SECRET_KEY: &str = "test/secret/key/0123456789abcdefghijklmn";

pub struct Server {
    child: Option<Child>,
    pub endpoint: String,
    pub addr: String,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Start on a fresh temporary data directory.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in(dir.path(), "127.0.0.1:0");
        s._dir = Some(dir);
        s
    }

    pub fn start_in(data: &Path, listen: &str) -> Server {
        Server::start_with(data, listen, &[])
    }

    /// Start with extra command-line arguments (e.g. `--domain`).
    pub fn start_with(data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
            .args(["server", "--listen", listen, "--cores", "2", "--segment-mib", "8", "--data"])
            .arg(data)
            .args(extra)
            .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
            .env("TESSERA_SECRET_KEY", SECRET_KEY)
            .env("TESSERA_LOG", std::env::var("TESSERA_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tessera");
        let addr = ready_address(&mut child, Duration::from_secs(60));
        Server { child: Some(child), endpoint: format!("http://{addr}"), addr, data: data.to_path_buf(), _dir: None }
    }

    /// SIGTERM and wait: graceful shutdown must exit 0.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = libc::pid_t::try_from(c.id()).expect("a child's pid fits pid_t");
            // SAFETY: kill(2) on our own child's pid, which `c` keeps from being reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let st = c.wait().expect("wait");
            assert!(st.success(), "tessera exited with {st} after SIGTERM");
        }
    }

    /// SIGKILL and wait (no shutdown of any kind runs), then start again on the same data and
    /// the same address.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut next = Server::start_in(&self.data, &self.addr);
        self.child = next.child.take();
    }

    /// Stop and start again on the same data and the same address.
    pub fn restart(&mut self) {
        self.stop();
        let mut next = Server::start_in(&self.data, &self.addr);
        self.child = next.child.take();
    }

    pub fn client(&self) -> Client {
        client_with(&self.endpoint, ACCESS_KEY, SECRET_KEY)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `tessera format --data DATA ARGS` (e.g. `--device Z=P` ...), for the 2 cores the test
/// servers run; it must succeed. Returns its stdout.
pub fn format(data: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(["format", "--cores", "2", "--data"])
        .arg(data)
        .args(args)
        .output()
        .expect("run tessera format");
    assert!(out.status.success(), "tessera format failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn client_with(endpoint: &str, ak: &str, sk: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ak, sk, None, None, "tessera-tests"))
        .force_path_style(true)
        .behavior_version(BehaviorVersion::latest())
        .build();
    Client::from_conf(conf)
}

/// Deterministic pseudo-random bytes.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn md5_hex(d: &[u8]) -> String {
    use md5::Digest;
    hex_encode(&md5::Md5::digest(d))
}

pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The S3 error code of an SDK error, if it got that far.
pub fn code<E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    e: &aws_sdk_s3::error::SdkError<E, R>,
) -> String {
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => s.err().code().unwrap_or("").to_string(),
        other => format!("{other:?}"),
    }
}

pub fn status_of<E, R: HasStatus>(e: &aws_sdk_s3::error::SdkError<E, R>) -> u16 {
    e.raw_response().map(|r| r.status()).unwrap_or(0)
}

pub trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

// ------------------------------------------------------------------ raw signed HTTP

/// A hand-built SigV4 request, for bodies and framings the SDK will not produce.
pub struct Raw {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The parsed status, headers and body of a raw response.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn s3_code(&self) -> String {
        let t = self.text();
        t.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("").to_string()
    }
}

pub fn amz_now() -> (String, String) {
    let t = SystemTime::now();
    let date = s3::http_util::format_amz_date(t);
    let day = date[..8].to_string();
    (date, day)
}

/// Sign `r` (header auth) with `payload_hash` as x-amz-content-sha256, using `secret`.
pub fn sign(r: &mut Raw, addr: &str, payload_hash: &str, secret: &str) -> (String, [u8; 32], String) {
    sign_for_host(r, addr, payload_hash, secret)
}

/// Like `sign`, with an explicit Host header (virtual-hosted-style requests).
pub fn sign_for_host(r: &mut Raw, host: &str, payload_hash: &str, secret: &str) -> (String, [u8; 32], String) {
    use s3::auth::sigv4;
    let (date, day) = amz_now();
    r.headers.push(("host".into(), host.to_string()));
    r.headers.push(("x-amz-date".into(), date.clone()));
    r.headers.push(("x-amz-content-sha256".into(), payload_hash.to_string()));
    let mut hm = http::HeaderMap::new();
    for (k, v) in &r.headers {
        hm.append(http::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
    }
    let mut signed: Vec<String> = r.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let method: http::Method = r.method.parse().expect("method");
    let q = (!r.query.is_empty()).then_some(r.query.as_str());
    let sr = sigv4::SignedRequest { method: &method, path: &r.path, query: q, headers: &hm };
    let creq = sigv4::canonical_request(&sr, &signed, payload_hash).expect("canonical request");
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let sts = sigv4::string_to_sign(&date, &scope, &creq);
    let key = sigv4::signing_key(secret, &day, "us-east-1", "s3");
    let sig = sigv4::sign(&key, &sts);
    r.headers.push((
        "authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope},SignedHeaders={},Signature={sig}", signed.join(";")),
    ));
    (sig, key, format!("{date}\n{scope}"))
}

/// Send a raw request; `truncate_to` sends only that many body bytes, then half-closes.
pub async fn send(addr: &str, r: &Raw, truncate_to: Option<usize>) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let target = if r.query.is_empty() { r.path.clone() } else { format!("{}?{}", r.path, r.query) };
    let mut head = format!("{} {} HTTP/1.1\r\n", r.method, target);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("content-length: {}\r\n", r.body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    let n = truncate_to.unwrap_or(r.body.len()).min(r.body.len());
    s.write_all(&r.body[..n]).await.expect("write body");
    if truncate_to.is_some() {
        s.shutdown().await.expect("half-close");
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], buf[i + 4..].to_vec()),
        None => (&text[..], Vec::new()),
    };
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&body) } else { body };
    RawResponse { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}

/// A GET over plain HTTP of a full URL (e.g. presigned), returning status and body.
pub async fn http_get(url: &str) -> RawResponse {
    let rest = url.strip_prefix("http://").expect("http url");
    let (addr, target) = rest.split_once('/').expect("path");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (format!("/{p}"), q.to_string()),
        None => (format!("/{target}"), String::new()),
    };
    let r = Raw { method: "GET", path, query, headers: vec![("host".into(), addr.to_string())], body: vec![] };
    send(addr, &r, None).await
}

/// The server's health, from its signed admin endpoint (`GET /_tessera/status`).
pub fn status(srv: &Server) -> tessera::admin::StatusReport {
    tessera::cli::admin::get_status(&srv.endpoint, ACCESS_KEY, SECRET_KEY, "us-east-1").expect("admin status")
}

/// Polls the admin status until `pred` holds; fails the test after `timeout`, showing the status.
pub async fn wait_status(
    srv: &Server,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&tessera::admin::StatusReport) -> bool,
) -> tessera::admin::StatusReport {
    let t0 = std::time::Instant::now();
    loop {
        let st = status(srv);
        if pred(&st) {
            eprintln!("[status] {what}: after {:?}", t0.elapsed());
            return st;
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last status:\n{}",
            tessera::cli::admin::render_status(&st)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run `tessera ARGS` (root credentials in the environment); it must exit non-zero within
/// 30 s without saying it is ready. Returns its stderr.
pub fn refused_run(args: &[&str]) -> String {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera-under-test"))
        .args(args)
        .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
        .env("TESSERA_SECRET_KEY", SECRET_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tessera");
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!st.success(), "{args:?} exited 0:\n{stdout}\n{stderr}");
            assert!(!stdout.contains("tessera ready"), "{args:?} said it was ready:\n{stdout}");
            return stderr;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{args:?} still runs after 30 s: it was not refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address a starting `tessera server` child prints in its ready line (waiting at most
/// `within`). Its stdout is drained for the rest of its life, so it never blocks on it.
pub fn ready_address(child: &mut Child, within: Duration) -> String {
    let out = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("tessera ready: http://") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    rx.recv_timeout(within).expect("server did not print its ready line")
}
