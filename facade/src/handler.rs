//! One request, start to finish: authenticate, route to an `Endpoint`, run its handler,
//! render errors as S3 XML with a request id.

use crate::access::Caller;
use crate::access::Facts;
use crate::admin::AdminRoute;
use crate::body::{full, RespBody};
use crate::metrics::Op;
use crate::ops::{bucket, copy, delete, list, multipart, object, policy, post, ConnInfo, Ctx, Req, Resp};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use s3::auth::sigv4::{self, SignedRequest};
use s3::error::S3Error;
use s3::router::{self, Endpoint, Query};
use std::net::SocketAddr;
use std::time::SystemTime;

/// The root user's key pair.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

pub struct Server {
    pub ctx: Ctx,
    pub creds: Credentials,
    pub domain: Option<String>,
    pub probe: crate::probe::ProbeState,
    /// Log one line per request (target `tessera::access`).
    pub access_log: bool,
}

fn request_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// Answer one request from `peer` on core `core` (whose counters it adds to), and log it
/// (`tessera::access`) unless the access log is off.
pub async fn handle(srv: &Server, core: usize, peer: SocketAddr, req: Request<Incoming>) -> Response<RespBody> {
    let rid = request_id();
    let started = std::time::Instant::now();
    let Some(metrics) = srv.probe.metrics.get(core) else {
        return error_response(&S3Error::internal("no counters for this core"), &rid, true);
    };
    let _in_flight = crate::metrics::Raised::new(&metrics.requests_in_flight);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The declared body size (the decoded size for aws-chunked uploads); the socket's own
    // byte counts are in /metrics.
    let bytes_in = req
        .headers()
        .get("x-amz-decoded-content-length")
        .or_else(|| req.headers().get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (op, mut resp) = match crate::probe::route(req.method(), req.uri().path(), req.uri().query(), req.headers()) {
        Some(ep) => (ep.op(), crate::probe::serve(srv, ep, req.headers()).await),
        None => serve_s3(srv, req, &rid).await,
    };
    set_request_id(&mut resp, &rid);
    resp.headers_mut().insert(http::header::SERVER, HeaderValue::from_static("Tessera"));
    let took = started.elapsed();
    let status = resp.status().as_u16();
    metrics.request(op, status, took);
    if srv.access_log {
        use hyper::body::Body as _;
        let bytes_out = resp.body().size_hint().exact().unwrap_or(0);
        tracing::info!(
            target: "tessera::access",
            request_id = %rid,
            remote = %peer,
            method = %method,
            path = %path,
            operation = op.name(),
            status,
            bytes_in,
            bytes_out,
            duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        );
    }
    resp
}

/// An S3 (or admin) request: its operation, once known, and its response.
async fn serve_s3(srv: &Server, req: Request<Incoming>, rid: &str) -> (Op, Response<RespBody>) {
    let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
        || req.headers().get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    let expects_continue =
        req.headers().get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut op = Op::UNROUTED;
    let mut resp = match dispatch(srv, req, &mut op).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{} -> {} {}", op.name(), e.status(), e.code.as_str());
            error_response(&e, rid, has_body)
        }
    };
    // `Expect: 100-continue` on an empty body: hyper answers with the final status and no
    // interim 100 (allowed by RFC 9110). botocore (the AWS CLI, boto3) then keeps that final
    // status line on the connection object and, if its next request on the same connection
    // also expects 100-continue, takes the next response's real status line for a header and
    // waits for its read timeout (60 s). Closing the connection resets botocore's state.
    if expects_continue && !has_body {
        resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    (op, resp)
}

/// An S3 error as its HTTP response. `has_body`: the request's body may be unread (and a client
/// that sent `Expect: 100-continue` may still send it), so the connection is closed and those
/// bytes are never taken for a request.
fn error_response(e: &S3Error, rid: &str, has_body: bool) -> Response<RespBody> {
    let mut r = Response::new(full(e.to_xml(rid)));
    *r.status_mut() = e.status();
    if e.code.has_body() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    }
    if has_body {
        r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    for (k, v) in &e.details {
        if *k == "ETag" {
            if let Ok(v) = HeaderValue::from_str(v) {
                r.headers_mut().insert(http::header::ETAG, v);
            }
        }
    }
    r
}

fn set_request_id(resp: &mut Response<RespBody>, rid: &str) {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert("x-amz-request-id", v.clone());
        resp.headers_mut().insert("x-amz-id-2", v);
    }
}

fn slow_down_error(why: &str) -> S3Error {
    S3Error::with_message(s3::error::S3ErrorCode::SlowDown, format!("Please reduce your request rate: {why}."))
}

/// A request id and the XML body of a 503 SlowDown, for answers written before hyper serves the
/// connection (too many connections on a core).
pub fn slow_down_xml(why: &str) -> (String, String) {
    let rid = request_id();
    let body = slow_down_error(why).to_xml(&rid);
    (rid, body)
}

/// The answer to a request refused before it is read because its core is at a bound (requests
/// in flight): 503 SlowDown, and the connection closed (its body, if any, is never read).
pub fn slow_down() -> Response<RespBody> {
    let rid = request_id();
    let e = slow_down_error("this server's core has too many requests in flight");
    let mut r = error_response(&e, &rid, true);
    set_request_id(&mut r, &rid);
    r.headers_mut().insert(http::header::SERVER, HeaderValue::from_static("Tessera"));
    r
}

/// Authenticate, route and run one S3 (or admin) request; `op` is set as soon as the
/// operation is known.
async fn dispatch(srv: &Server, req: Request<Incoming>, op: &mut Op) -> Result<Resp, S3Error> {
    let (parts, body) = req.into_parts();
    let conn = parts.extensions.get::<ConnInfo>().copied().unwrap_or_default();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let signed =
        SignedRequest { method: &parts.method, path: &path, query: raw_query.as_deref(), headers: &parts.headers };
    // The root key from the credentials; any other from the users in force (an active key of
    // an active user), so a key disabled or deleted is refused by the next request.
    let secret_for = |ak: &str| {
        if ak == srv.creds.access_key {
            Some(srv.creds.secret_key.clone())
        } else {
            srv.ctx.users.secret_for(ak)
        }
    };
    // A browser-based upload authenticates by its form's signed policy, not by a signature
    // over the request; it is routed first and goes to the one operation that reads a form.
    if post::is_form_post(&parts.method, &parts.headers) {
        return match router::parse(&parts.method, &path, raw_query.as_deref(), &parts.headers, srv.domain.as_deref())? {
            Endpoint::PostObject { bucket } => {
                post::post_object(&srv.ctx, &parts.headers, body, &bucket, conn, &srv.creds.access_key, secret_for)
                    .await
            }
            _ => Err(S3Error::with_message(
                s3::error::S3ErrorCode::MethodNotAllowed,
                "A multipart/form-data POST is an upload to a bucket: POST /bucket with no query.",
            )),
        };
    }
    let auth = if s3::auth::sigv2::is_v2(&parts.headers, raw_query.as_deref()) {
        let resource_path = match router::virtual_hosted_bucket(&parts.headers, srv.domain.as_deref()) {
            Some(bucket) => format!("/{bucket}{path}"),
            None => path.clone(),
        };
        let v2 = s3::auth::sigv2::V2Request {
            method: &parts.method,
            resource_path: &resource_path,
            query: raw_query.as_deref(),
            headers: &parts.headers,
        };
        s3::auth::sigv2::authenticate_v2(&v2, SystemTime::now(), secret_for)?
    } else {
        sigv4::authenticate(&signed, SystemTime::now(), secret_for)?
    };
    let caller = if auth.is_anonymous() {
        Caller::Anonymous
    } else if auth.access_key == srv.creds.access_key {
        Caller::Root
    } else {
        // Checked again after the signature: a key deleted in between is refused.
        Caller::User(srv.ctx.users.signer(&auth.access_key).ok_or_else(|| {
            S3Error::new(s3::error::S3ErrorCode::InvalidAccessKeyId).detail("AWSAccessKeyId", &auth.access_key)
        })?)
    };
    // The admin API, before the S3 router (bucket names cannot contain `_`, so it shadows no
    // bucket; on a virtual-hosted-style host the path stays an object key). Only the root
    // user's: no policy reaches it.
    if let Some(route) = crate::admin::route(&parts.method, &path, &parts.headers, srv.domain.as_deref()) {
        if !matches!(caller, Caller::Root) {
            return Err(S3Error::access_denied("The admin API needs the root user's signature."));
        }
        return match route {
            AdminRoute::Status => {
                *op = Op::ADMIN_STATUS;
                let st = srv.ctx.engine.status().await.map_err(crate::engine_error::to_s3)?;
                Ok(crate::users_admin::json(crate::admin::to_json(&crate::admin::StatusReport::from(&st))))
            }
            AdminRoute::Replace => {
                *op = Op::ADMIN_REPLACE;
                replace_device(srv, raw_query.as_deref()).await
            }
            AdminRoute::Users(u) => {
                *op = Op::ADMIN_USERS;
                let query = Query::parse(raw_query.as_deref())?;
                crate::users_admin::serve(&srv.ctx, u, &query, &parts, &auth, body).await
            }
            AdminRoute::Unknown => Err(S3Error::with_message(
                s3::error::S3ErrorCode::MethodNotAllowed,
                format!("{} {path} is no admin call (see `tessera --help`)", parts.method),
            )),
        };
    }
    s3::unhonoured::refuse_unhonoured(&parts.headers)?;
    let ep = router::parse(&parts.method, &path, raw_query.as_deref(), &parts.headers, srv.domain.as_deref())?;
    *op = Op::of(&ep);
    let query = Query::parse(raw_query.as_deref())?;
    tracing::debug!("{} {} -> {} payload={:?}", parts.method, path, ep.name(), auth.payload_mode);
    let facts = Facts { query: &query, headers: &parts.headers, source_ip: conn.peer, secure_transport: conn.tls };
    for access in ep.accesses().iter().flatten() {
        srv.ctx.policies.authorize(&caller, access, &facts)?;
    }
    let req = Req { parts, body, auth, query, conn, caller };
    let ctx = &srv.ctx;
    match ep {
        Endpoint::ListBuckets => bucket::list_buckets(ctx).await,
        Endpoint::CreateBucket { bucket } => bucket::create_bucket(ctx, req, &bucket).await,
        Endpoint::HeadBucket { bucket } => bucket::head_bucket(ctx, &bucket).await,
        Endpoint::DeleteBucket { bucket } => bucket::delete_bucket(ctx, &bucket).await,
        Endpoint::GetBucketLocation { bucket } => bucket::location(ctx, &bucket).await,
        Endpoint::GetBucketVersioning { bucket } => bucket::versioning(ctx, &bucket).await,
        Endpoint::ListObjects { bucket, args } => list::list_v1(ctx, &bucket, args).await,
        Endpoint::ListObjectsV2 { bucket, args } => list::list_v2(ctx, &bucket, args).await,
        Endpoint::ListObjectVersions { bucket, args } => list::list_versions(ctx, &bucket, args).await,
        Endpoint::ListMultipartUploads { bucket, args } => multipart::list_uploads(ctx, &bucket, args).await,
        Endpoint::PutBucketPolicy { bucket } => policy::put(ctx, req, &bucket).await,
        Endpoint::GetBucketPolicy { bucket } => policy::get(ctx, &bucket).await,
        Endpoint::DeleteBucketPolicy { bucket } => policy::delete(ctx, &bucket).await,
        // Reached only by a POST that is not multipart/form-data (a form goes first, above).
        Endpoint::PostObject { .. } => Err(S3Error::with_message(
            s3::error::S3ErrorCode::MalformedPOSTRequest,
            "A POST upload's body must be multipart/form-data.",
        )),
        Endpoint::DeleteObjects { bucket } => delete::delete_objects(ctx, req, &bucket).await,
        Endpoint::PutObject { bucket, key } => object::put_object(ctx, req, &bucket, &key).await,
        Endpoint::CopyObject { bucket, key, source } => copy::copy_object(ctx, req, &bucket, &key, source).await,
        Endpoint::GetObject { bucket, key, version_id, part_number } => {
            check_null_version(&version_id)?;
            object::get_object(ctx, req, &bucket, &key, part_number).await
        }
        Endpoint::HeadObject { bucket, key, version_id, part_number } => {
            check_null_version(&version_id)?;
            object::head_object(ctx, req, &bucket, &key, part_number).await
        }
        Endpoint::DeleteObject { bucket, key, version_id } => {
            delete::delete_object(ctx, req, &bucket, &key, version_id).await
        }
        Endpoint::CreateMultipartUpload { bucket, key } => multipart::create(ctx, req, &bucket, &key).await,
        Endpoint::UploadPart { bucket, key, upload_id, part_number } => {
            multipart::upload_part(ctx, req, &bucket, &key, &upload_id, part_number).await
        }
        Endpoint::UploadPartCopy { bucket, key, upload_id, part_number, source } => {
            copy::upload_part_copy(ctx, req, &bucket, &key, &upload_id, part_number, source).await
        }
        Endpoint::CompleteMultipartUpload { bucket, key, upload_id } => {
            multipart::complete(ctx, req, &bucket, &key, &upload_id).await
        }
        Endpoint::AbortMultipartUpload { bucket, key, upload_id } => {
            multipart::abort(ctx, &bucket, &key, &upload_id).await
        }
        Endpoint::ListParts { bucket, key, upload_id, max_parts, part_number_marker } => {
            multipart::list_parts(ctx, &bucket, &key, &upload_id, max_parts, part_number_marker).await
        }
        Endpoint::GetObjectTagging { bucket, key } => object::get_tagging(ctx, &bucket, &key).await,
        Endpoint::NotImplemented(what) => Err(S3Error::with_message(
            s3::error::S3ErrorCode::NotImplemented,
            format!("{what} is not implemented by Tessera"),
        )),
    }
}

/// `POST /_tessera/device/replace?device=N&path=P[&force=true]`: see `Engine::replace_device`.
async fn replace_device(srv: &Server, raw_query: Option<&str>) -> Result<Resp, S3Error> {
    let q = Query::parse(raw_query)?;
    let device = q.get("device").ok_or_else(|| S3Error::invalid_argument("device=N is required"))?;
    let device = crate::admin::parse_device(device).map_err(S3Error::invalid_argument)?;
    let path =
        q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| S3Error::invalid_argument("path=P is required"))?;
    let path = std::path::PathBuf::from(path);
    if !path.is_absolute() {
        return Err(S3Error::invalid_argument(format!("path {} must be absolute", path.display())));
    }
    let force = match q.get("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(S3Error::invalid_argument(format!("force={other}: give true or false"))),
    };
    let report = srv.ctx.engine.replace_device(device, &path, force).await.map_err(|e| match e {
        // A refusal (bad slot, non-empty or foreign device): the operator's to fix.
        engine::Error::Storage(engine::error::StorageError::Layout(m))
        | engine::Error::Storage(engine::error::StorageError::InUse(m))
        | engine::Error::Storage(engine::error::StorageError::Io(m)) => S3Error::invalid_argument(m),
        engine::Error::Storage(engine::error::StorageError::Os(e)) => S3Error::invalid_argument(e.to_string()),
        e => crate::engine_error::to_s3(e),
    })?;
    let mut r = Response::new(full(crate::admin::to_json(&crate::admin::ReplaceReport::from(&report))));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn check_null_version(v: &Option<String>) -> Result<(), S3Error> {
    match v.as_deref() {
        None | Some("null") => Ok(()),
        Some(_) => Err(S3Error::new(s3::error::S3ErrorCode::NoSuchVersion)),
    }
}
