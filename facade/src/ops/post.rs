//! PostObject: browser-based uploads. The body is multipart/form-data: form fields, then the
//! file. The form authenticates itself (a policy document signed with the uploader's key, see
//! `s3::auth::post_policy`), so the request carries no Authorization header; the fields are
//! checked against the policy before any of the file is read, and the file's size against
//! the policy's `content-length-range` as it streams (nothing is stored if it falls outside).

use super::object::{set_checksum, settle};
use super::{object_headers, set, status, xml, Ctx, Resp};
use crate::body::BODY_IDLE_TIMEOUT;
use engine::{body_channel, BodyItem, BodySender, PutOptions};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3::auth::post_policy::{self, PostForm, PostPolicy};
use s3::error::{S3Error, S3ErrorCode};
use std::future::Future;
use std::time::SystemTime;

/// Bytes of form fields before the file, all together, at most (S3 allows 20 KB).
const MAX_FORM_FIELD_BYTES: usize = 20 << 10;

/// Whether a request is a browser-based upload: a POST with a multipart/form-data body. It is
/// authenticated by its form, not by the usual signature.
pub fn is_form_post(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

fn malformed(why: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedPOSTRequest, why.into())
}

/// Await a step of reading the body, bounded by the idle timeout every body read has.
async fn idle_bounded<T>(f: impl Future<Output = multer::Result<T>>) -> Result<T, S3Error> {
    match monoio::time::timeout(BODY_IDLE_TIMEOUT, f).await {
        Err(_) => Err(S3Error::with_message(
            S3ErrorCode::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period.",
        )),
        Ok(Err(e)) => {
            Err(malformed(format!("The body of your POST request is not well-formed multipart/form-data: {e}")))
        }
        Ok(Ok(v)) => Ok(v),
    }
}

pub async fn post_object<F>(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Incoming,
    bucket: &str,
    conn: super::ConnInfo,
    root_access_key: &str,
    secret_for: F,
) -> Result<Resp, S3Error>
where
    F: Fn(&str) -> Option<String>,
{
    // Nothing signs a form's request headers (the policy covers form fields): an `x-amz-*`
    // header on it would be obeyed unsigned, so it is refused as on any request.
    if let Some(name) = headers.keys().map(|n| n.as_str()).find(|n| n.starts_with("x-amz-")) {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            format!("There were headers present in the request which were not signed: {name} (a POST upload's fields go in its form)"),
        ));
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|e| malformed(format!("{e}")))?;
    let stream = body.into_data_stream();
    let mut form_body = multer::Multipart::new(stream, boundary);

    // The fields, up to the file (S3 ignores what follows it).
    let mut form = PostForm::default();
    let mut field_bytes = 0usize;
    let mut file = loop {
        let Some(mut field) = idle_bounded(form_body.next_field()).await? else {
            return Err(malformed("The form has no field named file (it must be the last field)."));
        };
        let name = field.name().unwrap_or("").to_string();
        if name.eq_ignore_ascii_case("file") {
            break field;
        }
        let mut value = Vec::new();
        while let Some(chunk) = idle_bounded(field.chunk()).await? {
            field_bytes += chunk.len();
            if field_bytes > MAX_FORM_FIELD_BYTES {
                return Err(malformed(format!("The form fields before the file exceed {MAX_FORM_FIELD_BYTES} bytes.")));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value).map_err(|_| malformed(format!("The form field {name} is not UTF-8.")))?;
        form.push(&name, value)?;
    };
    let policy = post_policy::verify(&form, bucket, SystemTime::now(), secret_for)?;
    let filename = file.file_name().unwrap_or("").to_string();
    let key = form
        .get("key")
        .ok_or_else(|| S3Error::invalid_argument("Bucket POST must contain a field named 'key'."))?
        .replace("${filename}", &filename);
    if key.is_empty() {
        return Err(S3Error::invalid_argument("User key must have a length greater than 0."));
    }
    // The form's signer decides as if it had sent the PUT itself: the root user, or a user
    // (a key disabled since the policy was verified is refused, not taken for root).
    let caller = if policy.access_key == root_access_key {
        crate::access::Caller::Root
    } else {
        crate::access::Caller::User(
            ctx.users.signer(&policy.access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?,
        )
    };
    let no_query = s3::router::Query::default();
    let facts = crate::access::Facts { query: &no_query, headers, source_ip: conn.peer, secure_transport: conn.tls };
    let access = s3::router::Access { action: "s3:PutObject", bucket: Some(bucket), key: Some(&key) };
    ctx.policies.authorize(&caller, &access, &facts)?;
    let as_headers = form_headers(&form)?;
    s3::unhonoured::refuse_unhonoured(&as_headers)?;
    let integrity = s3::checksum::ChecksumRequest::from_headers(&as_headers)?;
    if integrity.algorithm.is_some() {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "x-amz-checksum-* fields in a POST upload form are not supported (Content-MD5 is)",
        ));
    }
    let opts =
        PutOptions { headers: object_headers(&as_headers)?, content_md5: integrity.content_md5, ..Default::default() };
    let (tx, rx) = body_channel();
    let feed = feed_file(&mut file, tx, &policy);
    let (fed, put) = futures::join!(feed, ctx.engine.put_object(bucket, &key, opts, rx));
    let info = settle(fed, put)?;

    let location = format!("/{bucket}/{}", s3::auth::sigv4::uri_encode(&key).replace("%2F", "/"));
    if let Some(redirect) = form.get("success_action_redirect").or_else(|| form.get("redirect")) {
        if let Ok(mut url) = url_with_result(redirect, bucket, &key, &info.etag) {
            let mut r = status(StatusCode::SEE_OTHER);
            set(&mut r, "location", &std::mem::take(&mut url));
            set(&mut r, "etag", &info.etag);
            return Ok(r);
        }
    }
    let mut r = match form.get("success_action_status") {
        Some("200") => status(StatusCode::OK),
        Some("201") => xml(StatusCode::CREATED, s3::xml::post_response(&location, bucket, &key, &info.etag)),
        _ => status(StatusCode::NO_CONTENT),
    };
    set(&mut r, "etag", &info.etag);
    set(&mut r, "location", &location);
    if let Some(c) = &info.headers.checksum {
        set_checksum(&mut r, c);
    }
    Ok(r)
}

/// Stream the file into the engine, holding it to the policy's size range and the largest
/// single PUT. Past the maximum, or short of the minimum at its end, the write is aborted.
async fn feed_file(file: &mut multer::Field<'_>, tx: BodySender, policy: &PostPolicy) -> Result<(), S3Error> {
    let (lo, hi) = policy.length_range.unwrap_or((0, engine::MAX_PUT_BYTES));
    let hi = hi.min(engine::MAX_PUT_BYTES);
    let mut size = 0u64;
    let result: Result<(), S3Error> = async {
        while let Some(chunk) = idle_bounded(file.chunk()).await? {
            size += chunk.len() as u64;
            if size > hi {
                return Err(S3Error::with_message(
                    S3ErrorCode::EntityTooLarge,
                    format!("Your proposed upload exceeds the maximum allowed size of {hi} bytes"),
                ));
            }
            if tx.send_async(BodyItem::Data(chunk)).await.is_err() {
                return Ok(()); // The engine stopped reading: its error is the answer.
            }
        }
        if size < lo {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooSmall,
                format!("Your proposed upload is smaller than the minimum allowed size of {lo} bytes"),
            ));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            let _ = tx.send_async(BodyItem::End { checksum: None }).await;
            Ok(())
        }
        Err(e) => {
            let _ = tx.send_async(BodyItem::Abort(e.message.clone())).await;
            Err(e)
        }
    }
}

/// The form's fields that mean what request headers mean on a PUT, as a header map: the
/// object's stored headers and user metadata, and what the unhonoured-headers table must see
/// (`acl` and `tagging` are the form's names for `x-amz-acl` and `x-amz-tagging`).
fn form_headers(form: &PostForm) -> Result<HeaderMap, S3Error> {
    const STORED: [&str; 7] = [
        "content-type",
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
        "content-md5",
    ];
    let mut h = HeaderMap::new();
    for (name, value) in &form.fields {
        let as_header = match name.as_str() {
            "acl" => "x-amz-acl",
            "tagging" => "x-amz-tagging",
            // The form's own authentication, not the object's.
            "x-amz-algorithm" | "x-amz-credential" | "x-amz-date" | "x-amz-signature" | "x-amz-security-token" => {
                continue
            }
            n if STORED.contains(&n) || n.starts_with("x-amz-") => n,
            _ => continue,
        };
        let v = HeaderValue::from_str(value)
            .map_err(|_| S3Error::invalid_argument(format!("The form field {name} has characters a header cannot")))?;
        let n = HeaderName::from_bytes(as_header.as_bytes())
            .map_err(|_| S3Error::invalid_argument(format!("{name} is not a valid field name")))?;
        h.append(n, v);
    }
    Ok(h)
}

/// `success_action_redirect` with the bucket, key and ETag added to its query, as S3 does.
fn url_with_result(redirect: &str, bucket: &str, key: &str, etag: &str) -> Result<String, ()> {
    let uri: http::Uri = redirect.parse().map_err(|_| ())?;
    if uri.scheme().is_none() {
        return Err(());
    }
    let enc = |s: &str| s3::auth::sigv4::uri_encode(s);
    let sep = if uri.query().is_some() { '&' } else { '?' };
    Ok(format!("{redirect}{sep}bucket={}&key={}&etag={}", enc(bucket), enc(key), enc(etag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_headers_a_put_would_carry() {
        let mut f = PostForm::default();
        for (n, v) in [
            ("key", "k"),
            ("Content-Type", "image/png"),
            ("x-amz-meta-owner", "me"),
            ("acl", "public-read"),
            ("x-amz-credential", "AK/20261206/us-east-1/s3/aws4_request"),
            ("success_action_status", "201"),
        ] {
            f.push(n, v.into()).unwrap();
        }
        let h = form_headers(&f).unwrap();
        assert_eq!(h.get("content-type").unwrap(), "image/png");
        assert_eq!(h.get("x-amz-meta-owner").unwrap(), "me");
        assert_eq!(h.get("x-amz-acl").unwrap(), "public-read");
        assert!(h.get("x-amz-credential").is_none() && h.get("key").is_none());
        // The public ACL is refused by the same table a PUT's header meets.
        assert_eq!(s3::unhonoured::refuse_unhonoured(&h).unwrap_err().code, S3ErrorCode::NotImplemented);
    }

    #[test]
    fn a_redirect_gets_the_result_in_its_query() {
        assert_eq!(
            url_with_result("https://example.com/done?x=1", "b", "a b", "\"e\"").unwrap(),
            "https://example.com/done?x=1&bucket=b&key=a%20b&etag=%22e%22"
        );
        assert!(url_with_result("/relative", "b", "k", "e").is_err());
    }
}
