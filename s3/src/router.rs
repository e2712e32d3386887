//! Turns method + path + query + headers into one [`Endpoint`]: the table of contents of
//! the S3 API. Path-style (`/bucket/key`) and virtual-hosted-style (`bucket.<domain>`).

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

use crate::error::{S3Error, S3ErrorCode};

/// S3's limit on key length, in bytes of UTF-8 (the rule lives in `tessera-names`, which the
/// engine applies too).
pub use names::MAX_KEY_BYTES;
/// S3's part numbers run from 1 to this, inclusive.
pub use names::MAX_PART_NUMBER;
/// The most keys (or uploads, or parts) one listing page returns.
pub const MAX_LIST_KEYS: usize = 1000;

/// Subresources S3 knows that Tessera does not serve: answered with NotImplemented,
/// never with a wrong success.
const UNSUPPORTED_SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "website",
];

/// `x-amz-copy-source`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// Arguments of ListObjects (v1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListObjectsArgs {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub marker: Option<String>,
    pub max_keys: usize,
    /// `encoding-type=url`.
    pub url_encode: bool,
}

/// Arguments of ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListObjectsV2Args {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub continuation_token: Option<String>,
    pub start_after: Option<String>,
    pub max_keys: usize,
    pub url_encode: bool,
    pub fetch_owner: bool,
}

/// Arguments of ListObjectVersions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListVersionsArgs {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max_keys: usize,
    pub url_encode: bool,
}

/// Arguments of ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListUploadsArgs {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
    pub url_encode: bool,
}

/// One S3 operation and its addressing arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket {
        bucket: String,
    },
    HeadBucket {
        bucket: String,
    },
    DeleteBucket {
        bucket: String,
    },
    GetBucketLocation {
        bucket: String,
    },
    GetBucketVersioning {
        bucket: String,
    },
    ListObjects {
        bucket: String,
        args: ListObjectsArgs,
    },
    ListObjectsV2 {
        bucket: String,
        args: ListObjectsV2Args,
    },
    ListObjectVersions {
        bucket: String,
        args: ListVersionsArgs,
    },
    ListMultipartUploads {
        bucket: String,
        args: ListUploadsArgs,
    },
    PutBucketPolicy {
        bucket: String,
    },
    GetBucketPolicy {
        bucket: String,
    },
    DeleteBucketPolicy {
        bucket: String,
    },
    /// A browser-based upload: a multipart/form-data body whose signed policy authenticates it.
    PostObject {
        bucket: String,
    },
    DeleteObjects {
        bucket: String,
    },
    PutObject {
        bucket: String,
        key: String,
    },
    CopyObject {
        bucket: String,
        key: String,
        source: CopySource,
    },
    GetObject {
        bucket: String,
        key: String,
        version_id: Option<String>,
        part_number: Option<u32>,
    },
    HeadObject {
        bucket: String,
        key: String,
        version_id: Option<String>,
        part_number: Option<u32>,
    },
    DeleteObject {
        bucket: String,
        key: String,
        version_id: Option<String>,
    },
    CreateMultipartUpload {
        bucket: String,
        key: String,
    },
    UploadPart {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: u32,
    },
    UploadPartCopy {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: u32,
        source: CopySource,
    },
    CompleteMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    AbortMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    ListParts {
        bucket: String,
        key: String,
        upload_id: String,
        max_parts: usize,
        part_number_marker: Option<u32>,
    },
    GetObjectTagging {
        bucket: String,
        key: String,
    },
    /// A known S3 operation Tessera does not implement, named for the error message.
    NotImplemented(String),
}

impl Endpoint {
    /// The S3 operation's name, for logs and metrics.
    pub fn name(&self) -> &str {
        match self {
            Endpoint::ListBuckets => "ListBuckets",
            Endpoint::CreateBucket { .. } => "CreateBucket",
            Endpoint::HeadBucket { .. } => "HeadBucket",
            Endpoint::DeleteBucket { .. } => "DeleteBucket",
            Endpoint::GetBucketLocation { .. } => "GetBucketLocation",
            Endpoint::GetBucketVersioning { .. } => "GetBucketVersioning",
            Endpoint::ListObjects { .. } => "ListObjects",
            Endpoint::ListObjectsV2 { .. } => "ListObjectsV2",
            Endpoint::ListObjectVersions { .. } => "ListObjectVersions",
            Endpoint::ListMultipartUploads { .. } => "ListMultipartUploads",
            Endpoint::PutBucketPolicy { .. } => "PutBucketPolicy",
            Endpoint::GetBucketPolicy { .. } => "GetBucketPolicy",
            Endpoint::DeleteBucketPolicy { .. } => "DeleteBucketPolicy",
            Endpoint::PostObject { .. } => "PostObject",
            Endpoint::DeleteObjects { .. } => "DeleteObjects",
            Endpoint::PutObject { .. } => "PutObject",
            Endpoint::CopyObject { .. } => "CopyObject",
            Endpoint::GetObject { .. } => "GetObject",
            Endpoint::HeadObject { .. } => "HeadObject",
            Endpoint::DeleteObject { .. } => "DeleteObject",
            Endpoint::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            Endpoint::UploadPart { .. } => "UploadPart",
            Endpoint::UploadPartCopy { .. } => "UploadPartCopy",
            Endpoint::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            Endpoint::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            Endpoint::ListParts { .. } => "ListParts",
            Endpoint::GetObjectTagging { .. } => "GetObjectTagging",
            Endpoint::NotImplemented(name) => name,
        }
    }

    /// What the request must be allowed, as access policies name it: the action and the
    /// bucket and key it acts on, and for a copy the read of its source too. `None` for what
    /// needs no policy decision (a refusal that is answered anyway). A POST upload's key is
    /// known only from its form: its check names the key there.
    pub fn accesses<'e>(&'e self) -> [Option<Access<'e>>; 2] {
        use Endpoint as E;
        let on = |action: &'static str, bucket: &'e str| Some(Access { action, bucket: Some(bucket), key: None });
        let obj = |action: &'static str, bucket: &'e str, key: &'e str| Access {
            action,
            bucket: Some(bucket),
            key: Some(key),
        };
        match self {
            E::ListBuckets => [Some(Access { action: "s3:ListAllMyBuckets", bucket: None, key: None }), None],
            E::CreateBucket { bucket } => [on("s3:CreateBucket", bucket), None],
            E::HeadBucket { bucket } => [on("s3:ListBucket", bucket), None],
            E::DeleteBucket { bucket } => [on("s3:DeleteBucket", bucket), None],
            E::GetBucketLocation { bucket } => [on("s3:GetBucketLocation", bucket), None],
            E::GetBucketVersioning { bucket } => [on("s3:GetBucketVersioning", bucket), None],
            E::ListObjects { bucket, .. } | E::ListObjectsV2 { bucket, .. } => [on("s3:ListBucket", bucket), None],
            E::ListObjectVersions { bucket, .. } => [on("s3:ListBucketVersions", bucket), None],
            E::ListMultipartUploads { bucket, .. } => [on("s3:ListBucketMultipartUploads", bucket), None],
            E::PutBucketPolicy { bucket } => [on("s3:PutBucketPolicy", bucket), None],
            E::GetBucketPolicy { bucket } => [on("s3:GetBucketPolicy", bucket), None],
            E::DeleteBucketPolicy { bucket } => [on("s3:DeleteBucketPolicy", bucket), None],
            E::PostObject { bucket } => [on("s3:PutObject", bucket), None],
            // Each key of the list is checked as a DeleteObject of its own (`ops::delete`),
            // each refusal an error entry of the result, as S3 answers.
            E::DeleteObjects { .. } => [None, None],
            E::PutObject { bucket, key }
            | E::CreateMultipartUpload { bucket, key }
            | E::UploadPart { bucket, key, .. }
            | E::CompleteMultipartUpload { bucket, key, .. } => [Some(obj("s3:PutObject", bucket, key)), None],
            E::CopyObject { bucket, key, source } | E::UploadPartCopy { bucket, key, source, .. } => {
                [Some(obj("s3:PutObject", bucket, key)), Some(obj("s3:GetObject", &source.bucket, &source.key))]
            }
            E::GetObject { bucket, key, .. } | E::HeadObject { bucket, key, .. } => {
                [Some(obj("s3:GetObject", bucket, key)), None]
            }
            E::DeleteObject { bucket, key, .. } => [Some(obj("s3:DeleteObject", bucket, key)), None],
            E::AbortMultipartUpload { bucket, key, .. } => [Some(obj("s3:AbortMultipartUpload", bucket, key)), None],
            E::ListParts { bucket, key, .. } => [Some(obj("s3:ListMultipartUploadParts", bucket, key)), None],
            E::GetObjectTagging { bucket, key } => [Some(obj("s3:GetObjectTagging", bucket, key)), None],
            E::NotImplemented(_) => [None, None],
        }
    }
}

/// One thing a request does, as a policy sees it (`Endpoint::accesses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access<'a> {
    /// The S3 action, e.g. `s3:GetObject`.
    pub action: &'static str,
    /// `None` only for ListBuckets (its resource is `*`).
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// Decoded query parameters, in order; the first occurrence of a name wins.
/// `+` is kept literally (SDKs send spaces as `%20`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, S3Error> {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(k)?, decode(v)?));
        }
        Ok(Query(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }

    fn max(&self, name: &str) -> Result<usize, S3Error> {
        match self.get(name) {
            None => Ok(MAX_LIST_KEYS),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| (n as u64).min(MAX_LIST_KEYS as u64) as usize)
                .ok_or_else(|| {
                    S3Error::invalid_argument(format!("Provided {name} not an integer or within integer range"))
                        .detail("ArgumentName", name)
                        .detail("ArgumentValue", v)
                }),
        }
    }

    fn url_encode(&self) -> Result<bool, S3Error> {
        match self.get("encoding-type") {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("url") => Ok(true),
            Some(v) => Err(S3Error::invalid_argument("Invalid Encoding Method specified in Request")
                .detail("ArgumentName", "encoding-type")
                .detail("ArgumentValue", v)),
        }
    }

    fn unsupported(&self) -> Option<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).find(|k| UNSUPPORTED_SUBRESOURCES.contains(k))
    }
}

fn decode(s: &str) -> Result<String, S3Error> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| S3Error::invalid_argument("URL-decoded text is not valid UTF-8"))
}

/// Parses a part number: an integer in 1..=10000.
pub fn parse_part_number(value: &str) -> Result<u32, S3Error> {
    value.parse::<u32>().ok().filter(|n| (1..=MAX_PART_NUMBER).contains(n)).ok_or_else(|| {
        S3Error::invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
            .detail("ArgumentName", "partNumber")
            .detail("ArgumentValue", value)
    })
}

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=id]`, URL-encoded.
pub fn parse_copy_source(value: &str) -> Result<CopySource, S3Error> {
    let invalid =
        || S3Error::invalid_argument("Invalid copy source object key").detail("ArgumentName", "x-amz-copy-source");
    let (path, query) = match value.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (value, None),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = path.split_once('/').ok_or_else(invalid)?;
    let bucket = decode(bucket)?;
    let key = decode(key)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(invalid());
    }
    check_key(&key)?;
    let version_id = match query {
        None => None,
        Some(q) => {
            let q = Query::parse(Some(q))?;
            match q.get("versionId") {
                Some(v) => Some(v.to_string()),
                None => return Err(invalid()),
            }
        }
    };
    Ok(CopySource { bucket, key, version_id })
}

fn check_key(key: &str) -> Result<(), S3Error> {
    names::check_key(key).map_err(|e| {
        S3Error::new(S3ErrorCode::KeyTooLongError)
            .detail("Size", e.len_bytes.to_string())
            .detail("MaxSizeAllowed", MAX_KEY_BYTES.to_string())
    })?;
    // Every key must come back intact in ListObjects and DeleteObjects XML.
    names::check_key_characters(key)
        .map_err(|e| S3Error::invalid_argument(format!("{e}")).detail("ArgumentName", "key"))
}

/// S3's bucket naming rules (`tessera-names`, which the engine applies too): 3-63 characters
/// of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit,
/// no `..`, not shaped like an IP address, no reserved prefix or suffix. The message names the
/// rule the name breaks.
pub fn validate_bucket_name(name: &str) -> Result<(), S3Error> {
    names::check_bucket_name(name).map_err(|why| {
        S3Error::with_message(S3ErrorCode::InvalidBucketName, format!("The specified bucket is not valid: {why}."))
            .detail("BucketName", name)
    })
}

/// The bucket a virtual-hosted-style request names in its Host header, if it is one.
pub fn virtual_hosted_bucket(headers: &HeaderMap, domain: Option<&str>) -> Option<String> {
    bucket_from_host(headers.get(http::header::HOST).and_then(|h| h.to_str().ok()), domain)
}

/// Finds the bucket named by a virtual-hosted-style Host (`bucket.<domain>[:port]`).
fn bucket_from_host(host: Option<&str>, domain: Option<&str>) -> Option<String> {
    let (host, domain) = (host?, domain?);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    let prefix = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
    (!prefix.is_empty()).then(|| prefix.to_string())
}

fn not_implemented(name: impl Into<String>) -> Endpoint {
    Endpoint::NotImplemented(name.into())
}

/// Routes one request. `path` is the raw (still percent-encoded) URI path, `query` the raw
/// query string, `domain` the server's base domain for virtual-hosted-style requests.
pub fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    domain: Option<&str>,
) -> Result<Endpoint, S3Error> {
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok());
    let copy_source = match headers.get("x-amz-copy-source") {
        None => None,
        Some(v) => Some(parse_copy_source(
            v.to_str().map_err(|_| S3Error::invalid_argument("x-amz-copy-source is not valid ASCII"))?,
        )?),
    };
    let q = Query::parse(query)?;
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match bucket_from_host(host, domain) {
        Some(bucket) => (Some(bucket), decode(path)?),
        None => match path.split_once('/') {
            Some((b, k)) => (Some(decode(b)?), decode(k)?),
            None if path.is_empty() => (None, String::new()),
            None => (Some(decode(path)?), String::new()),
        },
    };
    let Some(bucket) = bucket.filter(|b| !b.is_empty()) else {
        return if *method == Method::GET {
            Ok(Endpoint::ListBuckets)
        } else {
            Err(S3Error::new(S3ErrorCode::MethodNotAllowed))
        };
    };
    if key.is_empty() {
        bucket_endpoint(method, bucket, &q)
    } else {
        check_key(&key)?;
        object_endpoint(method, bucket, key, &q, copy_source)
    }
}

fn bucket_endpoint(method: &Method, bucket: String, q: &Query) -> Result<Endpoint, S3Error> {
    if q.has("policy") {
        return Ok(match *method {
            Method::PUT => Endpoint::PutBucketPolicy { bucket },
            Method::GET => Endpoint::GetBucketPolicy { bucket },
            Method::DELETE => Endpoint::DeleteBucketPolicy { bucket },
            _ => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
        });
    }
    if let Some(sub) = q.unsupported() {
        return Ok(not_implemented(format!("{method} ?{sub}")));
    }
    let prefix = q.string("prefix").unwrap_or_default();
    let delimiter = q.non_empty("delimiter");
    Ok(match *method {
        Method::GET if q.has("location") => Endpoint::GetBucketLocation { bucket },
        Method::GET if q.has("versioning") => Endpoint::GetBucketVersioning { bucket },
        Method::GET if q.has("versions") => Endpoint::ListObjectVersions {
            bucket,
            args: ListVersionsArgs {
                prefix,
                delimiter,
                key_marker: q.non_empty("key-marker"),
                version_id_marker: q.non_empty("version-id-marker"),
                max_keys: q.max("max-keys")?,
                url_encode: q.url_encode()?,
            },
        },
        Method::GET if q.has("uploads") => Endpoint::ListMultipartUploads {
            bucket,
            args: ListUploadsArgs {
                prefix,
                delimiter,
                key_marker: q.non_empty("key-marker"),
                upload_id_marker: q.non_empty("upload-id-marker"),
                max_uploads: q.max("max-uploads")?,
                url_encode: q.url_encode()?,
            },
        },
        Method::GET => match q.get("list-type") {
            Some("2") => Endpoint::ListObjectsV2 {
                bucket,
                args: ListObjectsV2Args {
                    prefix,
                    delimiter,
                    continuation_token: q.string("continuation-token"),
                    start_after: q.non_empty("start-after"),
                    max_keys: q.max("max-keys")?,
                    url_encode: q.url_encode()?,
                    fetch_owner: q.get("fetch-owner") == Some("true"),
                },
            },
            Some(other) => {
                return Err(S3Error::invalid_argument("Invalid list type")
                    .detail("ArgumentName", "list-type")
                    .detail("ArgumentValue", other))
            }
            None => Endpoint::ListObjects {
                bucket,
                args: ListObjectsArgs {
                    prefix,
                    delimiter,
                    marker: q.non_empty("marker"),
                    max_keys: q.max("max-keys")?,
                    url_encode: q.url_encode()?,
                },
            },
        },
        Method::HEAD => Endpoint::HeadBucket { bucket },
        Method::PUT if q.has("versioning") => not_implemented("PutBucketVersioning"),
        Method::PUT => Endpoint::CreateBucket { bucket },
        Method::DELETE => Endpoint::DeleteBucket { bucket },
        Method::POST if q.has("delete") => Endpoint::DeleteObjects { bucket },
        Method::POST if q.is_empty() => Endpoint::PostObject { bucket },
        Method::POST => not_implemented("this POST on a bucket"),
        _ => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
    })
}

fn object_endpoint(
    method: &Method,
    bucket: String,
    key: String,
    q: &Query,
    copy_source: Option<CopySource>,
) -> Result<Endpoint, S3Error> {
    // Tags are not stored yet, so every object's tag set is empty: reading it is answered
    // truthfully (tools such as `aws s3 cp` read tags before a multipart copy).
    if *method == Method::GET && q.has("tagging") {
        return Ok(Endpoint::GetObjectTagging { bucket, key });
    }
    if let Some(sub) = q.unsupported() {
        return Ok(not_implemented(format!("{method} ?{sub}")));
    }
    let version_id = q.non_empty("versionId");
    let part_number = q.get("partNumber").map(parse_part_number).transpose()?;
    let upload_id = match q.get("uploadId") {
        Some("") => return Err(S3Error::invalid_argument("uploadId must not be empty")),
        other => other.map(str::to_string),
    };
    Ok(match (method.clone(), upload_id) {
        (Method::GET, Some(upload_id)) => Endpoint::ListParts {
            bucket,
            key,
            upload_id,
            max_parts: q.max("max-parts")?,
            part_number_marker: match q.get("part-number-marker") {
                None | Some("") => None,
                Some(v) => Some(
                    v.parse::<u32>().map_err(|_| S3Error::invalid_argument("part-number-marker must be an integer"))?,
                ),
            },
        },
        (Method::GET, None) => Endpoint::GetObject { bucket, key, version_id, part_number },
        (Method::HEAD, None) => Endpoint::HeadObject { bucket, key, version_id, part_number },
        (Method::PUT, Some(upload_id)) => {
            let part_number = part_number.ok_or_else(|| {
                S3Error::invalid_argument("UploadPart needs partNumber with uploadId")
                    .detail("ArgumentName", "partNumber")
            })?;
            match copy_source {
                Some(source) => Endpoint::UploadPartCopy { bucket, key, upload_id, part_number, source },
                None => Endpoint::UploadPart { bucket, key, upload_id, part_number },
            }
        }
        (Method::PUT, None) => match copy_source {
            Some(source) => Endpoint::CopyObject { bucket, key, source },
            None => Endpoint::PutObject { bucket, key },
        },
        (Method::POST, None) if q.has("uploads") => Endpoint::CreateMultipartUpload { bucket, key },
        (Method::POST, Some(upload_id)) => Endpoint::CompleteMultipartUpload { bucket, key, upload_id },
        (Method::DELETE, Some(upload_id)) => Endpoint::AbortMultipartUpload { bucket, key, upload_id },
        (Method::DELETE, None) => Endpoint::DeleteObject { bucket, key, version_id },
        _ => return Err(S3Error::new(S3ErrorCode::MethodNotAllowed)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: Option<&str> = Some("s3.example.com");

    fn route_with(method: Method, uri: &str, extra: &[(&'static str, &str)]) -> Result<Endpoint, S3Error> {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "s3.example.com:9000".parse().expect("host"));
        for (k, v) in extra {
            headers.insert(*k, v.parse().expect("header"));
        }
        parse(&method, path, query, &headers, DOMAIN)
    }

    fn route(method: Method, uri: &str) -> Endpoint {
        route_with(method, uri, &[]).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn service_and_bucket_endpoints() {
        assert_eq!(route(Method::GET, "/"), Endpoint::ListBuckets);
        assert_eq!(route(Method::PUT, "/b1"), Endpoint::CreateBucket { bucket: s("b1") });
        assert_eq!(route(Method::HEAD, "/b1/"), Endpoint::HeadBucket { bucket: s("b1") });
        assert_eq!(route(Method::DELETE, "/b1"), Endpoint::DeleteBucket { bucket: s("b1") });
        assert_eq!(route(Method::GET, "/b1?location"), Endpoint::GetBucketLocation { bucket: s("b1") });
        assert_eq!(route(Method::GET, "/b1?versioning"), Endpoint::GetBucketVersioning { bucket: s("b1") });
        assert_eq!(route(Method::POST, "/b1?delete"), Endpoint::DeleteObjects { bucket: s("b1") });
        assert_eq!(route(Method::POST, "/b1"), Endpoint::PostObject { bucket: s("b1") });
    }

    #[test]
    fn listings_carry_their_arguments() {
        assert_eq!(
            route(Method::GET, "/b1?prefix=a%2Fb&delimiter=%2F&marker=m&max-keys=5000"),
            Endpoint::ListObjects {
                bucket: s("b1"),
                args: ListObjectsArgs {
                    prefix: s("a/b"),
                    delimiter: Some(s("/")),
                    marker: Some(s("m")),
                    max_keys: 1000,
                    url_encode: false
                }
            }
        );
        assert_eq!(
            route(
                Method::GET,
                "/b1?list-type=2&continuation-token=t&start-after=s&max-keys=2&encoding-type=url&fetch-owner=true"
            ),
            Endpoint::ListObjectsV2 {
                bucket: s("b1"),
                args: ListObjectsV2Args {
                    prefix: s(""),
                    delimiter: None,
                    continuation_token: Some(s("t")),
                    start_after: Some(s("s")),
                    max_keys: 2,
                    url_encode: true,
                    fetch_owner: true
                }
            }
        );
        assert!(matches!(
            route(Method::GET, "/b1?versions&key-marker=k&version-id-marker=v"),
            Endpoint::ListObjectVersions {
                args: ListVersionsArgs { key_marker: Some(_), version_id_marker: Some(_), .. },
                ..
            }
        ));
        assert!(matches!(
            route(Method::GET, "/b1?uploads&max-uploads=3"),
            Endpoint::ListMultipartUploads { args: ListUploadsArgs { max_uploads: 3, .. }, .. }
        ));
        for bad in ["/b1?max-keys=-1", "/b1?max-keys=x", "/b1?encoding-type=base64", "/b1?list-type=3"] {
            assert_eq!(route_with(Method::GET, bad, &[]).expect_err(bad).code, S3ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn object_endpoints_decode_keys() {
        assert_eq!(
            route(Method::PUT, "/b1/dir/a%20b%2Bc%2Fd"),
            Endpoint::PutObject { bucket: s("b1"), key: s("dir/a b+c/d") }
        );
        assert_eq!(
            route(Method::GET, "/b1/k?versionId=v1&partNumber=2"),
            Endpoint::GetObject { bucket: s("b1"), key: s("k"), version_id: Some(s("v1")), part_number: Some(2) }
        );
        assert_eq!(
            route(Method::HEAD, "/b1/k"),
            Endpoint::HeadObject { bucket: s("b1"), key: s("k"), version_id: None, part_number: None }
        );
        assert_eq!(
            route(Method::DELETE, "/b1/k"),
            Endpoint::DeleteObject { bucket: s("b1"), key: s("k"), version_id: None }
        );
        // Trailing slash is part of the key.
        assert_eq!(route(Method::PUT, "/b1/dir/"), Endpoint::PutObject { bucket: s("b1"), key: s("dir/") });
    }

    #[test]
    fn copy_object_and_part_copy_use_the_copy_source_header() {
        let src = [("x-amz-copy-source", "/src/a%20b?versionId=v")];
        let source = CopySource { bucket: s("src"), key: s("a b"), version_id: Some(s("v")) };
        assert_eq!(
            route_with(Method::PUT, "/b1/k", &src).expect("copy"),
            Endpoint::CopyObject { bucket: s("b1"), key: s("k"), source: source.clone() }
        );
        assert_eq!(
            route_with(Method::PUT, "/b1/k?partNumber=3&uploadId=u", &src).expect("part copy"),
            Endpoint::UploadPartCopy { bucket: s("b1"), key: s("k"), upload_id: s("u"), part_number: 3, source }
        );
        let bad = [("x-amz-copy-source", "nobucketorkey")];
        assert_eq!(route_with(Method::PUT, "/b1/k", &bad).expect_err("bad").code, S3ErrorCode::InvalidArgument);
    }

    #[test]
    fn multipart_endpoints() {
        let (b, k, u) = (s("b1"), s("k"), s("u1"));
        assert_eq!(
            route(Method::POST, "/b1/k?uploads"),
            Endpoint::CreateMultipartUpload { bucket: b.clone(), key: k.clone() }
        );
        assert_eq!(
            route(Method::PUT, "/b1/k?partNumber=1&uploadId=u1"),
            Endpoint::UploadPart { bucket: b.clone(), key: k.clone(), upload_id: u.clone(), part_number: 1 }
        );
        assert_eq!(
            route(Method::POST, "/b1/k?uploadId=u1"),
            Endpoint::CompleteMultipartUpload { bucket: b.clone(), key: k.clone(), upload_id: u.clone() }
        );
        assert_eq!(
            route(Method::DELETE, "/b1/k?uploadId=u1"),
            Endpoint::AbortMultipartUpload { bucket: b.clone(), key: k.clone(), upload_id: u.clone() }
        );
        assert_eq!(
            route(Method::GET, "/b1/k?uploadId=u1&max-parts=10&part-number-marker=4"),
            Endpoint::ListParts { bucket: b, key: k, upload_id: u, max_parts: 10, part_number_marker: Some(4) }
        );
    }

    #[test]
    fn part_numbers_outside_1_to_10000_are_invalid_argument() {
        for bad in ["0", "10001", "-1", "x", ""] {
            let uri = format!("/b1/k?partNumber={bad}&uploadId=u");
            assert_eq!(route_with(Method::PUT, &uri, &[]).expect_err(bad).code, S3ErrorCode::InvalidArgument);
        }
        assert!(route_with(Method::PUT, "/b1/k?partNumber=10000&uploadId=u", &[]).is_ok());
        assert_eq!(
            route_with(Method::PUT, "/b1/k?uploadId=u", &[]).expect_err("no part").code,
            S3ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn keys_over_1024_bytes_are_refused() {
        let ok = format!("/b1/{}", "k".repeat(1024));
        assert!(route_with(Method::PUT, &ok, &[]).is_ok());
        let long = format!("/b1/{}", "k".repeat(1025));
        assert_eq!(route_with(Method::PUT, &long, &[]).expect_err("long").code, S3ErrorCode::KeyTooLongError);
    }

    #[test]
    fn keys_with_characters_xml_cannot_carry_are_refused() {
        for bad in ["/b1/a%00b", "/b1/a%01", "/b1/line%0Abreak", "/b1/cr%0D", "/b1/tab%09", "/b1/x%EF%BF%BF"] {
            assert_eq!(route_with(Method::PUT, bad, &[]).expect_err(bad).code, S3ErrorCode::InvalidArgument, "{bad}");
        }
        for good in ["/b1/del%7F", "/b1/%C2%80c1", "/b1/%F0%9F%98%80"] {
            assert!(route_with(Method::PUT, good, &[]).is_ok(), "{good}");
        }
    }

    #[test]
    fn unsupported_subresources_are_not_implemented() {
        for uri in ["/b1?acl", "/b1?lifecycle", "/b1?cors", "/b1/k?tagging", "/b1/k?acl"] {
            for m in [Method::GET, Method::PUT, Method::DELETE] {
                if m == Method::GET && uri == "/b1/k?tagging" {
                    assert!(matches!(route(m.clone(), uri), Endpoint::GetObjectTagging { .. }));
                    continue;
                }
                assert!(matches!(route(m.clone(), uri), Endpoint::NotImplemented(_)), "{m} {uri}");
            }
        }
        assert!(matches!(route(Method::PUT, "/b1?versioning"), Endpoint::NotImplemented(_)));
    }

    #[test]
    fn virtual_hosted_style_takes_the_bucket_from_host() {
        let mut h = HeaderMap::new();
        h.insert("host", "my.bucket.s3.example.com:9000".parse().expect("host"));
        assert_eq!(
            parse(&Method::GET, "/dir/key", None, &h, DOMAIN).expect("vhost"),
            Endpoint::GetObject { bucket: s("my.bucket"), key: s("dir/key"), version_id: None, part_number: None }
        );
        assert_eq!(
            parse(&Method::GET, "/", Some("list-type=2"), &h, DOMAIN).expect("vhost list").name(),
            "ListObjectsV2"
        );
        // A host outside the domain (an IP) is path-style.
        h.insert("host", "127.0.0.1:9000".parse().expect("host"));
        assert_eq!(
            parse(&Method::PUT, "/b1", None, &h, DOMAIN).expect("path"),
            Endpoint::CreateBucket { bucket: s("b1") }
        );
    }

    #[test]
    fn wrong_methods_are_method_not_allowed() {
        assert_eq!(route_with(Method::PUT, "/", &[]).expect_err("put /").code, S3ErrorCode::MethodNotAllowed);
        assert_eq!(route_with(Method::PATCH, "/b1/k", &[]).expect_err("patch").code, S3ErrorCode::MethodNotAllowed);
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["abc", "my-bucket.data", "a1b2c3"] {
            assert!(validate_bucket_name(good).is_ok(), "{good}");
        }
        for bad in ["ab", "Abc", "-abc", "abc-", "a..b", "192.168.1.1", "a_b", &"a".repeat(64)] {
            assert_eq!(validate_bucket_name(bad).expect_err(bad).code, S3ErrorCode::InvalidBucketName);
        }
        // The reserved names, which only the engine refused before the rules were shared.
        for bad in ["xn--abc", "sthree-abc", "amzn-s3-demo-abc", "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3"] {
            let e = validate_bucket_name(bad).expect_err(bad);
            assert_eq!(e.code, S3ErrorCode::InvalidBucketName);
            assert!(e.message.contains("reserved"), "{bad}: {}", e.message);
        }
    }
}
