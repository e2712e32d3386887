//! S3-over-HTTP workloads (warp-style): put, get, mixed, list, multipart, delete.
//!
//! Each of `--concurrency` workers is a tokio task with its own keep-alive connection (a
//! multipart worker has `--part-concurrency`), signing every request with SigV4. Worker `w`
//! owns the keys `i` with `i % concurrency == w`, so it knows which of its keys exist and a
//! GET can be checked byte for byte (`--verify`) even while other workers delete and put.

use crate::http::{Conn, Response, Sink};
use crate::payload::{self, Content, SizeDist};
use crate::sigv4::{self, Signer};
use crate::stats::{self, Cpu, OpResult, Recorder};
use hdrhistogram::Histogram;
use rand::rngs::StdRng as SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// aws-chunked chunk size, as the AWS SDKs send.
const AWS_CHUNK_BYTES: usize = 64 * 1024;
/// Latency range of the per-second histograms (2 significant digits: the plot needs no more).
const TIMELINE_MAX_US: u64 = 600_000_000;
/// Workers at most (each holds a connection and its buffers).
const MAX_CONCURRENCY: usize = 4096;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadMode {
    /// x-amz-content-sha256 is the SHA-256 of the body (client hashes every byte).
    Signed,
    /// UNSIGNED-PAYLOAD.
    Unsigned,
    /// STREAMING-UNSIGNED-PAYLOAD-TRAILER: aws-chunked body with an x-amz-checksum-crc32c trailer.
    ChunkedTrailer,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Server address, http://HOST:PORT (path-style requests).
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Bucket (created if missing).
    #[arg(long, default_value = "tessera-bench")]
    pub bucket: String,
    /// Key prefix of every object this run touches.
    #[arg(long, default_value = "tb/")]
    pub prefix: String,
    /// Object size, `4KiB`, or a uniform range, `1KiB-1MiB`.
    #[arg(long, default_value = "4KiB", value_parser = SizeDist::parse)]
    pub size: SizeDist,
    /// Requests in flight (workers, one connection each).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Client threads (tokio workers). One is enough unless payloads are signed or verified.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Seconds of measurement (ignored with --ops).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Operations to run instead of a duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Distinct keys. get, mixed, list and delete PUT them all first (not measured).
    #[arg(long, default_value_t = 100)]
    pub objects: u64,
    #[arg(long, value_enum, default_value = "unsigned")]
    pub payload: PayloadMode,
    /// Random (incompressible) object bytes instead of a fixed pattern.
    #[arg(long)]
    pub random_payload: bool,
    /// Check every GET's bytes (and HEAD's length) against what was PUT.
    #[arg(long)]
    pub verify: bool,
    /// Seed of payloads and key choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The objects exist already (a previous run with the same --prefix, --size, --seed).
    #[arg(long)]
    pub skip_prepare: bool,
    /// Also report this process's CPU (the server's, when it runs on this machine).
    #[arg(long)]
    pub server_pid: Option<u32>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Throughput and p99 latency per second, as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MixedArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 45)]
    pub get_pct: u32,
    #[arg(long, default_value_t = 30)]
    pub head_pct: u32,
    #[arg(long, default_value_t = 15)]
    pub put_pct: u32,
    #[arg(long, default_value_t = 10)]
    pub delete_pct: u32,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Keys per ListObjectsV2 page.
    #[arg(long, default_value_t = 1000)]
    pub max_keys: u32,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MultipartArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value = "8MiB", value_parser = stats::parse_size)]
    pub part_size: u64,
    /// Parts uploaded at once per object (each on its own connection).
    #[arg(long, default_value_t = 4)]
    pub part_concurrency: usize,
}

#[derive(Debug, Clone)]
pub enum Workload {
    /// Not a subcommand: PUT each key once (before get, mixed, list, delete).
    Prepare,
    Put,
    Get,
    Delete,
    Mixed {
        get: u32,
        head: u32,
        put: u32,
        delete: u32,
    },
    List {
        max_keys: u32,
    },
    Multipart {
        part_size: u64,
        part_concurrency: usize,
    },
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Prepare => "prepare",
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Delete => "delete",
            Workload::Mixed { .. } => "mixed",
            Workload::List { .. } => "list",
            Workload::Multipart { .. } => "multipart",
        }
    }
    fn needs_objects(&self) -> bool {
        matches!(self, Workload::Get | Workload::Delete | Workload::Mixed { .. } | Workload::List { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
    Part,
    Multipart,
}
const N_OPS: usize = 7;
const OP_NAMES: [&str; N_OPS] = ["PUT", "GET", "HEAD", "DELETE", "LIST", "PART", "MULTIPART"];

/// One worker's results for one kind of operation.
struct OpStats {
    rec: Recorder,
    codes: BTreeMap<String, u64>,
    /// Keys listed (LIST only).
    items: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats { rec: Recorder::new(), codes: BTreeMap::new(), items: 0 }
    }
    fn merge(&mut self, o: OpStats) {
        self.rec.merge(o.rec);
        for (k, v) in o.codes {
            *self.codes.entry(k).or_default() += v;
        }
        self.items += o.items;
    }
}

#[derive(Default)]
struct Second {
    ops: [u64; N_OPS],
    bytes: [u64; N_OPS],
    hist: [Option<Histogram<u64>>; N_OPS],
}

/// Everything the workers share.
struct Ctx {
    addr: String,
    host: String,
    signer: Signer,
    bucket: String,
    prefix: String,
    payload: PayloadMode,
    content: Content,
    verify: bool,
    concurrency: usize,
    objects: u64,
    seed: u64,
    start: Mutex<Instant>,
    timeline: Mutex<Vec<Second>>,
    live_ops: AtomicU64,
    live_bytes: AtomicU64,
    live_errors: AtomicU64,
    started_ops: AtomicU64,
    stop: AtomicBool,
}

/// A request as the workers describe it; `exec` signs, sends and reads it.
struct Req<'a> {
    method: &'a str,
    key: Option<&'a str>,
    query: &'a [(&'a str, &'a str)],
    body: &'a [u8],
    /// The body is not object data (CompleteMultipartUpload XML): always signed, never chunked.
    control_body: bool,
}

/// A failed request: the S3 error code (or `HTTP nnn` / `net: ...`) and a message.
struct Failure {
    code: String,
    msg: String,
}

fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let s = xml.find(&open)? + open.len();
    let e = xml[s..].find(&close)? + s;
    Some(&xml[s..e])
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

impl Ctx {
    fn key(&self, i: u64) -> String {
        format!("{}{:08}", self.prefix, i)
    }

    fn record(&self, stats: &mut [OpStats], op: Op, t0: Instant, bytes: u64, result: Result<(), Failure>) {
        let lat = t0.elapsed();
        let s = &mut stats[op as usize];
        match result {
            Ok(()) => {
                s.rec.ok(lat, bytes);
                self.live_ops.fetch_add(1, Ordering::Relaxed);
                self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
                let sec = t0.saturating_duration_since(*self.start.lock().unwrap_or_else(|p| p.into_inner())).as_secs();
                let mut tl = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
                while tl.len() <= sec as usize {
                    tl.push(Second::default());
                }
                let b = &mut tl[sec as usize];
                b.ops[op as usize] += 1;
                b.bytes[op as usize] += bytes;
                b.hist[op as usize]
                    .get_or_insert_with(|| {
                        Histogram::new_with_bounds(1, TIMELINE_MAX_US, 2).expect("histogram bounds are valid")
                    })
                    .saturating_record((lat.as_micros() as u64).clamp(1, TIMELINE_MAX_US));
            }
            Err(f) => {
                self.live_errors.fetch_add(1, Ordering::Relaxed);
                *s.codes.entry(f.code.clone()).or_default() += 1;
                s.rec.error(format!("{}: {}", f.code, f.msg));
            }
        }
    }

    /// Sign and send one request on `slot`'s connection (opening one if needed) and read the
    /// response. Statuses of 300 and above come back as a `Failure` carrying the S3 error code.
    async fn exec(&self, slot: &mut Option<Conn>, req: Req<'_>, sink: Sink<'_>) -> Result<Response, Failure> {
        let net = |e: std::io::Error| Failure { code: format!("net:{:?}", e.kind()), msg: e.to_string() };
        if slot.as_ref().is_none_or(|c| !c.reusable) {
            *slot = Some(Conn::connect(&self.addr).await.map_err(net)?);
        }
        let conn = slot.as_mut().expect("connection opened above");
        let path = match req.key {
            Some(k) => format!("/{}/{}", self.bucket, sigv4::uri_encode(k, true)),
            None => format!("/{}", self.bucket),
        };
        let date = sigv4::now_amz_date();
        let chunked = self.payload == PayloadMode::ChunkedTrailer && !req.body.is_empty() && !req.control_body;
        let sha;
        let payload_hash = if req.body.is_empty() {
            sigv4::EMPTY_SHA256
        } else if req.control_body || self.payload == PayloadMode::Signed {
            sha = sigv4::sha256_hex(req.body);
            &sha
        } else if chunked {
            sigv4::STREAMING_UNSIGNED_TRAILER
        } else {
            sigv4::UNSIGNED_PAYLOAD
        };
        let decoded_len = req.body.len().to_string();
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &self.host), ("x-amz-content-sha256", payload_hash), ("x-amz-date", &date)];
        if chunked {
            headers.push(("content-encoding", "aws-chunked"));
            headers.push(("x-amz-decoded-content-length", &decoded_len));
            headers.push(("x-amz-trailer", "x-amz-checksum-crc32c"));
        }
        let auth = self.signer.authorization(req.method, &path, req.query, &headers, payload_hash, &date);
        let mut head = String::with_capacity(512);
        head.push_str(req.method);
        head.push(' ');
        head.push_str(&path);
        for (i, (k, v)) in req.query.iter().enumerate() {
            head.push(if i == 0 { '?' } else { '&' });
            head.push_str(&sigv4::uri_encode(k, false));
            if !v.is_empty() || *k != "uploads" {
                head.push('=');
                head.push_str(&sigv4::uri_encode(v, false));
            }
        }
        head.push_str(" HTTP/1.1\r\n");
        for (k, v) in &headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str("authorization: ");
        head.push_str(&auth);
        head.push_str("\r\n");
        if chunked {
            let trailer = format!(
                "0\r\nx-amz-checksum-crc32c:{}\r\n\r\n",
                payload::base64(&crc32c::crc32c(req.body).to_be_bytes())
            );
            let framing: usize = req.body.chunks(AWS_CHUNK_BYTES).map(|c| format!("{:x}\r\n\r\n", c.len()).len()).sum();
            head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len() + framing + trailer.len()));
            let mut first = true;
            let mut pending = head.into_bytes();
            for c in req.body.chunks(AWS_CHUNK_BYTES) {
                if !first {
                    pending.extend_from_slice(b"\r\n");
                }
                first = false;
                pending.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                if c.len() < AWS_CHUNK_BYTES {
                    pending.extend_from_slice(c);
                } else {
                    conn.write(&pending).await.map_err(net)?;
                    pending.clear();
                    conn.write(c).await.map_err(net)?;
                }
            }
            pending.extend_from_slice(b"\r\n");
            pending.extend_from_slice(trailer.as_bytes());
            conn.write(&pending).await.map_err(net)?;
        } else {
            head.push_str(&format!("content-length: {}\r\n\r\n", req.body.len()));
            conn.send(head.into_bytes(), &[req.body]).await.map_err(net)?;
        }
        let resp = match conn.response(req.method == "HEAD", sink).await {
            Ok(r) => r,
            Err(e) => {
                conn.reusable = false;
                return Err(net(e));
            }
        };
        if resp.status >= 300 {
            let body = String::from_utf8_lossy(&resp.body);
            let code = xml_tag(&body, "Code").map(str::to_string).unwrap_or_else(|| format!("HTTP {}", resp.status));
            let msg = xml_tag(&body, "Message").unwrap_or("").to_string();
            return Err(Failure { code, msg: format!("{} {path}: HTTP {} {msg}", req.method, resp.status) });
        }
        Ok(resp)
    }

    async fn put(&self, slot: &mut Option<Conn>, key: &str) -> Result<u64, Failure> {
        let body = self.content.of(key);
        let req = Req { method: "PUT", key: Some(key), query: &[], body, control_body: false };
        self.exec(slot, req, Sink::Keep).await?;
        Ok(body.len() as u64)
    }

    async fn get(&self, slot: &mut Option<Conn>, key: &str) -> Result<u64, Failure> {
        let want = self.content.of(key);
        let mut mismatch_at: Option<u64> = None;
        let verify = self.verify;
        let mut check = |off: u64, piece: &[u8]| {
            if verify && mismatch_at.is_none() {
                let o = off as usize;
                let exp = want.get(o..o + piece.len());
                if exp != Some(piece) {
                    mismatch_at = Some(off);
                }
            }
        };
        let req = Req { method: "GET", key: Some(key), query: &[], body: &[], control_body: false };
        let resp = self.exec(slot, req, Sink::Stream(&mut check)).await?;
        if verify {
            if let Some(off) = mismatch_at {
                return Err(Failure {
                    code: "VerifyMismatch".into(),
                    msg: format!("GET {key}: bytes differ from offset {off}"),
                });
            }
            if resp.body_len != want.len() as u64 {
                return Err(Failure {
                    code: "VerifyLength".into(),
                    msg: format!("GET {key}: {} bytes, {} were PUT", resp.body_len, want.len()),
                });
            }
        }
        Ok(resp.body_len)
    }

    async fn head(&self, slot: &mut Option<Conn>, key: &str) -> Result<(), Failure> {
        let req = Req { method: "HEAD", key: Some(key), query: &[], body: &[], control_body: false };
        let resp = self.exec(slot, req, Sink::Keep).await?;
        if self.verify {
            let want = self.content.size_of(key).to_string();
            if resp.header("content-length") != Some(want.as_str()) {
                return Err(Failure {
                    code: "VerifyLength".into(),
                    msg: format!(
                        "HEAD {key}: Content-Length {:?}, {want} bytes were PUT",
                        resp.header("content-length")
                    ),
                });
            }
        }
        Ok(())
    }

    async fn delete(&self, slot: &mut Option<Conn>, key: &str) -> Result<(), Failure> {
        let req = Req { method: "DELETE", key: Some(key), query: &[], body: &[], control_body: false };
        self.exec(slot, req, Sink::Keep).await.map(|_| ())
    }

    /// One ListObjectsV2 page: (keys on it, next continuation token if truncated).
    async fn list_page(
        &self,
        slot: &mut Option<Conn>,
        max_keys: u32,
        token: Option<&str>,
    ) -> Result<(u64, Option<String>), Failure> {
        let mk = max_keys.to_string();
        let mut q: Vec<(&str, &str)> = vec![("list-type", "2"), ("max-keys", &mk), ("prefix", &self.prefix)];
        if let Some(t) = token {
            q.push(("continuation-token", t));
        }
        let req = Req { method: "GET", key: None, query: &q, body: &[], control_body: false };
        let resp = self.exec(slot, req, Sink::Keep).await?;
        let body = String::from_utf8_lossy(&resp.body);
        let keys = body.matches("<Key>").count() as u64;
        let truncated = xml_tag(&body, "IsTruncated") == Some("true");
        let next = if truncated {
            Some(xml_unescape(xml_tag(&body, "NextContinuationToken").ok_or_else(|| Failure {
                code: "BadListing".into(),
                msg: "truncated ListObjectsV2 page without NextContinuationToken".into(),
            })?))
        } else {
            None
        };
        Ok((keys, next))
    }

    async fn ensure_bucket(&self) -> Result<(), String> {
        let mut slot = None;
        let req = Req { method: "PUT", key: None, query: &[], body: &[], control_body: false };
        match self.exec(&mut slot, req, Sink::Keep).await {
            Ok(_) => Ok(()),
            Err(f) if f.code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(f) => Err(format!("cannot create bucket {}: {} ({})", self.bucket, f.code, f.msg)),
        }
    }

    fn keep_going(&self, budget: Option<u64>, deadline: Instant) -> bool {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return false;
        }
        budget.is_none_or(|b| self.started_ops.fetch_add(1, Ordering::Relaxed) < b)
    }
}

/// Upload one object in parts, `part_concurrency` at a time.
async fn multipart_object(
    ctx: &Ctx,
    conns: &mut [Option<Conn>],
    stats: &mut [OpStats],
    key: &str,
    part_size: u64,
) -> Result<u64, Failure> {
    let req = Req { method: "POST", key: Some(key), query: &[("uploads", "")], body: &[], control_body: false };
    let resp = ctx.exec(&mut conns[0], req, Sink::Keep).await?;
    let body = String::from_utf8_lossy(&resp.body);
    let upload_id = xml_tag(&body, "UploadId")
        .map(xml_unescape)
        .ok_or_else(|| Failure { code: "BadResponse".into(), msg: "CreateMultipartUpload without UploadId".into() })?;
    let data = ctx.content.of(key);
    let parts: Vec<&[u8]> = data.chunks(part_size.max(1) as usize).collect();
    let mut etags = vec![String::new(); parts.len()];
    let mut n = 0;
    let p = conns.len();
    while n < parts.len() {
        let batch = (parts.len() - n).min(p);
        let futs = conns[..batch].iter_mut().enumerate().map(|(i, slot)| {
            let num = (n + i + 1).to_string();
            let uid = upload_id.clone();
            let body = parts[n + i];
            async move {
                let t0 = Instant::now();
                let q = [("partNumber", num.as_str()), ("uploadId", uid.as_str())];
                let req = Req { method: "PUT", key: Some(key), query: &q, body, control_body: false };
                let r = ctx.exec(slot, req, Sink::Keep).await;
                (t0, body.len() as u64, r.map(|resp| resp.header("etag").unwrap_or("").to_string()))
            }
        });
        for (i, (t0, len, r)) in futures::future::join_all(futs).await.into_iter().enumerate() {
            match r {
                Ok(etag) => {
                    etags[n + i] = etag;
                    ctx.record(stats, Op::Part, t0, len, Ok(()));
                }
                Err(f) => {
                    let code = f.code.clone();
                    ctx.record(stats, Op::Part, t0, len, Err(f));
                    let q = [("uploadId", upload_id.as_str())];
                    let abort = Req { method: "DELETE", key: Some(key), query: &q, body: &[], control_body: false };
                    let _ = ctx.exec(&mut conns[0], abort, Sink::Keep).await;
                    return Err(Failure { code, msg: format!("part {} of {key} failed", n + i + 1) });
                }
            }
        }
        n += batch;
    }
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, e) in etags.iter().enumerate() {
        xml.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>", i + 1));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let q = [("uploadId", upload_id.as_str())];
    let req = Req { method: "POST", key: Some(key), query: &q, body: xml.as_bytes(), control_body: true };
    let resp = ctx.exec(&mut conns[0], req, Sink::Keep).await?;
    // CompleteMultipartUpload may fail inside a 200 response.
    let body = String::from_utf8_lossy(&resp.body);
    if let Some(code) = xml_tag(&body, "Code") {
        return Err(Failure {
            code: code.to_string(),
            msg: format!("CompleteMultipartUpload of {key} failed in a 200"),
        });
    }
    Ok(data.len() as u64)
}

/// One worker: runs operations until the budget or the deadline is spent.
async fn worker(ctx: Arc<Ctx>, w: usize, workload: Workload, budget: Option<u64>, deadline: Instant) -> Vec<OpStats> {
    let mut stats: Vec<OpStats> = (0..N_OPS).map(|_| OpStats::new()).collect();
    let mut rng = SmallRng::seed_from_u64(ctx.seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let owned: Vec<u64> = (w as u64..ctx.objects).step_by(ctx.concurrency).collect();
    if owned.is_empty() {
        return stats;
    }
    let mut slot: Option<Conn> = None;
    let mut cursor = 0usize;
    // mixed: which owned keys exist (all after prepare).
    let mut present: Vec<u64> = owned.clone();
    let mut absent: Vec<u64> = Vec::new();
    let mut pconns: Vec<Option<Conn>> = Vec::new();
    let mut list_token: Option<String> = None;
    let mut list_seen = 0u64;
    while ctx.keep_going(budget, deadline) {
        let t0 = Instant::now();
        match &workload {
            Workload::Prepare => {
                let Some(&i) = owned.get(cursor) else { break };
                cursor += 1;
                let r = ctx.put(&mut slot, &ctx.key(i)).await;
                let n = r.as_ref().map_or(0, |n| *n);
                ctx.record(&mut stats, Op::Put, t0, n, r.map(|_| ()));
            }
            Workload::Put => {
                let key = ctx.key(owned[cursor % owned.len()]);
                cursor += 1;
                let r = ctx.put(&mut slot, &key).await;
                let n = r.as_ref().map_or(0, |n| *n);
                ctx.record(&mut stats, Op::Put, t0, n, r.map(|_| ()));
            }
            Workload::Get => {
                let key = ctx.key(owned[rng.gen_range(0..owned.len())]);
                let r = ctx.get(&mut slot, &key).await;
                let n = r.as_ref().map_or(0, |n| *n);
                ctx.record(&mut stats, Op::Get, t0, n, r.map(|_| ()));
            }
            Workload::Delete => {
                let Some(i) = present.pop() else { break };
                let r = ctx.delete(&mut slot, &ctx.key(i)).await;
                ctx.record(&mut stats, Op::Delete, t0, 0, r);
            }
            Workload::Mixed { get, head, put, delete } => {
                let roll = rng.gen_range(0..100u32);
                let want = if roll < *get {
                    Op::Get
                } else if roll < get + head {
                    Op::Head
                } else if roll < get + head + put {
                    Op::Put
                } else if roll < get + head + put + delete {
                    Op::Delete
                } else {
                    Op::Get
                };
                let op = if present.is_empty() && want != Op::Put { Op::Put } else { want };
                match op {
                    Op::Put => {
                        let key_i = if absent.is_empty() {
                            present[rng.gen_range(0..present.len())]
                        } else {
                            let j = rng.gen_range(0..absent.len());
                            absent.swap_remove(j)
                        };
                        let r = ctx.put(&mut slot, &ctx.key(key_i)).await;
                        if r.is_ok() && !present.contains(&key_i) {
                            present.push(key_i);
                        } else if r.is_err() && !present.contains(&key_i) {
                            absent.push(key_i);
                        }
                        let n = r.as_ref().map_or(0, |n| *n);
                        ctx.record(&mut stats, Op::Put, t0, n, r.map(|_| ()));
                    }
                    Op::Get => {
                        let key = ctx.key(present[rng.gen_range(0..present.len())]);
                        let r = ctx.get(&mut slot, &key).await;
                        let n = r.as_ref().map_or(0, |n| *n);
                        ctx.record(&mut stats, Op::Get, t0, n, r.map(|_| ()));
                    }
                    Op::Head => {
                        let key = ctx.key(present[rng.gen_range(0..present.len())]);
                        let r = ctx.head(&mut slot, &key).await;
                        ctx.record(&mut stats, Op::Head, t0, 0, r);
                    }
                    _ => {
                        let j = rng.gen_range(0..present.len());
                        let key_i = present[j];
                        let r = ctx.delete(&mut slot, &ctx.key(key_i)).await;
                        if r.is_ok() {
                            present.swap_remove(j);
                            absent.push(key_i);
                        }
                        ctx.record(&mut stats, Op::Delete, t0, 0, r);
                    }
                }
            }
            Workload::List { max_keys } => {
                let r = ctx.list_page(&mut slot, *max_keys, list_token.as_deref()).await;
                match r {
                    Ok((keys, next)) => {
                        list_seen += keys;
                        stats[Op::List as usize].items += keys;
                        list_token = next;
                        let mut res = Ok(());
                        if list_token.is_none() {
                            if list_seen != ctx.objects {
                                res = Err(Failure {
                                    code: "ListCountMismatch".into(),
                                    msg: format!("a full listing gave {list_seen} keys, {} were PUT", ctx.objects),
                                });
                            }
                            list_seen = 0;
                        }
                        ctx.record(&mut stats, Op::List, t0, 0, res);
                    }
                    Err(f) => {
                        list_token = None;
                        list_seen = 0;
                        ctx.record(&mut stats, Op::List, t0, 0, Err(f));
                    }
                }
            }
            Workload::Multipart { part_size, part_concurrency } => {
                if pconns.is_empty() {
                    pconns = (0..(*part_concurrency).max(1)).map(|_| None).collect();
                }
                let key = ctx.key(owned[cursor % owned.len()]);
                cursor += 1;
                let r = multipart_object(&ctx, &mut pconns, &mut stats, &key, *part_size).await;
                let r = match r {
                    Ok(n) if ctx.verify => ctx.get(&mut slot, &key).await.map(|_| n),
                    r => r,
                };
                let n = r.as_ref().map_or(0, |n| *n);
                ctx.record(&mut stats, Op::Multipart, t0, n, r.map(|_| ()));
            }
        }
    }
    stats
}

/// Run `workers` workers of `workload` and merge their results.
async fn phase(ctx: &Arc<Ctx>, workload: Workload, budget: Option<u64>, secs: u64) -> Vec<OpStats> {
    ctx.started_ops.store(0, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(if budget.is_some() { 365 * 86_400 } else { secs });
    let handles: Vec<_> = (0..ctx.concurrency)
        .map(|w| tokio::spawn(worker(ctx.clone(), w, workload.clone(), budget, deadline)))
        .collect();
    let mut total: Vec<OpStats> = (0..N_OPS).map(|_| OpStats::new()).collect();
    for h in handles {
        match h.await {
            Ok(s) => {
                for (t, s) in total.iter_mut().zip(s) {
                    t.merge(s);
                }
            }
            Err(e) => total[0].rec.error(format!("worker task failed: {e}")),
        }
    }
    total
}

fn progress(ctx: Arc<Ctx>, label: String) -> tokio::task::JoinHandle<()> {
    use std::io::{IsTerminal, Write};
    tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let t0 = Instant::now();
        let (mut last_ops, mut last_bytes) = (0u64, 0u64);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let ops = ctx.live_ops.load(Ordering::Relaxed);
            let bytes = ctx.live_bytes.load(Ordering::Relaxed);
            let errs = ctx.live_errors.load(Ordering::Relaxed);
            eprint!(
                "\r[{:>4}s] {label}: {:>8} ops/s {:>9.1} MB/s  total {ops} ops, {errs} errors   ",
                t0.elapsed().as_secs(),
                ops - last_ops,
                (bytes - last_bytes) as f64 / 1e6
            );
            let _ = std::io::stderr().flush();
            (last_ops, last_bytes) = (ops, bytes);
        }
    })
}

fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are 12 and 13 after "pid (comm) ".
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

#[derive(Debug, Serialize)]
pub struct S3OpResult {
    #[serde(flatten)]
    pub result: OpResult,
    pub errors_by_code: BTreeMap<String, u64>,
    /// LIST: keys listed per second.
    pub keys_per_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct TimelineRow {
    pub second: usize,
    pub op: &'static str,
    pub ops: u64,
    pub mb_per_s: f64,
    pub p99_us: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: Vec<String>,
    pub workload: &'static str,
    pub endpoint: String,
    pub size: String,
    pub concurrency: usize,
    pub client_threads: usize,
    pub payload: PayloadMode,
    pub random_payload: bool,
    pub verify: bool,
    pub objects: u64,
    pub prepare_secs: f64,
    pub secs: f64,
    pub results: Vec<S3OpResult>,
    /// This process (the load generator), % of one core over the measured phase.
    pub client_cpu_pct: f64,
    /// `--server-pid`'s CPU, % of one core over the measured phase.
    pub server_cpu_pct: Option<f64>,
    pub timeline: Vec<TimelineRow>,
}

fn endpoint_addr(endpoint: &str) -> Result<String, String> {
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
        format!("endpoint {endpoint:?} must start with http:// (TLS is not supported by this load generator)")
    })?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    if hostport.is_empty() {
        return Err(format!("endpoint {endpoint:?} names no host"));
    }
    Ok(if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") })
}

/// Run one workload to the end and return its report (no printing but the progress line).
pub async fn run_workload(c: &Common, workload: Workload) -> Result<Report, String> {
    if c.concurrency == 0 || c.concurrency > MAX_CONCURRENCY {
        return Err(format!("--concurrency must be 1..={MAX_CONCURRENCY}"));
    }
    let addr = endpoint_addr(&c.endpoint)?;
    let host = c.endpoint.trim_start_matches("http://").split('/').next().unwrap_or("").to_string();
    let ctx = Arc::new(Ctx {
        addr,
        host,
        signer: Signer::new(&c.access_key, &c.secret_key, &c.region),
        bucket: c.bucket.clone(),
        prefix: c.prefix.clone(),
        payload: c.payload,
        content: Content::new(c.size, c.random_payload, c.seed),
        verify: c.verify,
        concurrency: c.concurrency,
        objects: c.objects.max(1),
        seed: c.seed,
        start: Mutex::new(Instant::now()),
        timeline: Mutex::new(Vec::new()),
        live_ops: AtomicU64::new(0),
        live_bytes: AtomicU64::new(0),
        live_errors: AtomicU64::new(0),
        started_ops: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    ctx.ensure_bucket().await?;
    let mut prepare_secs = 0.0;
    if workload.needs_objects() && !c.skip_prepare {
        let t = Instant::now();
        let p = if c.quiet { None } else { Some(progress(ctx.clone(), format!("prepare {} objects", ctx.objects))) };
        let s = phase(&ctx, Workload::Prepare, None, 365 * 86_400).await;
        if let Some(p) = p {
            p.abort();
            eprintln!();
        }
        prepare_secs = t.elapsed().as_secs_f64();
        let put = &s[Op::Put as usize];
        if put.rec.errors > 0 || put.rec.ops != ctx.objects {
            return Err(format!(
                "prepare: {} of {} PUTs failed, first: {}",
                put.rec.errors,
                ctx.objects,
                put.rec.first_error.as_deref().unwrap_or("?")
            ));
        }
    }
    ctx.live_ops.store(0, Ordering::Relaxed);
    ctx.live_bytes.store(0, Ordering::Relaxed);
    ctx.live_errors.store(0, Ordering::Relaxed);
    ctx.timeline.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let t = Instant::now();
    *ctx.start.lock().unwrap_or_else(|p| p.into_inner()) = t;
    let cpu0 = stats::process_cpu_secs();
    let srv0 = c.server_pid.and_then(proc_cpu_secs);
    let p = if c.quiet { None } else { Some(progress(ctx.clone(), workload.name().to_string())) };
    let stats = phase(&ctx, workload.clone(), c.ops, c.duration_secs).await;
    let secs = t.elapsed().as_secs_f64();
    let client_cpu = stats::process_cpu_secs() - cpu0;
    let server_cpu_pct = match (srv0, c.server_pid.and_then(proc_cpu_secs)) {
        (Some(a), Some(b)) => Some(100.0 * (b - a) / secs.max(1e-9)),
        _ => None,
    };
    if let Some(p) = p {
        p.abort();
        eprintln!();
    }
    let size_bytes = c.size.mean();
    let mut results = Vec::new();
    for (i, s) in stats.into_iter().enumerate() {
        if s.rec.ops == 0 && s.rec.errors == 0 {
            continue;
        }
        let keys_per_s = (i == Op::List as usize).then(|| s.items as f64 / secs.max(1e-9));
        let bytes =
            if i == Op::List as usize || i == Op::Head as usize || i == Op::Delete as usize { 0 } else { size_bytes };
        let cpu = Cpu { client_secs: client_cpu, process_secs: client_cpu };
        let mut r = OpResult::new(OP_NAMES[i], bytes, c.concurrency, s.rec, secs, cpu);
        r.engine_cpu_pct = server_cpu_pct.unwrap_or(0.0);
        results.push(S3OpResult { result: r, errors_by_code: s.codes, keys_per_s });
    }
    let mut timeline = Vec::new();
    for (sec, b) in ctx.timeline.lock().unwrap_or_else(|p| p.into_inner()).iter().enumerate() {
        for (i, name) in OP_NAMES.iter().enumerate() {
            if b.ops[i] > 0 {
                timeline.push(TimelineRow {
                    second: sec,
                    op: name,
                    ops: b.ops[i],
                    mb_per_s: b.bytes[i] as f64 / 1e6,
                    p99_us: b.hist[i].as_ref().map_or(0, |h| h.value_at_quantile(0.99)),
                });
            }
        }
    }
    Ok(Report {
        command: std::env::args().collect(),
        workload: workload.name(),
        endpoint: c.endpoint.clone(),
        size: c.size.describe(),
        concurrency: c.concurrency,
        client_threads: c.client_threads,
        payload: c.payload,
        random_payload: c.random_payload,
        verify: c.verify,
        objects: ctx.objects,
        prepare_secs,
        secs,
        results,
        client_cpu_pct: 100.0 * client_cpu / secs.max(1e-9),
        server_cpu_pct,
        timeline,
    })
}

fn print_report(r: &Report) {
    println!(
        "{} against {}: size {}, concurrency {}, payload {:?}{}{}, {:.1} s{}",
        r.workload,
        r.endpoint,
        r.size,
        r.concurrency,
        r.payload,
        if r.random_payload { ", random" } else { ", fixed" },
        if r.verify { ", verified" } else { "" },
        r.secs,
        if r.prepare_secs > 0.0 {
            format!(" (after {:.1} s putting {} objects)", r.prepare_secs, r.objects)
        } else {
            String::new()
        }
    );
    let rows: Vec<OpResult> = r.results.iter().map(|x| x.result.clone()).collect();
    stats::print_ops(&rows);
    for x in &r.results {
        if let Some(k) = x.keys_per_s {
            println!("{}: {:.0} keys/s listed", x.result.name, k);
        }
        if !x.errors_by_code.is_empty() {
            let codes: Vec<String> = x.errors_by_code.iter().map(|(c, n)| format!("{c}={n}")).collect();
            println!("{} errors by code: {}", x.result.name, codes.join(", "));
        }
    }
    match r.server_cpu_pct {
        Some(s) => println!("CPU: load generator {:.0}%, server {:.0}% (of one core)", r.client_cpu_pct, s),
        None => {
            println!("CPU: load generator {:.0}% of one core (--server-pid PID adds the server's)", r.client_cpu_pct)
        }
    }
}

/// The `put`/`get`/... subcommands: run, print, write JSON and SVG.
pub fn main(c: Common, workload: Workload) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(c.client_threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    let report = rt.block_on(run_workload(&c, workload))?;
    print_report(&report);
    if let Some(p) = &c.json {
        stats::write_json(p, &report).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &c.plot {
        std::fs::write(p, crate::plot::svg(&report)).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}
