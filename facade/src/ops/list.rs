//! ListObjects (v1), ListObjectsV2, ListObjectVersions.

use super::{engine_err, ms_to_time, xml, Ctx, Resp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use engine::{ListItem, ListQuery};
use http::StatusCode;
use s3::error::S3Error;
use s3::router::{ListObjectsArgs, ListObjectsV2Args, ListVersionsArgs};
use s3::xml::{self as x, ListPage, ObjectEntry, VersionEntry, VersionsPage};

fn query(prefix: &str, delimiter: &Option<String>, after: Option<String>, max_keys: usize) -> ListQuery {
    ListQuery { prefix: prefix.to_string(), delimiter: delimiter.clone(), start_after: after, max_keys }
}

fn to_page(ctx: &Ctx, items: Vec<ListItem>, truncated: bool, next: Option<String>) -> ListPage {
    let mut page = ListPage { is_truncated: truncated, next, ..Default::default() };
    for it in items {
        match it {
            ListItem::Object(o) => page.objects.push(ObjectEntry {
                key: o.key,
                last_modified: ms_to_time(o.mtime_ms),
                etag: o.etag,
                size: o.size,
                storage_class: None,
                owner: Some(ctx.owner.clone()),
                checksum_algorithm: None,
            }),
            ListItem::CommonPrefix(p) => page.common_prefixes.push(p),
        }
    }
    page
}

pub async fn list_v1(ctx: &Ctx, bucket: &str, args: ListObjectsArgs) -> Result<Resp, S3Error> {
    let q = query(&args.prefix, &args.delimiter, args.marker.clone(), args.max_keys);
    let page = ctx.engine.list_objects(bucket, q).await.map_err(engine_err)?;
    let p = to_page(ctx, page.items, page.truncated, page.next_marker);
    Ok(xml(StatusCode::OK, x::list_objects_v1(bucket, &args, &p)))
}

/// Continuation tokens are opaque to clients: the last key returned, base64url-encoded.
fn encode_token(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(marker.as_bytes())
}

fn decode_token(token: &str) -> Result<String, S3Error> {
    URL_SAFE_NO_PAD.decode(token.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
        S3Error::invalid_argument("The continuation token provided is incorrect")
            .detail("ArgumentName", "continuation-token")
    })
}

pub async fn list_v2(ctx: &Ctx, bucket: &str, args: ListObjectsV2Args) -> Result<Resp, S3Error> {
    let after = match &args.continuation_token {
        Some(t) => Some(decode_token(t)?),
        None => args.start_after.clone(),
    };
    let q = query(&args.prefix, &args.delimiter, after, args.max_keys);
    let page = ctx.engine.list_objects(bucket, q).await.map_err(engine_err)?;
    let next = page.next_marker.as_deref().map(encode_token);
    let p = to_page(ctx, page.items, page.truncated, next);
    Ok(xml(StatusCode::OK, x::list_objects_v2(bucket, &args, &p)))
}

/// Until versioning exists every object has one version, `null`, and it is the latest.
pub async fn list_versions(ctx: &Ctx, bucket: &str, args: ListVersionsArgs) -> Result<Resp, S3Error> {
    let q = query(&args.prefix, &args.delimiter, args.key_marker.clone(), args.max_keys);
    let page = ctx.engine.list_objects(bucket, q).await.map_err(engine_err)?;
    let mut vp = VersionsPage { is_truncated: page.truncated, ..Default::default() };
    if page.truncated {
        vp.next_key_marker = page.next_marker.clone();
        vp.next_version_id_marker = Some("null".into());
    }
    for it in page.items {
        match it {
            ListItem::Object(o) => vp.versions.push(VersionEntry {
                key: o.key,
                version_id: "null".into(),
                is_latest: true,
                is_delete_marker: false,
                last_modified: ms_to_time(o.mtime_ms),
                etag: o.etag,
                size: o.size,
                storage_class: None,
                owner: Some(ctx.owner.clone()),
            }),
            ListItem::CommonPrefix(p) => vp.common_prefixes.push(p),
        }
    }
    Ok(xml(StatusCode::OK, x::list_versions(bucket, &args, &vp)))
}
