//! The admin side of the server: `GET /_tessera/status` (the engine's health as JSON) and
//! `POST /_tessera/device/replace?device=N&path=P[&force=true]` (replace a failed device with a
//! new, empty one on the running node), both signed by the root user like any S3 request, and
//! the `tessera status` / `tessera device replace` clients that call them.
//!
//! The path cannot shadow a bucket: bucket names never contain `_`. It is only recognised on
//! path-style requests; on a virtual-hosted-style host (`bucket.<domain>`) the same path is an
//! ordinary object key and goes to the S3 router.

use engine::HealthStatus;
use s3::auth::sigv4::{self, SignedRequest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

/// The admin status path.
pub const STATUS_PATH: &str = "/_tessera/status";
/// The admin device replacement path (POST).
pub const REPLACE_PATH: &str = "/_tessera/device/replace";

/// Whether a request is the admin status call (path-style only; see the module comment).
pub fn is_status_request(method: &http::Method, path: &str, headers: &http::HeaderMap, domain: Option<&str>) -> bool {
    is_admin(method, path, headers, domain, &http::Method::GET, STATUS_PATH)
}

/// Whether a request is the admin device replacement (path-style only).
pub fn is_replace_request(method: &http::Method, path: &str, headers: &http::HeaderMap, domain: Option<&str>) -> bool {
    is_admin(method, path, headers, domain, &http::Method::POST, REPLACE_PATH)
}

fn is_admin(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    domain: Option<&str>,
    want_method: &http::Method,
    want_path: &str,
) -> bool {
    if path != want_path || method != want_method {
        return false;
    }
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
    !is_virtual_host(host, domain)
}

/// A device named as `N` or `devN` (as `tessera status` shows it).
pub fn parse_device(s: &str) -> Result<u16, String> {
    let n = s.strip_prefix("dev").unwrap_or(s);
    n.parse::<u16>().map_err(|_| format!("device {s:?}: give its number as `tessera status` shows it (4 or dev4)"))
}

/// The replacement's report as JSON.
pub fn replace_json(r: &engine::ReplaceReport) -> String {
    format!(
        "{{\"device\":{},\"zone\":{},\"old_path\":{},\"new_path\":{},\"seg_base\":{},\"queued\":{},\"direct_io\":{}}}",
        r.device,
        json_str(&r.zone),
        r.old_path.as_ref().map(|p| json_str(&p.to_string_lossy())).unwrap_or_else(|| "null".into()),
        json_str(&r.new_path.to_string_lossy()),
        r.seg_base,
        r.queued,
        r.direct_io
    )
}

fn is_virtual_host(host: Option<&str>, domain: Option<&str>) -> bool {
    let (Some(host), Some(domain)) = (host, domain) else { return false };
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let (host, domain) = (host.to_ascii_lowercase(), domain.to_ascii_lowercase());
    host.strip_suffix(domain.as_str()).and_then(|p| p.strip_suffix('.')).is_some_and(|p| !p.is_empty())
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The status as JSON (stable field names; one object).
pub fn status_json(st: &HealthStatus) -> String {
    let devices: Vec<String> = st
        .devices
        .iter()
        .map(|d| {
            format!(
                "{{\"index\":{},\"zone\":{},\"path\":{},\"healthy\":{},\"io_errors\":{}}}",
                d.index,
                json_str(&d.zone),
                d.path.as_ref().map(|p| json_str(&p.to_string_lossy())).unwrap_or_else(|| "null".into()),
                d.healthy,
                d.io_errors
            )
        })
        .collect();
    format!(
        "{{\"devices\":[{}],\"objects_below_redundancy\":{},\"repairs_queued\":{},\"repairs_waiting\":{},\
         \"repaired_parts\":{},\"repaired_stripes\":{},\"repair_failures\":{},\"scrubbed_bytes\":{},\"scrub_errors\":{},\
         \"scrub_passes\":{},\"scrub_period_secs\":{},\"io_shares\":{{\"repair\":{},\"scrub\":{},\"compaction\":{}}}}}",
        devices.join(","),
        st.objects_below_redundancy,
        st.repairs_queued,
        st.repairs_waiting,
        st.repaired_parts,
        st.repaired_stripes,
        st.repair_failures,
        st.scrubbed_bytes,
        st.scrub_errors,
        st.scrub_passes,
        st.scrub_period_secs,
        st.io_shares.repair_percent,
        st.io_shares.scrub_percent,
        st.io_shares.compaction_percent
    )
}

// ------------------------------------------------------------------ a minimal JSON reader

/// A parsed JSON value (enough for reading `status_json`'s output back).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let b = s.as_bytes();
        let mut i = 0;
        let v = parse_value(b, &mut i)?;
        skip_ws(b, &mut i);
        if i != b.len() {
            return Err(format!("trailing characters at {i}"));
        }
        Ok(v)
    }
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn u64(&self, name: &str) -> u64 {
        match self.get(name) {
            Some(Json::Num(n)) => *n as u64,
            _ => 0,
        }
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            Some(Json::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn arr(&self, name: &str) -> &[Json] {
        match self.get(name) {
            Some(Json::Arr(a)) => a,
            _ => &[],
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn parse_value(b: &[u8], i: &mut usize) -> Result<Json, String> {
    skip_ws(b, i);
    let Some(&c) = b.get(*i) else { return Err("unexpected end of JSON".into()) };
    match c {
        b'{' => {
            *i += 1;
            let mut kv = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return Ok(Json::Obj(kv));
            }
            loop {
                skip_ws(b, i);
                let k = parse_string(b, i)?;
                skip_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("expected ':' at {i}"));
                }
                *i += 1;
                kv.push((k, parse_value(b, i)?));
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return Ok(Json::Obj(kv));
                    }
                    _ => return Err(format!("expected ',' or '}}' at {i}")),
                }
            }
        }
        b'[' => {
            *i += 1;
            let mut v = Vec::new();
            skip_ws(b, i);
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return Ok(Json::Arr(v));
            }
            loop {
                v.push(parse_value(b, i)?);
                skip_ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return Ok(Json::Arr(v));
                    }
                    _ => return Err(format!("expected ',' or ']' at {i}")),
                }
            }
        }
        b'"' => parse_string(b, i).map(Json::Str),
        b't' if b[*i..].starts_with(b"true") => {
            *i += 4;
            Ok(Json::Bool(true))
        }
        b'f' if b[*i..].starts_with(b"false") => {
            *i += 5;
            Ok(Json::Bool(false))
        }
        b'n' if b[*i..].starts_with(b"null") => {
            *i += 4;
            Ok(Json::Null)
        }
        _ => {
            let start = *i;
            while *i < b.len() && matches!(b[*i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                *i += 1;
            }
            std::str::from_utf8(&b[start..*i])
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .map(Json::Num)
                .ok_or_else(|| format!("bad JSON value at {start}"))
        }
    }
}

fn parse_string(b: &[u8], i: &mut usize) -> Result<String, String> {
    if b.get(*i) != Some(&b'"') {
        return Err(format!("expected a string at {i}"));
    }
    *i += 1;
    let mut out: Vec<u8> = Vec::new();
    while let Some(&c) = b.get(*i) {
        *i += 1;
        match c {
            b'"' => return String::from_utf8(out).map_err(|_| "string is not UTF-8".into()),
            b'\\' => {
                let e = *b.get(*i).ok_or("unterminated escape")?;
                *i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = b.get(*i..*i + 4).ok_or("short \\u escape")?;
                        *i += 4;
                        let cp = u32::from_str_radix(std::str::from_utf8(hex).map_err(|_| "bad \\u")?, 16)
                            .map_err(|_| "bad \\u escape")?;
                        let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

// ------------------------------------------------------------------ the client

/// Root credentials from the environment: `TESSERA_ACCESS_KEY`/`TESSERA_SECRET_KEY`, else
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
pub fn credentials_from_env() -> Result<(String, String), String> {
    let get = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let (Some(a), Some(s)) = (get("TESSERA_ACCESS_KEY"), get("TESSERA_SECRET_KEY")) {
        return Ok((a, s));
    }
    if let (Some(a), Some(s)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        return Ok((a, s));
    }
    Err("no credentials: set TESSERA_ACCESS_KEY and TESSERA_SECRET_KEY (or AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY) to the root user's keys"
        .into())
}

/// `http://host:port[/]` → `host:port`.
fn endpoint_addr(endpoint: &str) -> Result<String, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("endpoint {endpoint:?}: only http://HOST:PORT is supported"))?;
    let addr = rest.split('/').next().unwrap_or("");
    if addr.is_empty() {
        return Err(format!("endpoint {endpoint:?} has no host"));
    }
    Ok(if addr.contains(':') { addr.to_string() } else { format!("{addr}:80") })
}

/// A signed `GET /_tessera/status` over a plain blocking HTTP/1.1 connection.
/// Returns the HTTP status and body.
pub fn get_status_raw(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> Result<(u16, String), String> {
    signed_call(endpoint, &http::Method::GET, STATUS_PATH, &[], (access_key, secret_key, region))
}

/// A signed admin request with an empty body and query `params` over a plain blocking HTTP/1.1
/// connection; returns the HTTP status and body.
pub fn signed_call(
    endpoint: &str,
    method: &http::Method,
    path: &str,
    params: &[(&str, &str)],
    (access_key, secret_key, region): (&str, &str, &str),
) -> Result<(u16, String), String> {
    let addr = endpoint_addr(endpoint)?;
    let date = s3::http_util::format_amz_date(SystemTime::now());
    let day = &date[..8];
    let payload = sigv4::sha256_hex(b"");
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{}={}", sigv4::uri_encode(k), sigv4::uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut hm = http::HeaderMap::new();
    let hv = |s: &str| http::HeaderValue::from_str(s).map_err(|e| format!("header value {s:?}: {e}"));
    hm.insert(http::header::HOST, hv(&addr)?);
    hm.insert("x-amz-date", hv(&date)?);
    hm.insert("x-amz-content-sha256", hv(&payload)?);
    let signed: Vec<String> = vec!["host".into(), "x-amz-content-sha256".into(), "x-amz-date".into()];
    let q = (!query.is_empty()).then_some(query.as_str());
    let sr = SignedRequest { method, path, query: q, headers: &hm };
    let creq = sigv4::canonical_request(&sr, &signed, &payload).map_err(|e| e.to_string())?;
    let scope = format!("{day}/{region}/s3/aws4_request");
    let sts = sigv4::string_to_sign(&date, &scope, &creq);
    let sig = sigv4::sign(&sigv4::signing_key(secret_key, day, region, "s3"), &sts);
    let auth =
        format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={},Signature={sig}", signed.join(";"));
    let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nx-amz-date: {date}\r\nx-amz-content-sha256: {payload}\r\n\
         authorization: {auth}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    s.write_all(req.as_bytes()).map_err(|e| format!("send to {addr}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read from {addr}: {e}"))?;
    parse_http_response(&buf)
}

fn parse_http_response(buf: &[u8]) -> Result<(u16, String), String> {
    let i = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or("malformed HTTP response (no header end)")?;
    let head = String::from_utf8_lossy(&buf[..i]);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("malformed HTTP status line")?;
    let mut chunked = false;
    let mut len = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                len = v.parse::<usize>().ok();
            }
        }
    }
    let mut body = &buf[i + 4..];
    let body = if chunked {
        let mut out = Vec::new();
        while let Some(j) = body.windows(2).position(|w| w == b"\r\n") {
            let size = String::from_utf8_lossy(&body[..j]);
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| "malformed chunk size")?;
            if n == 0 || body.len() < j + 2 + n {
                break;
            }
            out.extend_from_slice(&body[j + 2..j + 2 + n]);
            body = &body[(j + 4 + n).min(body.len())..];
        }
        out
    } else {
        body[..len.unwrap_or(body.len()).min(body.len())].to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Fetch and parse the status; any non-200 answer is an error carrying the S3 error text.
pub fn get_status(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> Result<Json, String> {
    let (status, body) = get_status_raw(endpoint, access_key, secret_key, region)?;
    json_answer(endpoint, STATUS_PATH, status, &body)
}

fn json_answer(endpoint: &str, path: &str, status: u16, body: &str) -> Result<Json, String> {
    if status != 200 {
        let code = body.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("");
        let msg = body.split("<Message>").nth(1).and_then(|r| r.split("</Message>").next()).unwrap_or("");
        let msg = msg
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        return Err(format!("{endpoint}{path}: HTTP {status} {code} {msg}").trim_end().to_string());
    }
    Json::parse(body).map_err(|e| format!("bad JSON from {path} ({e}): {body}"))
}

/// Ask the server to replace device `device` with the empty device at `path` (absolute on the
/// server's machine). Returns the server's report.
pub fn replace_device(
    endpoint: &str,
    creds: (&str, &str, &str),
    device: u16,
    path: &str,
    force: bool,
) -> Result<Json, String> {
    let dev = device.to_string();
    let mut params = vec![("device", dev.as_str()), ("path", path)];
    if force {
        params.push(("force", "true"));
    }
    let (status, body) = signed_call(endpoint, &http::Method::POST, REPLACE_PATH, &params, creds)?;
    json_answer(endpoint, REPLACE_PATH, status, &body)
}

/// Options of `tessera device replace`.
pub struct ReplaceCli {
    pub endpoint: String,
    pub region: String,
    pub device: String,
    pub path: std::path::PathBuf,
    pub force: bool,
    /// Wait until the node is fully redundant again, printing progress; 0 = do not wait.
    pub wait_secs: u64,
}

/// `tessera device replace`: ask, print the report, then (with `--wait`) follow the rebuild.
pub fn run_replace_cli(o: &ReplaceCli) -> Result<(), String> {
    let (ak, sk) = credentials_from_env()?;
    let device = parse_device(&o.device)?;
    // The server resolves the path on its own machine: send it absolute.
    let path = if o.path.is_absolute() {
        o.path.clone()
    } else {
        std::env::current_dir().map_err(|e| format!("current directory: {e}"))?.join(&o.path)
    };
    let path_s = path.to_str().ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
    let r = replace_device(&o.endpoint, (&ak, &sk, &o.region), device, path_s, o.force)?;
    let old = r.str("old_path").unwrap_or("-");
    let new = r.str("new_path").unwrap_or(path_s);
    println!(
        "device dev{} (zone {}) replaced: {old} -> {new}; {} object(s) queued for rebuild",
        r.u64("device"),
        r.str("zone").unwrap_or("?"),
        r.u64("queued")
    );
    if old != new {
        println!(
            "note: start the server with --device {}={new} instead of {old} from now on (its superblock names its slot)",
            r.str("zone").unwrap_or("ZONE")
        );
    }
    if o.wait_secs == 0 {
        println!("follow the rebuild with `tessera status` (objects below redundancy falls to 0)");
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let mut last = u64::MAX;
    loop {
        let st = get_status(&o.endpoint, &ak, &sk, &o.region)?;
        let (below, queued, waiting) =
            (st.u64("objects_below_redundancy"), st.u64("repairs_queued"), st.u64("repairs_waiting"));
        if below != last {
            println!("rebuild: {below} object(s) below redundancy, {queued} queued, {waiting} waiting for room");
            last = below;
        }
        if below == 0 && queued == 0 {
            println!("fully redundant after {:.1} s", t0.elapsed().as_secs_f64());
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(o.wait_secs) {
            return Err(format!(
                "still {below} object(s) below redundancy after {} s (the rebuild goes on; follow it with `tessera status`)",
                o.wait_secs
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The status as a readable table.
pub fn render_status(st: &Json) -> String {
    let devices = st.arr("devices");
    let rows: Vec<[String; 5]> = devices
        .iter()
        .map(|d| {
            [
                format!("dev{}", d.u64("index")),
                d.str("zone").unwrap_or("").to_string(),
                match d.bool("healthy") {
                    Some(true) => "healthy".into(),
                    Some(false) => "FAILED".into(),
                    None => "?".into(),
                },
                d.u64("io_errors").to_string(),
                d.str("path").unwrap_or("-").to_string(),
            ]
        })
        .collect();
    let header = ["DEVICE", "ZONE", "HEALTH", "IO ERRORS", "PATH"];
    let mut w = header.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |c: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    let mut out = line(header);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    let failed = devices.iter().filter(|d| d.bool("healthy") == Some(false)).count();
    let below = st.u64("objects_below_redundancy");
    let queued = st.u64("repairs_queued");
    let waiting = st.u64("repairs_waiting");
    out.push('\n');
    out.push_str(&format!("Devices:                    {} healthy, {} failed\n", devices.len() - failed, failed));
    out.push_str(&format!(
        "Objects below redundancy:   {below}{}\n",
        if below == 0 { " (fully redundant)" } else { "" }
    ));
    out.push_str(&format!(
        "Rebuild:                    {queued} queued, {waiting} waiting for room, {} parts / {} stripes repaired, {} failures{}\n",
        st.u64("repaired_parts"),
        st.u64("repaired_stripes"),
        st.u64("repair_failures"),
        if queued == 0 && below == 0 {
            " (idle)"
        } else if queued == 0 {
            " (waiting: no zone-safe room to rebuild)"
        } else {
            " (in progress)"
        }
    ));
    out.push_str(&format!(
        "Scrub:                      {} scrubbed, {} errors, {} complete passes\n",
        human_bytes(st.u64("scrubbed_bytes")),
        st.u64("scrub_errors"),
        st.u64("scrub_passes")
    ));
    if let Some(shares) = st.get("io_shares") {
        out.push_str(&format!(
            "I/O shares while busy:      repair {} %, scrub {} %, compaction {} % (scrub period {} h)\n",
            shares.u64("repair"),
            shares.u64("scrub"),
            shares.u64("compaction"),
            st.u64("scrub_period_secs") / 3600
        ));
    }
    out
}

/// `tessera status`: fetch, print; Err on any failure.
pub fn run_status_cli(endpoint: &str, region: &str, json: bool) -> Result<(), String> {
    let (ak, sk) = credentials_from_env()?;
    if json {
        let (status, body) = get_status_raw(endpoint, &ak, &sk, region)?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        println!("{body}");
        return Ok(());
    }
    let st = get_status(endpoint, &ak, &sk, region)?;
    print!("{}", render_status(&st));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::DeviceHealth;

    fn sample() -> HealthStatus {
        HealthStatus {
            devices: vec![
                DeviceHealth {
                    index: 0,
                    zone: "z1".into(),
                    path: Some("/d/\"0\"".into()),
                    healthy: true,
                    io_errors: 0,
                },
                DeviceHealth { index: 1, zone: "z1".into(), path: None, healthy: false, io_errors: 7 },
            ],
            objects_below_redundancy: 3,
            repairs_queued: 2,
            repairs_waiting: 1,
            repaired_parts: 5,
            repaired_stripes: 9,
            repair_failures: 0,
            scrubbed_bytes: 3 << 20,
            scrub_errors: 1,
            scrub_passes: 4,
            io_shares: engine::IoShares { repair_percent: 11, scrub_percent: 3, compaction_percent: 17 },
            scrub_period_secs: 48 * 3600,
        }
    }

    #[test]
    fn status_json_round_trips_through_the_reader() {
        let j = Json::parse(&status_json(&sample())).unwrap();
        let d = j.arr("devices");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].str("path"), Some("/d/\"0\""));
        assert_eq!(d[1].get("path"), Some(&Json::Null));
        assert_eq!(d[1].bool("healthy"), Some(false));
        assert_eq!(d[1].u64("io_errors"), 7);
        assert_eq!(j.u64("objects_below_redundancy"), 3);
        assert_eq!(j.u64("repairs_waiting"), 1);
        assert_eq!(j.u64("scrubbed_bytes"), 3 << 20);
        assert_eq!(j.u64("scrub_period_secs"), 48 * 3600);
        let shares = j.get("io_shares").expect("io_shares");
        assert_eq!((shares.u64("repair"), shares.u64("scrub"), shares.u64("compaction")), (11, 3, 17));
        let t = render_status(&j);
        assert!(t.contains("FAILED") && t.contains("1 healthy, 1 failed") && t.contains("3.0 MiB"), "{t}");
        assert!(t.contains("repair 11 %, scrub 3 %, compaction 17 % (scrub period 48 h)"), "{t}");
    }

    #[test]
    fn the_status_path_is_not_taken_from_a_virtual_hosted_bucket() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, "b1.s3.local:9000".parse().unwrap());
        assert!(!is_status_request(&http::Method::GET, STATUS_PATH, &h, Some("s3.local")));
        h.insert(http::header::HOST, "s3.local:9000".parse().unwrap());
        assert!(is_status_request(&http::Method::GET, STATUS_PATH, &h, Some("s3.local")));
        h.insert(http::header::HOST, "127.0.0.1:9000".parse().unwrap());
        assert!(is_status_request(&http::Method::GET, STATUS_PATH, &h, None));
        assert!(!is_status_request(&http::Method::PUT, STATUS_PATH, &h, None));
        assert!(!is_status_request(&http::Method::GET, "/_tessera/status/x", &h, None));
    }
}
