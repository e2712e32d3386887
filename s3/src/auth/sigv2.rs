//! AWS Signature Version 2 for S3: the `Authorization: AWS AK:signature` header and presigned
//! query URLs (`AWSAccessKeyId`, `Expires`, `Signature`), as older tools still produce them
//! (`s3cmd signurl`, the AWS CLI v1, botocore's `s3` signature version).
//!
//! The string to sign is the method, Content-MD5, Content-Type, the date (or, presigned, the
//! expiry), every `x-amz-*` header (lowercased, sorted, values trimmed and joined with commas)
//! and the canonical resource (`/bucket/key` plus the sub-resources S3 signs, sorted), signed
//! with HMAC-SHA1. Every `x-amz-*` header is part of it, so none can be added unsigned. The
//! payload is not signed: a Content-MD5, when sent, is both signed and checked as the body
//! streams.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::sigv4::{AuthContext, PayloadMode, MAX_CLOCK_SKEW_SECS};
use crate::error::{S3Error, S3ErrorCode};
use crate::http_util::{format_amz_date, parse_http_date};

/// The query parameters S3 includes in the canonical resource (the others are not signed).
const SIGNED_SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A SigV2 presigned URL may live at most this long (as SigV4's: seven days).
pub const MAX_PRESIGNED_V2_EXPIRES_SECS: u64 = 604_800;

/// The request as SigV2 covers it. `resource_path` is the raw (still percent-encoded) path, with
/// `/bucket` in front for a virtual-hosted-style request.
#[derive(Debug, Clone, Copy)]
pub struct V2Request<'a> {
    pub method: &'a Method,
    pub resource_path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Whether the request is signed with SigV2 (header or presigned query).
pub fn is_v2(headers: &HeaderMap, query: Option<&str>) -> bool {
    let header = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    header.is_some_and(|h| h.starts_with("AWS "))
        || query.is_some_and(|q| q.split('&').any(|p| p.starts_with("AWSAccessKeyId=")))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("")
}

fn decode(s: &str) -> Result<String, S3Error> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| S3Error::invalid_argument("URL-decoded text is not valid UTF-8"))
}

/// The string to sign; `date` is the Date header's value, empty when `x-amz-date` is sent (it
/// is then among the amz headers), or the `Expires` of a presigned URL.
pub fn string_to_sign(req: &V2Request<'_>, date: &str) -> Result<String, S3Error> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method.as_str());
    out.push('\n');
    out.push_str(header(req.headers, "content-md5"));
    out.push('\n');
    out.push_str(header(req.headers, "content-type"));
    out.push('\n');
    out.push_str(date);
    out.push('\n');
    let mut names: Vec<&str> = req.headers.keys().map(|k| k.as_str()).filter(|k| k.starts_with("x-amz-")).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        out.push_str(name);
        out.push(':');
        let values: Vec<&str> =
            req.headers.get_all(name).iter().map(|v| v.to_str().map(str::trim).unwrap_or("")).collect();
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push_str(req.resource_path);
    let mut subs: Vec<(String, Option<String>)> = Vec::new();
    for part in req.query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        let k = decode(k)?;
        if SIGNED_SUBRESOURCES.contains(&k.as_str()) {
            subs.push((k, v.map(decode).transpose()?));
        }
    }
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    Ok(out)
}

/// HMAC-SHA1 of the string to sign, base64.
pub fn sign(secret: &str, sts: &str) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA1 takes keys of any length"),
    };
    mac.update(sts.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An HTTP date as SigV2 clients send it: RFC 1123 with `GMT`, or with a `+0000` offset (as
/// in AWS's own examples).
fn parse_v2_date(s: &str) -> Option<SystemTime> {
    match s.strip_suffix(" +0000") {
        Some(head) => parse_http_date(&format!("{head} GMT")),
        None => parse_http_date(s),
    }
}

fn lookup_secret(access_key: &str, secret_for: &dyn Fn(&str) -> Option<String>) -> Result<String, S3Error> {
    secret_for(access_key)
        .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId).detail("AWSAccessKeyId", access_key))
}

/// Check the signature over the string to sign. A bucket-level request's resource is
/// `/bucket/` in AWS's examples and for virtual-hosted clients, while path-style clients may
/// sign the path as sent, `/bucket`: both spellings name the same resource and either verifies.
fn check(req: &V2Request<'_>, date: &str, secret: &str, provided: &str) -> Result<(), S3Error> {
    let sts = string_to_sign(req, date)?;
    if bool::from(sign(secret, &sts).as_bytes().ct_eq(provided.as_bytes())) {
        return Ok(());
    }
    let path = req.resource_path;
    let bucket_level = path.len() > 1 && !path[1..].contains('/');
    if bucket_level {
        let slashed = format!("{path}/");
        let alt = string_to_sign(&V2Request { resource_path: &slashed, ..*req }, date)?;
        if bool::from(sign(secret, &alt).as_bytes().ct_eq(provided.as_bytes())) {
            return Ok(());
        }
    }
    Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch).detail("StringToSign", sts))
}

fn context(access_key: String, signature: String, presigned: bool, t: SystemTime) -> AuthContext {
    // SigV2 signs no payload and has no scope or derived key: the body is checked only by a
    // Content-MD5 or x-amz-checksum-* it carries, and aws-chunked bodies are refused.
    AuthContext {
        access_key,
        region: String::new(),
        signing_key: [0; 32],
        amz_date: format_amz_date(t),
        scope: String::new(),
        seed_signature: signature,
        payload_mode: PayloadMode::Unsigned,
        presigned,
    }
}

/// Authenticate a SigV2 request (see [`is_v2`]).
pub fn authenticate_v2<F>(req: &V2Request<'_>, now: SystemTime, secret_for: F) -> Result<AuthContext, S3Error>
where
    F: Fn(&str) -> Option<String>,
{
    let streaming = header(req.headers, "x-amz-content-sha256").starts_with("STREAMING-")
        || header(req.headers, "content-encoding").split(',').any(|e| e.trim() == "aws-chunked");
    if streaming {
        return Err(S3Error::invalid_request("aws-chunked bodies need AWS Signature Version 4"));
    }
    let auth = header(req.headers, "authorization");
    if let Some(rest) = auth.strip_prefix("AWS ") {
        let (ak, sig) = rest.rsplit_once(':').ok_or_else(|| {
            S3Error::invalid_argument("AWS authorization header is invalid.  Expected AwsAccessKeyId:signature")
        })?;
        let amz_date = header(req.headers, "x-amz-date");
        let (date_line, when) = if amz_date.is_empty() {
            let d = header(req.headers, "date");
            (d, d)
        } else {
            ("", amz_date)
        };
        let t = parse_v2_date(when)
            .ok_or_else(|| S3Error::access_denied("AWS authentication requires a valid Date or x-amz-date header"))?;
        let skew = now.duration_since(t).or_else(|_| t.duration_since(now)).unwrap_or_default();
        if skew > Duration::from_secs(MAX_CLOCK_SKEW_SECS) {
            return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
        }
        let secret = lookup_secret(ak, &secret_for)?;
        check(req, date_line, &secret, sig)?;
        return Ok(context(ak.to_string(), sig.to_string(), false, t));
    }
    // Presigned: AWSAccessKeyId, Expires, Signature in the query.
    let mut ak = None;
    let mut expires = None;
    let mut sig = None;
    for part in req.query.unwrap_or("").split('&') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k {
            "AWSAccessKeyId" => ak = Some(decode(v)?),
            "Expires" => expires = Some(decode(v)?),
            "Signature" => sig = Some(decode(v)?),
            _ => {}
        }
    }
    let (Some(ak), Some(expires), Some(sig)) = (ak, expires, sig) else {
        return Err(S3Error::access_denied(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
        ));
    };
    let secs: u64 =
        expires.parse().map_err(|_| S3Error::access_denied("Expires must be a number of seconds since the epoch"))?;
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    if now > at {
        return Err(S3Error::request_expired());
    }
    if at > now + Duration::from_secs(MAX_PRESIGNED_V2_EXPIRES_SECS) {
        return Err(S3Error::access_denied("Expires must be at most seven days in the future"));
    }
    let secret = lookup_secret(&ak, &secret_for)?;
    check(req, &expires, &secret, &sig)?;
    Ok(context(ak, sig, true, now))
}

#[cfg(test)]
mod tests {
    //! Expected signatures are AWS's published SigV2 examples ("Signing and Authenticating REST
    //! Requests" in the S3 developer guide), checked independently with HMAC-SHA1.
    use super::*;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn secrets(ak: &str) -> Option<String> {
        (ak == AK).then(|| SECRET.to_string())
    }

    use crate::auth::test_headers as headers;

    fn at(date: &str) -> SystemTime {
        parse_v2_date(date).expect("date")
    }

    #[test]
    fn aws_examples_verify_and_a_changed_byte_does_not() {
        // (method, resource, query, headers, signature)
        type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<(&'static str, &'a str)>, &'a str);
        let cases: [Case; 4] = [
            (
                Method::GET,
                "/awsexamplebucket1/photos/puppy.jpg",
                None,
                vec![("date", "Tue, 27 Mar 2007 19:36:42 +0000")],
                "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
            ),
            (
                Method::PUT,
                "/awsexamplebucket1/photos/puppy.jpg",
                None,
                vec![("content-type", "image/jpeg"), ("date", "Tue, 27 Mar 2007 21:15:45 +0000")],
                "iqRzw+ileNPu1fhspnRs8nOjjIA=",
            ),
            (
                Method::GET,
                "/awsexamplebucket1/",
                Some("prefix=photos&max-keys=50&marker=puppy"),
                vec![("date", "Tue, 27 Mar 2007 19:42:41 +0000")],
                "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
            ),
            (
                Method::GET,
                "/awsexamplebucket1/",
                Some("acl"),
                vec![("date", "Tue, 27 Mar 2007 19:44:46 +0000")],
                "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
            ),
        ];
        for (method, path, query, hs, sig) in cases {
            let mut h = headers(&hs);
            let date = header(&h, "date").to_string();
            h.insert("authorization", format!("AWS {AK}:{sig}").parse().expect("authz"));
            let req = V2Request { method: &method, resource_path: path, query, headers: &h };
            let ctx = authenticate_v2(&req, at(&date), secrets).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert_eq!(ctx.access_key, AK);
            assert!(!ctx.presigned);
            let other = V2Request { resource_path: "/awsexamplebucket1/photos/kitten.jpg", ..req };
            assert_eq!(
                authenticate_v2(&other, at(&date), secrets).expect_err("other key").code,
                S3ErrorCode::SignatureDoesNotMatch
            );
        }
    }

    #[test]
    fn every_amz_header_is_signed_and_x_amz_date_replaces_date() {
        let h = headers(&[
            ("x-amz-meta-reviewedby", "joe@example.com"),
            ("x-amz-meta-reviewedby", "jane@example.com"),
            ("x-amz-acl", " public-read "),
            ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("content-type", "application/x-download"),
            ("x-amz-date", "Tue, 27 Mar 2007 21:06:08 +0000"),
        ]);
        let req =
            V2Request { method: &Method::PUT, resource_path: "/b/k", query: Some("uploads&foo=bar"), headers: &h };
        assert_eq!(
            string_to_sign(&req, "").expect("sts"),
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\n\nx-amz-acl:public-read\n\
             x-amz-date:Tue, 27 Mar 2007 21:06:08 +0000\nx-amz-meta-reviewedby:joe@example.com,jane@example.com\n/b/k?uploads"
        );
        let mut h2 = h.clone();
        let sig = sign(SECRET, &string_to_sign(&req, "").expect("sts"));
        h2.insert("authorization", format!("AWS {AK}:{sig}").parse().expect("authz"));
        let signed = V2Request { headers: &h2, ..req };
        authenticate_v2(&signed, at("Tue, 27 Mar 2007 21:10:00 +0000"), secrets).expect("signed");
        // Too far from the server's clock.
        assert_eq!(
            authenticate_v2(&signed, at("Tue, 27 Mar 2007 22:10:00 +0000"), secrets).expect_err("skew").code,
            S3ErrorCode::RequestTimeTooSkewed
        );
        // An x-amz header added after signing changes the string to sign.
        let mut h3 = h2.clone();
        h3.insert("x-amz-copy-source", "/other/secret".parse().expect("value"));
        let added = V2Request { headers: &h3, ..req };
        assert_eq!(
            authenticate_v2(&added, at("Tue, 27 Mar 2007 21:10:00 +0000"), secrets).expect_err("added").code,
            S3ErrorCode::SignatureDoesNotMatch
        );
    }

    #[test]
    fn presigned_urls_verify_until_they_expire() {
        let now = at("Tue, 27 Mar 2007 19:36:42 +0000");
        let expires = now.duration_since(UNIX_EPOCH).expect("epoch").as_secs() + 300;
        let h = HeaderMap::new();
        let base = V2Request { method: &Method::GET, resource_path: "/b/photos/puppy.jpg", query: None, headers: &h };
        let sig = sign(SECRET, &string_to_sign(&base, &expires.to_string()).expect("sts"));
        let enc: String = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC).to_string();
        let q = format!("AWSAccessKeyId={AK}&Expires={expires}&Signature={enc}");
        assert!(is_v2(&h, Some(&q)));
        let req = V2Request { query: Some(&q), ..base };
        assert!(authenticate_v2(&req, now, secrets).expect("presigned").presigned);
        let late = now + Duration::from_secs(301);
        assert_eq!(authenticate_v2(&req, late, secrets).expect_err("expired").code, S3ErrorCode::AccessDenied);
        let other = V2Request { resource_path: "/b/photos/kitten.jpg", ..req };
        assert_eq!(authenticate_v2(&other, now, secrets).expect_err("other").code, S3ErrorCode::SignatureDoesNotMatch);
        let unknown = q.replace(AK, "AKIDUNKNOWN");
        let req = V2Request { query: Some(&unknown), ..base };
        assert_eq!(authenticate_v2(&req, now, secrets).expect_err("unknown").code, S3ErrorCode::InvalidAccessKeyId);
    }
}
