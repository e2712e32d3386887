//! PutObject, GetObject, HeadObject.

use super::{engine_err, header, ms_to_secs_time, ms_to_time, object_headers, set, status, Ctx, Req, Resp};
use crate::body::{self, BodyPump};
use engine::{body_channel, ObjectInfo, PutOptions, RangeSpec, ReadOutcome};
use http::{HeaderMap, StatusCode};
use s3::error::{S3Error, S3ErrorCode};
use s3::http_util::{
    content_range, format_http_date, parse_http_date, parse_range, ByteRange as HttpRange, EtagCondition,
};

/// Conditional-write headers of a PUT (or CompleteMultipartUpload).
pub fn put_conditions(h: &HeaderMap) -> Result<(bool, Option<String>), S3Error> {
    let none_match = match header(h, "if-none-match") {
        None => false,
        Some(v) if v.trim() == "*" => true,
        Some(_) => {
            return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "If-None-Match on PUT supports only *"))
        }
    };
    Ok((none_match, header(h, "if-match").map(str::to_string)))
}

pub async fn put_object(ctx: &Ctx, req: Req, bucket: &str, key: &str) -> Result<Resp, S3Error> {
    let (if_none_match_any, if_match) = put_conditions(&req.parts.headers)?;
    let headers = object_headers(&req.parts.headers)?;
    let pump = BodyPump::new(&req.parts, &req.auth, req.body)?;
    pump.refuse_declared_over(engine::MAX_PUT_BYTES)?;
    let opts = PutOptions { headers, content_md5: pump.content_md5(), if_none_match_any, if_match };
    let (tx, rx) = body_channel();
    let (fed, put) = futures::join!(pump.pump(tx), ctx.engine.put_object(bucket, key, opts, rx));
    let info = settle(fed, put)?;
    let mut r = status(StatusCode::OK);
    set(&mut r, "etag", &info.etag);
    if let Some(c) = &info.headers.checksum {
        set_checksum(&mut r, c);
    }
    Ok(r)
}

/// Combine the body pump's and the engine's results: a body error explains an engine abort.
pub fn settle<T>(fed: Result<(), S3Error>, done: engine::Result<T>) -> Result<T, S3Error> {
    match (fed, done) {
        (_, Ok(v)) => Ok(v),
        (Err(e), Err(engine::Error::Request(engine::error::RequestError::BodyAborted(_)))) => Err(e),
        (_, Err(e)) => Err(engine_err(e)),
    }
}

pub fn set_checksum(r: &mut Resp, c: &engine::StoredChecksum) {
    let name = format!("x-amz-checksum-{}", c.algorithm.to_ascii_lowercase());
    if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&c.value)) {
        r.headers_mut().insert(n, v);
    }
}

/// The conditional headers of a read (GET, HEAD, or a copy's source), taken from the request
/// so that they can be decided on the object's owner core before anything is read.
#[derive(Clone, Default)]
pub struct Conditions {
    if_match: Option<EtagCondition>,
    if_none_match: Option<EtagCondition>,
    if_modified_since: Option<std::time::SystemTime>,
    if_unmodified_since: Option<std::time::SystemTime>,
}

impl Conditions {
    /// `names`: the If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since header
    /// names (the plain ones, or the `x-amz-copy-source-` ones).
    pub fn from_headers(h: &HeaderMap, names: [&str; 4]) -> Conditions {
        let [im, inm, ims, ius] = names;
        Conditions {
            if_match: header(h, im).map(EtagCondition::parse),
            if_none_match: header(h, inm).map(EtagCondition::parse),
            if_modified_since: header(h, ims).and_then(parse_http_date),
            if_unmodified_since: header(h, ius).and_then(parse_http_date),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Evaluate them against the object, RFC 7232 order: a passing If-Match makes
    /// If-Unmodified-Since moot, a failing If-None-Match makes If-Modified-Since moot.
    pub fn check(&self, info: &ObjectInfo) -> Result<(), S3Error> {
        let lm = ms_to_secs_time(info.mtime_ms);
        if let Some(c) = &self.if_match {
            if !c.matches(&info.etag) {
                return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
            }
        } else if let Some(t) = self.if_unmodified_since {
            if lm > t {
                return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
            }
        }
        if let Some(c) = &self.if_none_match {
            if c.matches(&info.etag) {
                return Err(S3Error::new(S3ErrorCode::NotModified));
            }
        } else if let Some(t) = self.if_modified_since {
            if lm <= t {
                return Err(S3Error::new(S3ErrorCode::NotModified));
            }
        }
        Ok(())
    }
}

const GET_CONDITIONS: [&str; 4] = ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"];

fn object_response(r: &mut Resp, info: &ObjectInfo, req: &Req, ranged: bool) {
    let h = &info.headers;
    let q = &req.query;
    let pick = |over: &str, stored: &Option<String>| q.get(over).map(str::to_string).or_else(|| stored.clone());
    set(r, "etag", &info.etag);
    set(r, "last-modified", &format_http_date(ms_to_time(info.mtime_ms)));
    set(r, "accept-ranges", "bytes");
    let ct = pick("response-content-type", &h.content_type).unwrap_or_else(|| "binary/octet-stream".into());
    set(r, "content-type", &ct);
    for (name, over, stored) in [
        ("content-encoding", "response-content-encoding", &h.content_encoding),
        ("content-disposition", "response-content-disposition", &h.content_disposition),
        ("content-language", "response-content-language", &h.content_language),
        ("cache-control", "response-cache-control", &h.cache_control),
        ("expires", "response-expires", &h.expires),
    ] {
        if let Some(v) = pick(over, stored) {
            set(r, name, &v);
        }
    }
    for (k, v) in &h.user {
        if let (Ok(n), Ok(v)) =
            (http::HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()), http::HeaderValue::from_str(v))
        {
            r.headers_mut().insert(n, v);
        }
    }
    if info.parts_count > 0 {
        set(r, "x-amz-mp-parts-count", &info.parts_count.to_string());
    }
    if let Some(c) = &h.checksum {
        // The stored checksum covers the whole object, so a range does not get it.
        if !ranged && req.header("x-amz-checksum-mode").is_some_and(|m| m.eq_ignore_ascii_case("enabled")) {
            set_checksum(r, c);
        }
    }
}

fn range_of(req: &Req) -> Option<RangeSpec> {
    match req.header("range").and_then(parse_range)? {
        HttpRange::From { first, last } => Some(RangeSpec::FromTo(first, last)),
        HttpRange::Suffix(n) => Some(RangeSpec::Suffix(n)),
    }
}

pub async fn get_object(
    ctx: &Ctx,
    req: Req,
    bucket: &str,
    key: &str,
    part_number: Option<u32>,
) -> Result<Resp, S3Error> {
    if part_number.is_some() {
        return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "GetObject by partNumber is not supported"));
    }
    let range = range_of(&req);
    let conditions = Conditions::from_headers(&req.parts.headers, GET_CONDITIONS);
    let read = if conditions.is_empty() {
        ctx.engine.get_object_if(bucket, key, range, |_| true).await
    } else {
        let on_owner = conditions.clone();
        ctx.engine.get_object_if(bucket, key, range, move |i| on_owner.check(i).is_ok()).await
    };
    let (info, r, rx) = match read {
        Ok(ReadOutcome::Stream(info, r, rx)) => (info, r, rx),
        Ok(ReadOutcome::Declined(info)) => {
            // Declined on the owner core (no stripe read): the same check names the error.
            let e = conditions.check(&info).err().unwrap_or_else(|| S3Error::new(S3ErrorCode::PreconditionFailed));
            return Err(not_modified(e, &info));
        }
        Err(engine::Error::Request(engine::error::RequestError::InvalidRange { size })) => {
            return Err(S3Error::new(S3ErrorCode::InvalidRange)
                .detail("RangeRequested", req.header("range").unwrap_or("").to_string())
                .detail("ActualObjectSize", size.to_string()))
        }
        Err(e) => return Err(engine_err(e)),
    };
    let mut resp = http::Response::new(body::stream(rx));
    object_response(&mut resp, &info, &req, range.is_some());
    set(&mut resp, "content-length", &(r.end - r.start).to_string());
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(&mut resp, "content-range", &content_range(&(r.start..r.end), info.size));
    }
    Ok(resp)
}

fn not_modified(e: S3Error, info: &ObjectInfo) -> S3Error {
    if e.code == S3ErrorCode::NotModified {
        e.detail("ETag", info.etag.clone())
    } else {
        e
    }
}

pub async fn head_object(
    ctx: &Ctx,
    req: Req,
    bucket: &str,
    key: &str,
    part_number: Option<u32>,
) -> Result<Resp, S3Error> {
    if part_number.is_some_and(|p| p != 1) {
        return Err(S3Error::with_message(S3ErrorCode::NotImplemented, "HeadObject by partNumber is not supported"));
    }
    let info = ctx.engine.head_object(bucket, key).await.map_err(engine_err)?;
    Conditions::from_headers(&req.parts.headers, GET_CONDITIONS).check(&info)?;
    let mut resp = status(StatusCode::OK);
    let range = range_of(&req);
    object_response(&mut resp, &info, &req, range.is_some());
    let len = match range {
        Some(spec) => {
            let r = spec.resolve(info.size).map_err(engine_err)?;
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(&mut resp, "content-range", &content_range(&(r.start..r.end), info.size));
            r.end - r.start
        }
        None => info.size,
    };
    set(&mut resp, "content-length", &len.to_string());
    Ok(resp)
}

/// Tags are not stored yet: every object has an empty tag set.
pub async fn get_tagging(ctx: &Ctx, bucket: &str, key: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_object(bucket, key).await.map_err(engine_err)?;
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                <Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet></TagSet></Tagging>";
    Ok(super::xml(StatusCode::OK, body.to_string()))
}
