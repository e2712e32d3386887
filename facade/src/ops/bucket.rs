//! ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning.

use super::{engine_err, ms_to_time, set, status, xml, Ctx, Req, Resp};
use crate::body::BodyPump;
use http::StatusCode;
use s3::error::S3Error;
use s3::xml::{self as x, BucketEntry};

/// Largest CreateBucketConfiguration body accepted.
const MAX_CONFIG_BODY_BYTES: usize = 64 << 10;

pub async fn list_buckets(ctx: &Ctx) -> Result<Resp, S3Error> {
    let buckets = ctx.engine.list_buckets().await.map_err(engine_err)?;
    let entries: Vec<BucketEntry> =
        buckets.into_iter().map(|b| BucketEntry { name: b.name, creation_date: ms_to_time(b.created_ms) }).collect();
    Ok(xml(StatusCode::OK, x::list_buckets(&ctx.owner, &entries)))
}

pub async fn create_bucket(ctx: &Ctx, req: Req, bucket: &str) -> Result<Resp, S3Error> {
    s3::router::validate_bucket_name(bucket)?;
    let has_body =
        req.header("content-length").is_some_and(|l| l != "0") || req.parts.headers.contains_key("transfer-encoding");
    if has_body {
        let pump = BodyPump::new(&req.parts, &req.auth, req.body)?;
        let body = pump.read_all(MAX_CONFIG_BODY_BYTES).await?;
        if !body.is_empty() {
            // One node is one region: a bucket asked for elsewhere cannot be made here.
            if let Some(region) = x::parse_create_bucket_configuration(&body)? {
                if region != ctx.region {
                    return Err(S3Error::new(s3::error::S3ErrorCode::InvalidLocationConstraint)
                        .detail("LocationConstraint", region));
                }
            }
        }
    }
    ctx.engine.create_bucket(bucket).await.map_err(engine_err)?;
    let mut r = status(StatusCode::OK);
    set(&mut r, "location", &format!("/{bucket}"));
    Ok(r)
}

pub async fn head_bucket(ctx: &Ctx, bucket: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    let mut r = status(StatusCode::OK);
    set(&mut r, "x-amz-bucket-region", &ctx.region);
    Ok(r)
}

pub async fn delete_bucket(ctx: &Ctx, bucket: &str) -> Result<Resp, S3Error> {
    ctx.policies.delete_bucket(&ctx.engine, bucket).await?;
    Ok(status(StatusCode::NO_CONTENT))
}

pub async fn location(ctx: &Ctx, bucket: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    let region = (ctx.region != "us-east-1").then_some(ctx.region.as_str());
    Ok(xml(StatusCode::OK, x::location_constraint(region)))
}

/// Versioning has never been enabled on any bucket (it does not exist yet).
pub async fn versioning(ctx: &Ctx, bucket: &str) -> Result<Resp, S3Error> {
    ctx.engine.head_bucket(bucket).await.map_err(engine_err)?;
    Ok(xml(StatusCode::OK, x::versioning_configuration(None)))
}
