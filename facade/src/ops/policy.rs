//! PutBucketPolicy, GetBucketPolicy, DeleteBucketPolicy. The policy itself is checked,
//! stored and enforced by `access`.

use super::{engine_err, status, Ctx, Req, Resp};
use crate::body::{full, BodyPump};
use http::{HeaderValue, Response, StatusCode};
use s3::auth::policy::POLICY_BYTES_MAX;
use s3::error::{S3Error, S3ErrorCode};

/// A policy document from a request body (bucket and identity policies alike): at most
/// `POLICY_BYTES_MAX` bytes of UTF-8, else MalformedPolicy.
pub async fn read_policy_text(pump: BodyPump) -> Result<String, S3Error> {
    // One byte more than allowed is read so that a longer policy is refused by its size.
    let body = pump.read_all(POLICY_BYTES_MAX + 1).await.map_err(|e| {
        if e.code == S3ErrorCode::EntityTooLarge {
            S3Error::with_message(
                S3ErrorCode::MalformedPolicy,
                format!("Policies are at most {POLICY_BYTES_MAX} bytes"),
            )
        } else {
            e
        }
    })?;
    String::from_utf8(body.to_vec())
        .map_err(|_| S3Error::with_message(S3ErrorCode::MalformedPolicy, "The policy is not UTF-8 text"))
}

pub async fn put(ctx: &Ctx, req: Req, bucket: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    let text = read_policy_text(BodyPump::new(&req.parts, &req.auth, req.body)?).await?;
    ctx.policies.put(&ctx.engine, bucket, text).await?;
    Ok(status(StatusCode::NO_CONTENT))
}

pub async fn get(ctx: &Ctx, bucket: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    let Some(p) = ctx.policies.get(bucket) else {
        return Err(S3Error::new(S3ErrorCode::NoSuchBucketPolicy).resource(bucket));
    };
    let mut r = Response::new(full(p.text.clone()));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

pub async fn delete(ctx: &Ctx, bucket: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    ctx.policies.delete(&ctx.engine, bucket).await?;
    Ok(status(StatusCode::NO_CONTENT))
}
