//! The admin client: `tessera status` and `tessera device replace`, which call a running
//! server's admin endpoints (see [`crate::admin`]) over HTTP/1.1, signed with SigV4 by the
//! root user exactly as an S3 client would sign (the signer is the `s3` crate's).

use crate::admin::{ReplaceReport, StatusReport, REPLACE_PATH, STATUS_PATH};
use engine::util::human_bytes;
use s3::auth::sigv4::{self, SignedRequest};
use std::time::{Duration, SystemTime};

/// How long an admin call may take to connect.
const CONNECT_TIMEOUT_SECS: u64 = 10;
/// How long an admin call waits for its answer: a replacement formats the new device and
/// takes the old one out of service on every core before it answers.
const ANSWER_TIMEOUT_SECS: u64 = 120;

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

/// `http://host[:port][/]` → `host[:port]`, the authority the request is sent to and signed for.
fn endpoint_authority(endpoint: &str) -> Result<String, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("endpoint {endpoint:?}: only http://HOST:PORT is supported"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("endpoint {endpoint:?} has no host"));
    }
    Ok(authority.to_string())
}

/// The agent for admin calls: answers of any status come back as answers (their S3 error
/// text is what the operator needs), no redirect is followed (a signed admin request goes to
/// the endpoint named and nowhere else), and no proxy from the environment is used (the
/// endpoint is a node the operator reaches directly, usually on loopback).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(CONNECT_TIMEOUT_SECS)))
        .timeout_recv_response(Some(Duration::from_secs(ANSWER_TIMEOUT_SECS)))
        .build()
        .into()
}

/// A signed admin request with an empty body and query `params`; returns the HTTP status
/// and body.
pub fn signed_call(
    endpoint: &str,
    method: &http::Method,
    path: &str,
    params: &[(&str, &str)],
    creds: (&str, &str, &str),
) -> Result<(u16, String), String> {
    signed_call_with_body(endpoint, method, path, params, Vec::new(), creds)
}

/// A signed admin request with `body` (its SHA-256 signed too) and query `params`; returns
/// the HTTP status and body.
pub fn signed_call_with_body(
    endpoint: &str,
    method: &http::Method,
    path: &str,
    params: &[(&str, &str)],
    body: Vec<u8>,
    (access_key, secret_key, region): (&str, &str, &str),
) -> Result<(u16, String), String> {
    let authority = endpoint_authority(endpoint)?;
    let date = s3::http_util::format_amz_date(SystemTime::now());
    let day = &date[..8];
    let payload = sigv4::sha256_hex(&body);
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{}={}", sigv4::uri_encode(k), sigv4::uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = http::HeaderMap::new();
    let hv = |s: &str| http::HeaderValue::from_str(s).map_err(|e| format!("header value {s:?}: {e}"));
    headers.insert(http::header::HOST, hv(&authority)?);
    headers.insert("x-amz-date", hv(&date)?);
    headers.insert("x-amz-content-sha256", hv(&payload)?);
    let signed: Vec<String> = vec!["host".into(), "x-amz-content-sha256".into(), "x-amz-date".into()];
    let q = (!query.is_empty()).then_some(query.as_str());
    let sr = SignedRequest { method, path, query: q, headers: &headers };
    let creq = sigv4::canonical_request(&sr, &signed, &payload).map_err(|e| e.to_string())?;
    let scope = format!("{day}/{region}/s3/aws4_request");
    let sts = sigv4::string_to_sign(&date, &scope, &creq);
    let sig = sigv4::sign(&sigv4::signing_key(secret_key, day, region, "s3"), &sts);
    let auth =
        format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={},Signature={sig}", signed.join(";"));
    headers.insert(http::header::AUTHORIZATION, hv(&auth)?);

    let url = if query.is_empty() {
        format!("http://{authority}{path}")
    } else {
        format!("http://{authority}{path}?{query}")
    };
    let mut req = http::Request::builder().method(method.clone()).uri(&url);
    // The Host header sent is the one signed (ureq keeps a Host it is given).
    for (name, value) in &headers {
        req = req.header(name, value);
    }
    let req = req.body(body).map_err(|e| format!("{method} {url}: {e}"))?;
    let mut resp = agent().run(req).map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().map_err(|e| format!("read the answer to {method} {url}: {e}"))?;
    Ok((status, body))
}

/// A signed `GET /_tessera/status`; returns the HTTP status and body.
pub fn get_status_raw(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> Result<(u16, String), String> {
    signed_call(endpoint, &http::Method::GET, STATUS_PATH, &[], (access_key, secret_key, region))
}

/// Fetch and parse the status; any non-200 answer is an error carrying the S3 error text.
pub fn get_status(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> Result<StatusReport, String> {
    let (status, body) = get_status_raw(endpoint, access_key, secret_key, region)?;
    json_answer(endpoint, STATUS_PATH, status, &body)
}

/// A 200 answer parsed as `T`; any other answer is an error naming the S3 error code and message.
pub fn json_answer<T: serde::de::DeserializeOwned>(
    endpoint: &str,
    path: &str,
    status: u16,
    body: &str,
) -> Result<T, String> {
    if status != 200 {
        return Err(error_text(endpoint, path, status, body));
    }
    serde_json::from_str(body).map_err(|e| format!("bad JSON from {path} ({e}): {body}"))
}

/// A refusal as the operator reads it: the endpoint and path, the HTTP status, the S3 error
/// code and its message.
pub fn error_text(endpoint: &str, path: &str, status: u16, body: &str) -> String {
    let code = body.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("");
    let msg = body.split("<Message>").nth(1).and_then(|r| r.split("</Message>").next()).unwrap_or("");
    let msg = msg
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    format!("{endpoint}{path}: HTTP {status} {code} {msg}").trim_end().to_string()
}

/// Ask the server to replace device `device` with the empty device at `path` (absolute on the
/// server's machine). Returns the server's report.
pub fn replace_device(
    endpoint: &str,
    creds: (&str, &str, &str),
    device: u16,
    path: &str,
    force: bool,
) -> Result<ReplaceReport, String> {
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
    let device = crate::admin::parse_device(&o.device)?;
    // The server resolves the path on its own machine: send it absolute.
    let path = if o.path.is_absolute() {
        o.path.clone()
    } else {
        std::env::current_dir().map_err(|e| format!("current directory: {e}"))?.join(&o.path)
    };
    let path_s = path.to_str().ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
    let r = replace_device(&o.endpoint, (&ak, &sk, &o.region), device, path_s, o.force)?;
    let old = r.old_path.as_deref().unwrap_or("-");
    let new = r.new_path.as_str();
    println!(
        "device dev{} (zone {}) replaced: {old} -> {new}; {} object(s) queued for rebuild",
        r.device, r.zone, r.queued
    );
    if old != new {
        println!(
            "note: start the server with --device {}={new} instead of {old} from now on (its superblock names its slot)",
            r.zone
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
        let (below, queued, waiting) = (st.objects_below_redundancy, st.repairs_queued, st.repairs_waiting);
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

/// The status as a readable table.
pub fn render_status(st: &StatusReport) -> String {
    let rows: Vec<[String; 5]> = st
        .devices
        .iter()
        .map(|d| {
            [
                format!("dev{}", d.index),
                d.zone.clone(),
                if d.healthy { "healthy".into() } else { "FAILED".into() },
                d.io_errors.to_string(),
                d.path.clone().unwrap_or_else(|| "-".into()),
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
    let failed = st.devices.iter().filter(|d| !d.healthy).count();
    let (below, queued, waiting) = (st.objects_below_redundancy, st.repairs_queued, st.repairs_waiting);
    out.push('\n');
    out.push_str(&format!("Devices:                    {} healthy, {} failed\n", st.devices.len() - failed, failed));
    out.push_str(&format!(
        "Objects below redundancy:   {below}{}\n",
        if below == 0 { " (fully redundant)" } else { "" }
    ));
    out.push_str(&format!(
        "Rebuild:                    {queued} queued, {waiting} waiting for room, {} parts / {} stripes repaired, {} failures{}\n",
        st.repaired_parts,
        st.repaired_stripes,
        st.repair_failures,
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
        human_bytes(st.scrubbed_bytes),
        st.scrub_errors,
        st.scrub_passes
    ));
    out.push_str(&format!(
        "I/O shares while busy:      repair {} %, scrub {} %, compaction {} % (scrub period {} h)\n",
        st.io_shares.repair,
        st.io_shares.scrub,
        st.io_shares.compaction,
        st.scrub_period_secs / 3600
    ));
    out
}

/// `tessera status`: fetch, print; Err on any failure.
/// The exit status of `tessera status` when the node answered but is not fully healthy (1 is
/// for a status that could not be had at all).
pub const EXIT_DEGRADED: i32 = 2;

/// Why a node is not fully healthy, if it is not: a device out of service, objects below full
/// redundancy, or repairs waiting for room.
pub fn degraded(st: &StatusReport) -> Option<String> {
    let mut why = Vec::new();
    let failed: Vec<String> = st.devices.iter().filter(|d| !d.healthy).map(|d| format!("dev{}", d.index)).collect();
    if !failed.is_empty() {
        why.push(format!("device(s) out of service: {}", failed.join(", ")));
    }
    if st.objects_below_redundancy > 0 {
        why.push(format!("{} object(s) below full redundancy", st.objects_below_redundancy));
    }
    if st.repairs_waiting > 0 {
        why.push(format!("{} repair(s) waiting for room", st.repairs_waiting));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// `tessera status`: print the status (a table, or the JSON) and return the exit status: 0 when
/// fully healthy, [`EXIT_DEGRADED`] when not (the reason on stderr).
pub fn run_status_cli(endpoint: &str, region: &str, json: bool) -> Result<i32, String> {
    let (ak, sk) = credentials_from_env()?;
    let st = if json {
        let (status, body) = get_status_raw(endpoint, &ak, &sk, region)?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        println!("{body}");
        serde_json::from_str::<StatusReport>(&body).map_err(|e| format!("the status JSON does not parse: {e}"))?
    } else {
        let st = get_status(endpoint, &ak, &sk, region)?;
        print!("{}", render_status(&st));
        st
    };
    Ok(match degraded(&st) {
        Some(why) => {
            eprintln!("tessera status: degraded: {why}");
            EXIT_DEGRADED
        }
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status as a server sends it: one healthy device and one failed device with no path.
    const STATUS: &str =
        "{\"devices\":[{\"index\":0,\"zone\":\"z1\",\"path\":\"/d/\\\"0\\\"\",\"healthy\":true,\"io_errors\":0},\
         {\"index\":1,\"zone\":\"z1\",\"path\":null,\"healthy\":false,\"io_errors\":7}],\
         \"objects_below_redundancy\":3,\"repairs_queued\":2,\"repairs_waiting\":1,\"repaired_parts\":5,\
         \"repaired_stripes\":9,\"repair_failures\":0,\"scrubbed_bytes\":3145728,\"scrub_errors\":1,\
         \"scrub_passes\":4,\"scrub_period_secs\":172800,\"io_shares\":{\"repair\":11,\"scrub\":3,\"compaction\":17}}";

    #[test]
    fn a_failed_device_or_missing_redundancy_is_degraded_and_named() {
        let st: StatusReport = serde_json::from_str(STATUS).expect("parses");
        let why = degraded(&st).expect("degraded");
        assert!(why.contains("dev1") && !why.contains("dev0"), "{why}");
        assert!(why.contains("3 object(s) below full redundancy") && why.contains("1 repair(s) waiting"), "{why}");
        let mut ok = st.clone();
        ok.devices.iter_mut().for_each(|d| d.healthy = true);
        (ok.objects_below_redundancy, ok.repairs_waiting) = (0, 0);
        assert_eq!(degraded(&ok), None);
    }

    #[test]
    fn the_status_table_shows_devices_redundancy_and_shares() {
        let st: StatusReport = json_answer("http://x", STATUS_PATH, 200, STATUS).expect("parses");
        let t = render_status(&st);
        assert!(t.contains("FAILED") && t.contains("1 healthy, 1 failed") && t.contains("3 MiB scrubbed"), "{t}");
        assert!(t.contains("repair 11 %, scrub 3 %, compaction 17 % (scrub period 48 h)"), "{t}");
        assert!(t.contains("dev1    z1    FAILED           7  -\n"), "{t}");
    }

    #[test]
    fn an_error_answer_names_the_s3_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>The request signature we calculated does not match &quot;x&quot;</Message></Error>";
        let e = json_answer::<StatusReport>("http://x", STATUS_PATH, 403, body).unwrap_err();
        assert_eq!(
            e,
            "http://x/_tessera/status: HTTP 403 SignatureDoesNotMatch The request signature we calculated does not match \"x\""
        );
        let e = json_answer::<StatusReport>("http://x", STATUS_PATH, 200, "{\"devices\":[]}").unwrap_err();
        assert!(e.contains("bad JSON") && e.contains("missing field"), "{e}");
    }

    #[test]
    fn only_plain_http_endpoints_are_accepted() {
        assert_eq!(endpoint_authority("http://127.0.0.1:9000/").as_deref(), Ok("127.0.0.1:9000"));
        assert_eq!(endpoint_authority("http://node7").as_deref(), Ok("node7"));
        assert!(endpoint_authority("https://node7:9000").is_err());
        assert!(endpoint_authority("http:///x").is_err());
    }
}
