//! DeleteObject, DeleteObjects.

use super::{engine_err, status, xml, Ctx, Req, Resp};
use crate::access::Facts;
use crate::body::BodyPump;
use http::StatusCode;
use s3::error::S3Error;
use s3::router::Access;
use s3::xml::{self as x, DeleteFailure, DeletedEntry};

/// A DeleteObjects body names at most 1000 keys of at most 1 KiB each.
const MAX_DELETE_BODY_BYTES: usize = 2 << 20;

fn check_version(v: &Option<String>) -> Result<(), S3Error> {
    match v.as_deref() {
        None | Some("null") => Ok(()),
        Some(_) => Err(S3Error::invalid_argument("Invalid version id specified")),
    }
}

pub async fn delete_object(
    ctx: &Ctx,
    req: Req,
    bucket: &str,
    key: &str,
    version_id: Option<String>,
) -> Result<Resp, S3Error> {
    check_version(&version_id)?;
    let if_match = req.header("if-match").map(str::to_string);
    ctx.engine.delete_object(bucket, key, if_match).await.map_err(engine_err)?;
    Ok(status(StatusCode::NO_CONTENT))
}

pub async fn delete_objects(ctx: &Ctx, req: Req, bucket: &str) -> Result<Resp, S3Error> {
    // S3 requires an integrity check of the list of keys to delete: Content-MD5 or an
    // x-amz-checksum-* (as a header, or announced as a trailer).
    let h = &req.parts.headers;
    let checked = h.contains_key("content-md5")
        || h.keys().any(|k| k.as_str().starts_with("x-amz-checksum-"))
        || h.get("x-amz-trailer").and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("x-amz-checksum-"));
    if !checked {
        return Err(S3Error::invalid_request(
            "Missing required header for this request: Content-MD5 (or an x-amz-checksum-* header)",
        ));
    }
    let pump = BodyPump::new(&req.parts, &req.auth, req.body)?;
    let body = pump.read_all(MAX_DELETE_BODY_BYTES).await?;
    let d = x::parse_delete(&body)?;
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    let caller = &req.caller;
    let facts = Facts {
        query: &req.query,
        headers: &req.parts.headers,
        source_ip: req.conn.peer,
        secure_transport: req.conn.tls,
    };
    let facts = &facts;
    let results = futures::future::join_all(d.objects.iter().map(|o| async move {
        check_version(&o.version_id)?;
        let access = Access { action: "s3:DeleteObject", bucket: Some(bucket), key: Some(&o.key) };
        ctx.policies.authorize(caller, &access, facts)?;
        ctx.engine.delete_object(bucket, &o.key, None).await.map_err(engine_err)
    }))
    .await;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (o, r) in d.objects.into_iter().zip(results) {
        match r {
            Ok(()) => {
                deleted.push(DeletedEntry { key: o.key, version_id: o.version_id, delete_marker_version_id: None })
            }
            Err(e) => {
                errors.push(DeleteFailure { key: o.key, version_id: o.version_id, code: e.code, message: e.message })
            }
        }
    }
    Ok(xml(StatusCode::OK, x::delete_result(d.quiet, &deleted, &errors)))
}
