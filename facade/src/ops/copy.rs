//! CopyObject and UploadPartCopy: server-side copies, streamed from the source's owner core
//! to the destination's, never through the client.

use super::object::{put_conditions, Conditions};
use super::{engine_err, ms_to_time, object_headers, xml, Ctx, Req, Resp};
use engine::{body_channel, BodyItem, GetBody, ObjectInfo, PutOptions, RangeSpec, ReadOutcome};
use http::{HeaderMap, StatusCode};
use s3::error::{S3Error, S3ErrorCode};
use s3::router::CopySource;
use s3::xml as x;

const COPY_CONDITIONS: [&str; 4] = [
    "x-amz-copy-source-if-match",
    "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since",
    "x-amz-copy-source-if-unmodified-since",
];

fn check_source(c: &Conditions, info: &ObjectInfo) -> engine::Result<()> {
    // Every failed copy-source condition is a 412 (there is no 304 for a copy).
    c.check(info).map_err(|_| engine::Error::Request(engine::error::RequestError::PreconditionFailed))
}

fn check_version(src: &CopySource) -> Result<(), S3Error> {
    match src.version_id.as_deref() {
        None | Some("null") => Ok(()),
        Some(_) => Err(S3Error::invalid_argument("Invalid version id specified")),
    }
}

pub async fn copy_object(ctx: &Ctx, req: Req, bucket: &str, key: &str, src: CopySource) -> Result<Resp, S3Error> {
    check_version(&src)?;
    let h = &req.parts.headers;
    let replace = match req.header("x-amz-metadata-directive") {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("COPY") => false,
        Some(d) if d.eq_ignore_ascii_case("REPLACE") => true,
        Some(_) => return Err(S3Error::invalid_argument("Unknown metadata directive.")),
    };
    if !replace && src.bucket == bucket && src.key == key {
        return Err(S3Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let (if_none_match_any, if_match) = put_conditions(h)?;
    let headers = if replace { Some(object_headers(h)?) } else { None };
    let opts = PutOptions { if_none_match_any, if_match, ..Default::default() };
    let conditions = Conditions::from_headers(h, COPY_CONDITIONS);
    let info = ctx
        .engine
        .copy_object((&src.bucket, &src.key), (bucket, key), None, headers, opts, move |i| {
            // S3 copies at most 5 GiB in one CopyObject (a larger object is copied part by
            // part with UploadPartCopy ranges): refused before the source is read.
            if i.size > engine::MAX_PUT_BYTES {
                return Err(engine::error::RequestError::EntityTooLarge(i.size).into());
            }
            check_source(&conditions, i)
        })
        .await
        .map_err(engine_err)?;
    let checksum = info
        .headers
        .checksum
        .as_ref()
        .and_then(|c| s3::checksum::ChecksumAlgorithm::from_name(&c.algorithm).map(|a| (a, c.value.clone())));
    Ok(xml(StatusCode::OK, x::copy_object_result(&info.etag, ms_to_time(info.mtime_ms), &checksum)))
}

/// Forward a read stream into a write body; a read error aborts the write.
pub async fn forward(rx: GetBody, tx: engine::BodySender) {
    while let Ok(chunk) = rx.recv_async().await {
        let item = match chunk {
            Ok(b) => BodyItem::Data(b),
            Err(e) => {
                let _ = tx.send_async(BodyItem::Abort(format!("reading the copy source failed: {e}"))).await;
                return;
            }
        };
        if tx.send_async(item).await.is_err() {
            return;
        }
    }
    let _ = tx.send_async(BodyItem::End { checksum: None }).await;
}

fn source_range(h: &HeaderMap) -> Result<Option<RangeSpec>, S3Error> {
    let Some(v) = super::header(h, "x-amz-copy-source-range") else { return Ok(None) };
    let bad = || S3Error::invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last");
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.parse::<u64>().map_err(|_| bad())?, b.parse::<u64>().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok(Some(RangeSpec::FromTo(a, Some(b))))
}

pub async fn upload_part_copy(
    ctx: &Ctx,
    req: Req,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
    src: CopySource,
) -> Result<Resp, S3Error> {
    check_version(&src)?;
    let h = &req.parts.headers;
    let range = source_range(h)?;
    let conditions = Conditions::from_headers(h, COPY_CONDITIONS);
    let on_owner = conditions.clone();
    let read = ctx.engine.get_object_if(&src.bucket, &src.key, range, move |i| on_owner.check(i).is_ok()).await;
    let (info, r, rx) = match read {
        Ok(ReadOutcome::Stream(info, r, rx)) => (info, r, rx),
        Ok(ReadOutcome::Declined(_)) => return Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
        Err(engine::Error::Request(engine::error::RequestError::InvalidRange { size })) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRange,
                format!("Range specified is not valid for source object of size: {size}"),
            ))
        }
        Err(e) => return Err(engine_err(e)),
    };
    if let Some(RangeSpec::FromTo(_, Some(last))) = range {
        if last >= info.size {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRange,
                format!("Range specified is not valid for source object of size: {}", info.size),
            ));
        }
    }
    debug_assert!(r.end <= info.size);
    if r.end - r.start > engine::MAX_PUT_BYTES {
        return Err(S3Error::invalid_request(format!(
            "The specified copy source is larger than the maximum allowable size for a copy source: {}",
            engine::MAX_PUT_BYTES
        )));
    }
    let (tx, body) = body_channel();
    let (_, part) =
        futures::join!(forward(rx, tx), ctx.engine.upload_part(bucket, key, upload_id, part_number, None, body));
    let part = part.map_err(engine_err)?;
    Ok(xml(StatusCode::OK, x::copy_part_result(&part.etag, ms_to_time(part.mtime_ms))))
}
