//! One module per family of S3 operations. Handlers are short: parse → check → call the
//! engine → render.

pub mod bucket;
pub mod copy;
pub mod delete;
pub mod list;
pub mod multipart;
pub mod object;
pub mod policy;
pub mod post;

use crate::body::{full, RespBody};
use engine::{Engine, ObjectHeaders};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use s3::auth::sigv4::AuthContext;
use s3::error::S3Error;
use s3::router::Query;
use s3::xml::Owner;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Resp = Response<RespBody>;

/// What every handler gets.
pub struct Ctx {
    pub engine: Engine,
    pub region: String,
    pub owner: Owner,
    /// The bucket policies in force (see `access`).
    pub policies: std::sync::Arc<crate::access::Policies>,
    /// The users and their keys in force (see `users`).
    pub users: std::sync::Arc<crate::users::Users>,
}

/// What the connection a request came on says about it (for policy conditions).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnInfo {
    pub peer: Option<std::net::IpAddr>,
    pub tls: bool,
}

/// One authenticated request.
pub struct Req {
    pub parts: Parts,
    pub body: Incoming,
    pub auth: AuthContext,
    pub query: Query,
    pub conn: ConnInfo,
    /// Who signed it.
    pub caller: crate::access::Caller,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.parts.headers, name)
    }
}

pub fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Whole seconds, as HTTP dates and S3 compare them.
pub fn ms_to_secs_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ms / 1000)
}

pub fn xml(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    r
}

pub fn status(status: StatusCode) -> Resp {
    let mut r = Response::new(crate::body::empty());
    *r.status_mut() = status;
    r
}

pub fn set(r: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// The object headers a PUT, a copy with REPLACE or a multipart create stores.
pub fn object_headers(h: &HeaderMap) -> Result<ObjectHeaders, S3Error> {
    let s = |n: &str| header(h, n).map(str::to_string);
    let content_encoding = header(h, "content-encoding").and_then(|v| {
        // aws-chunked is transport framing, not a property of the object.
        let kept: Vec<&str> =
            v.split(',').map(str::trim).filter(|e| !e.eq_ignore_ascii_case("aws-chunked") && !e.is_empty()).collect();
        (!kept.is_empty()).then(|| kept.join(","))
    });
    let mut user = Vec::new();
    for (name, value) in h {
        if let Some(n) = name.as_str().strip_prefix("x-amz-meta-") {
            user.push((n.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()));
        }
    }
    user.sort();
    Ok(ObjectHeaders {
        content_type: s("content-type"),
        content_encoding,
        content_disposition: s("content-disposition"),
        content_language: s("content-language"),
        cache_control: s("cache-control"),
        expires: s("expires"),
        user,
        checksum: None,
    })
}

pub fn engine_err(e: engine::Error) -> S3Error {
    crate::engine_error::to_s3(e)
}
