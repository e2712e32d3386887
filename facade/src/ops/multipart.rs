//! CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload,
//! ListParts, ListMultipartUploads.

use super::object::{put_conditions, set_checksum, settle};
use super::{engine_err, ms_to_time, object_headers, set, status, xml, Ctx, Req, Resp};
use crate::body::BodyPump;
use engine::{body_channel, PutOptions, UploadListQuery};
use http::StatusCode;
use s3::error::S3Error;
use s3::router::ListUploadsArgs;
use s3::xml::{self as x, CompletedUpload, PartEntry, PartsPage, UploadEntry, UploadsPage};

/// 10,000 parts of about 100 bytes of XML each, with room to spare.
const MAX_COMPLETE_BODY_BYTES: usize = 4 << 20;

pub async fn create(ctx: &Ctx, req: Req, bucket: &str, key: &str) -> Result<Resp, S3Error> {
    let mut headers = object_headers(&req.parts.headers)?;
    headers.checksum = None;
    let id = ctx.engine.create_multipart(bucket, key, headers).await.map_err(engine_err)?;
    Ok(xml(StatusCode::OK, x::initiate_multipart_upload(bucket, key, &id)))
}

pub async fn upload_part(
    ctx: &Ctx,
    req: Req,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part: u32,
) -> Result<Resp, S3Error> {
    let pump = BodyPump::new(&req.parts, &req.auth, req.body)?;
    pump.refuse_declared_over(engine::MAX_PUT_BYTES)?;
    let md5 = pump.content_md5();
    let (tx, rx) = body_channel();
    let (fed, done) = futures::join!(pump.pump(tx), ctx.engine.upload_part(bucket, key, upload_id, part, md5, rx));
    let info = settle(fed, done)?;
    let mut r = status(StatusCode::OK);
    set(&mut r, "etag", &info.etag);
    if let Some(c) = &info.checksum {
        set_checksum(&mut r, c);
    }
    Ok(r)
}

pub async fn complete(ctx: &Ctx, req: Req, bucket: &str, key: &str, upload_id: &str) -> Result<Resp, S3Error> {
    let (if_none_match_any, if_match) = put_conditions(&req.parts.headers)?;
    let pump = BodyPump::new(&req.parts, &req.auth, req.body)?;
    let body = pump.read_all(MAX_COMPLETE_BODY_BYTES).await?;
    let parts = x::parse_complete_multipart_upload(&body)?;
    let list: Vec<(u32, String)> = parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    let opts = PutOptions { if_none_match_any, if_match, ..Default::default() };
    let info = ctx.engine.complete_multipart(bucket, key, upload_id, list, opts).await.map_err(engine_err)?;
    let c = CompletedUpload {
        location: format!("/{bucket}/{key}"),
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag: info.etag.clone(),
        checksum: None,
    };
    let mut r = xml(StatusCode::OK, x::complete_multipart_upload(&c));
    set(&mut r, "etag", &info.etag);
    Ok(r)
}

pub async fn abort(ctx: &Ctx, bucket: &str, key: &str, upload_id: &str) -> Result<Resp, S3Error> {
    ctx.engine.abort_multipart(bucket, key, upload_id).await.map_err(engine_err)?;
    Ok(status(StatusCode::NO_CONTENT))
}

pub async fn list_parts(
    ctx: &Ctx,
    bucket: &str,
    key: &str,
    upload_id: &str,
    max_parts: usize,
    marker: Option<u32>,
) -> Result<Resp, S3Error> {
    let (_, parts) = ctx.engine.list_parts(bucket, key, upload_id).await.map_err(engine_err)?;
    let after = marker.unwrap_or(0);
    let mut selected: Vec<PartEntry> = parts
        .into_iter()
        .filter(|p| p.number > after)
        .map(|p| PartEntry {
            part_number: p.number,
            last_modified: ms_to_time(p.mtime_ms),
            etag: p.etag,
            size: p.size,
            checksum: p
                .checksum
                .and_then(|c| s3::checksum::ChecksumAlgorithm::from_name(&c.algorithm).map(|a| (a, c.value))),
        })
        .collect();
    let truncated = selected.len() > max_parts;
    selected.truncate(max_parts);
    let page = PartsPage {
        bucket: bucket.to_string(),
        key: key.to_string(),
        upload_id: upload_id.to_string(),
        owner: ctx.owner.clone(),
        storage_class: None,
        part_number_marker: after,
        next_part_number_marker: if truncated { selected.last().map(|p| p.part_number) } else { None },
        max_parts,
        is_truncated: truncated,
        parts: selected,
    };
    Ok(xml(StatusCode::OK, x::list_parts(&page)))
}

pub async fn list_uploads(ctx: &Ctx, bucket: &str, args: ListUploadsArgs) -> Result<Resp, S3Error> {
    let q = UploadListQuery {
        prefix: args.prefix.clone(),
        key_marker: args.key_marker.clone(),
        upload_id_marker: args.upload_id_marker.clone(),
        max_uploads: args.max_uploads,
    };
    let mut ups = ctx.engine.list_uploads(bucket, q).await.map_err(engine_err)?;
    let mut page = UploadsPage::default();
    // With a delimiter, keys that share a prefix up to it roll up into one common prefix.
    if let Some(d) = args.delimiter.as_deref().filter(|d| !d.is_empty()) {
        let mut kept = Vec::new();
        for u in ups.drain(..) {
            match u.key[args.prefix.len()..].find(d) {
                Some(pos) => {
                    let cp = u.key[..args.prefix.len() + pos + d.len()].to_string();
                    if page.common_prefixes.last() != Some(&cp) {
                        page.common_prefixes.push(cp);
                    }
                }
                None => kept.push(u),
            }
        }
        ups = kept;
    }
    page.is_truncated = ups.len() > args.max_uploads;
    ups.truncate(args.max_uploads);
    if page.is_truncated {
        page.next_key_marker = ups.last().map(|u| u.key.clone());
        page.next_upload_id_marker = ups.last().map(|u| u.upload_id.clone());
    }
    page.uploads = ups
        .into_iter()
        .map(|u| UploadEntry {
            key: u.key,
            upload_id: u.upload_id,
            initiated: ms_to_time(u.initiated_ms),
            owner: ctx.owner.clone(),
            storage_class: None,
        })
        .collect();
    Ok(xml(StatusCode::OK, x::list_multipart_uploads(bucket, &args, &page)))
}
