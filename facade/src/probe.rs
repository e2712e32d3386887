//! The operator's unauthenticated endpoints: `GET /health/live`, `GET /health/ready` and
//! `GET /metrics` (Prometheus text format).
//!
//! They are answered before authentication, and only for requests that carry no AWS
//! signature (no `Authorization: AWS...`) and no query string: a signed `GET /health/live` is still GetObject of key
//! `live` in a bucket named `health`, and a signed `GET /metrics` ListObjects of bucket
//! `metrics`. (Tessera serves no anonymous S3 request, so an unsigned one to these paths
//! would otherwise be AccessDenied: no S3 operation is shadowed.)
//!
//! Authentication: the health endpoints need none (a load balancer probes them, and they
//! reveal one word). `/metrics` needs none by default either — it shows counts, device
//! numbers and zone names, never paths, keys or bucket names — and with `--metrics-token`
//! (or `TESSERA_METRICS_TOKEN`) it needs `Authorization: Bearer <token>`.

use crate::body::{full, RespBody};
use crate::metrics::{DeviceSample, Op, Snapshot};
use http::{HeaderValue, Method, Response, StatusCode};

pub const LIVE_PATH: &str = "/health/live";
pub const READY_PATH: &str = "/health/ready";
pub const METRICS_PATH: &str = "/metrics";

/// An operator endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEndpoint {
    /// The process is up and its cores answer HTTP.
    Live,
    /// The node can acknowledge writes now.
    Ready,
    /// The Prometheus exposition.
    Metrics,
}

impl ProbeEndpoint {
    pub fn op(self) -> Op {
        match self {
            ProbeEndpoint::Live => Op::HEALTH_LIVE,
            ProbeEndpoint::Ready => Op::HEALTH_READY,
            ProbeEndpoint::Metrics => Op::METRICS,
        }
    }
}

/// Whether a request is for an operator endpoint (see the module comment).
pub fn route(method: &Method, path: &str, query: Option<&str>, headers: &http::HeaderMap) -> Option<ProbeEndpoint> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    if query.is_some_and(|q| !q.is_empty()) {
        return None;
    }
    // SigV4 (`AWS4-HMAC-SHA256 ...`) and SigV2 (`AWS key:sig`) both start with `AWS`; any
    // other scheme (a scraper's Bearer or Basic) is not an S3 request.
    let signed = headers.get(http::header::AUTHORIZATION).is_some_and(|v| v.as_bytes().starts_with(b"AWS"));
    if signed {
        return None;
    }
    match path {
        LIVE_PATH => Some(ProbeEndpoint::Live),
        READY_PATH => Some(ProbeEndpoint::Ready),
        METRICS_PATH => Some(ProbeEndpoint::Metrics),
        _ => None,
    }
}

/// What the operator endpoints need from the server: each core's counters, the metrics
/// token, the segment size (the room a device needs to take writes) and the start time.
pub struct ProbeState {
    /// One per core, indexed by core.
    pub metrics: Vec<crate::metrics::CoreMetrics>,
    pub metrics_token: Option<String>,
    pub segment_bytes: u64,
    pub started: std::time::Instant,
}

/// Whether the node can acknowledge writes, and if not, why.
pub struct Readiness {
    pub ready: bool,
    pub why: String,
    pub devices: Vec<DeviceSample>,
}

/// The filesystem holding `p`: (size, bytes free to an unprivileged writer). A statvfs of a
/// local filesystem answers from memory; it is the only system call a probe makes.
pub fn filesystem_space(p: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) fills the zeroed struct we own from a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// Ready when every core answers (the status call goes to all of them) and a stripe can be
/// placed zone-safely (k+m devices, at most m per zone) on devices that are in service and
/// have room for a new segment on their filesystem. A device whose filesystem cannot take a
/// new segment may still fill its open one, so a node can turn not-ready a little before its
/// writes get 507, never after.
pub async fn readiness(engine: &engine::Engine, segment_bytes: u64) -> Readiness {
    let st = match engine.status().await {
        Ok(st) => st,
        Err(e) => return Readiness { ready: false, why: format!("the engine does not answer: {e}"), devices: vec![] },
    };
    let set = engine.device_set();
    let devices: Vec<DeviceSample> = st
        .devices
        .iter()
        .map(|d| DeviceSample {
            index: d.index,
            zone: d.zone.clone(),
            healthy: d.healthy,
            io_errors: d.io_errors,
            fs: d.path.as_deref().and_then(filesystem_space),
        })
        .collect();
    let usable: Vec<bool> = (0..set.device_count())
        .map(|i| devices.get(i).is_some_and(|d| d.healthy && d.fs.is_some_and(|(_, free)| free >= segment_bytes)))
        .collect();
    let (k, m) = (set.k, set.m);
    if engine::placement::choose(&set.zones, &usable, k + m, m, 0).is_some() {
        return Readiness { ready: true, why: "ready".into(), devices };
    }
    let healthy = devices.iter().filter(|d| d.healthy).count();
    let n = usable.iter().filter(|u| **u).count();
    let why = format!(
        "not ready: {n} of {} devices can take writes ({healthy} in service, the others full); a stripe needs {} with at most {m} per zone",
        set.device_count(),
        k + m
    );
    Readiness { ready: false, why, devices }
}

fn text(status: StatusCode, body: String) -> Response<RespBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Answer an operator endpoint.
pub async fn serve(srv: &crate::handler::Server, ep: ProbeEndpoint, headers: &http::HeaderMap) -> Response<RespBody> {
    match ep {
        ProbeEndpoint::Live => text(StatusCode::OK, "live\n".into()),
        ProbeEndpoint::Ready => {
            let r = readiness(&srv.ctx.engine, srv.probe.segment_bytes).await;
            let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, format!("{}\n", r.why))
        }
        ProbeEndpoint::Metrics => {
            if let Some(token) = &srv.probe.metrics_token {
                if !bearer_matches(headers, token) {
                    let mut r = text(StatusCode::UNAUTHORIZED, "/metrics needs Authorization: Bearer <token>\n".into());
                    r.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return r;
                }
            }
            let mut snap = Snapshot::of_cores(&srv.probe.metrics);
            let ready = readiness(&srv.ctx.engine, srv.probe.segment_bytes).await;
            snap.ready = ready.ready;
            snap.devices = ready.devices;
            snap.uptime_secs = srv.probe.started.elapsed().as_secs_f64();
            if let Ok(stats) = srv.ctx.engine.stats().await {
                snap.engine = stats;
            }
            if let Ok(st) = srv.ctx.engine.status().await {
                snap.health = st;
            }
            let mut r = Response::new(full(snap.render()));
            r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
            r
        }
    }
}

/// Constant-time comparison of the bearer token (a timing difference would reveal a prefix).
fn bearer_matches(headers: &http::HeaderMap, token: &str) -> bool {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else { return false };
    let v = v.as_bytes();
    if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let given = &v[7..];
    let want = token.as_bytes();
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().expect("header"));
        }
        h
    }

    #[test]
    fn only_unsigned_requests_without_a_query_are_probes() {
        let none = headers(None);
        assert_eq!(route(&Method::GET, "/health/live", None, &none), Some(ProbeEndpoint::Live));
        assert_eq!(route(&Method::HEAD, "/health/ready", None, &none), Some(ProbeEndpoint::Ready));
        assert_eq!(route(&Method::GET, "/metrics", None, &headers(Some("Bearer x"))), Some(ProbeEndpoint::Metrics));
        assert_eq!(route(&Method::GET, "/metrics", None, &headers(Some("Basic eDp5"))), Some(ProbeEndpoint::Metrics));
        // A signed request is S3's: GetObject health/live, ListObjects of bucket metrics.
        let signed = headers(Some(
            "AWS4-HMAC-SHA256 Credential=AK/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        ));
        assert_eq!(route(&Method::GET, "/health/live", None, &signed), None);
        assert_eq!(route(&Method::GET, "/metrics", None, &headers(Some("AWS AK:sig"))), None);
        // A presigned URL carries its signature in the query.
        assert_eq!(route(&Method::GET, "/metrics", Some("X-Amz-Signature=00"), &none), None);
        assert_eq!(route(&Method::PUT, "/health/live", None, &none), None);
        assert_eq!(route(&Method::GET, "/health/live/x", None, &none), None);
        assert_eq!(route(&Method::GET, "/health", None, &none), None);
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        assert!(bearer_matches(&headers(Some("Bearer s3cret")), "s3cret"));
        assert!(bearer_matches(&headers(Some("bearer s3cret")), "s3cret"));
        assert!(!bearer_matches(&headers(Some("Bearer s3cre")), "s3cret"));
        assert!(!bearer_matches(&headers(Some("Bearer s3cretx")), "s3cret"));
        assert!(!bearer_matches(&headers(Some("Basic s3cret")), "s3cret"));
        assert!(!bearer_matches(&headers(None), "s3cret"));
    }
}
