//! AWS Signature Version 4 for S3: the Authorization header and presigned URLs.
//!
//! The result of a successful check is an [`AuthContext`]: who signed, and how the body
//! must be verified as it streams (a SHA-256 to compare, nothing, or aws-chunked framing
//! whose chunk signatures chain from the seed signature).

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{S3Error, S3ErrorCode};
use crate::http_util::{format_amz_date, parse_amz_date, parse_http_date};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// A request's clock may differ from ours by at most this much.
pub const MAX_CLOCK_SKEW_SECS: u64 = 15 * 60;
/// The longest lifetime of a presigned URL: seven days.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;
/// SHA-256 of the empty string, hex.
pub const EMPTY_SHA256_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/// RFC 3986 unreserved characters stay; everything else is %XX (uppercase).
const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

type HmacSha256 = Hmac<Sha256>;

/// How the request body is protected, from `x-amz-content-sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// The body's SHA-256 (raw); verify it as the body streams.
    Sha256([u8; 32]),
    /// `UNSIGNED-PAYLOAD` (and every presigned URL).
    Unsigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: signed aws-chunked body.
    StreamingSigned,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: unsigned aws-chunked body with trailers.
    StreamingUnsignedTrailer,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: signed chunks and a signed trailer.
    StreamingSignedTrailer,
}

impl PayloadMode {
    fn parse(value: &str) -> Result<PayloadMode, S3Error> {
        Ok(match value {
            UNSIGNED_PAYLOAD => PayloadMode::Unsigned,
            STREAMING_SIGNED => PayloadMode::StreamingSigned,
            STREAMING_SIGNED_TRAILER => PayloadMode::StreamingSignedTrailer,
            STREAMING_UNSIGNED_TRAILER => PayloadMode::StreamingUnsignedTrailer,
            v if v.starts_with("STREAMING-") => {
                return Err(S3Error::with_message(
                    S3ErrorCode::NotImplemented,
                    format!("x-amz-content-sha256 {v} is not supported"),
                ))
            }
            v => {
                let mut raw = [0u8; 32];
                hex::decode_to_slice(v, &mut raw).map_err(|_| {
                    S3Error::invalid_argument(
                        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                         STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
                    )
                })?;
                PayloadMode::Sha256(raw)
            }
        })
    }

    /// Whether the body is aws-chunked framed.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer | PayloadMode::StreamingUnsignedTrailer
        )
    }
}

/// Who signed a request and what the body checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub access_key: String,
    pub region: String,
    /// The derived key; chunk and trailer signatures use it.
    pub signing_key: [u8; 32],
    /// `YYYYMMDDTHHMMSSZ` of the request.
    pub amz_date: String,
    /// `date/region/s3/aws4_request`.
    pub scope: String,
    /// The request's signature (hex), the first link of a chunk-signature chain.
    pub seed_signature: String,
    pub payload_mode: PayloadMode,
    pub presigned: bool,
}

impl AuthContext {
    /// A request with no credentials at all: who may do what is then up to the bucket's
    /// policy (nothing, without one). Its body is taken as sent (no signature covers it).
    pub fn anonymous(now: SystemTime) -> AuthContext {
        AuthContext {
            access_key: String::new(),
            region: String::new(),
            signing_key: [0; 32],
            amz_date: format_amz_date(now),
            scope: String::new(),
            seed_signature: String::new(),
            payload_mode: PayloadMode::Unsigned,
            presigned: false,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.access_key.is_empty()
    }
}

/// The parts of a request that SigV4 covers. `path` and `query` are raw, as on the wire.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// `Credential=AK/date/region/service/aws4_request`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Credential {
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }

    fn parse(value: &str, malformed: &dyn Fn(&str) -> S3Error) -> Result<Credential, S3Error> {
        let parts: Vec<&str> = value.split('/').collect();
        match parts.as_slice() {
            [ak, date, region, service, "aws4_request"]
                if !ak.is_empty() && date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) =>
            {
                if *service != "s3" {
                    return Err(malformed("the credential's service must be 's3'"));
                }
                Ok(Credential {
                    access_key: ak.to_string(),
                    date: date.to_string(),
                    region: region.to_string(),
                    service: service.to_string(),
                })
            }
            _ => Err(malformed("the credential must be <access key>/<YYYYMMDD>/<region>/s3/aws4_request")),
        }
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    pub credential: Credential,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

fn header_malformed(why: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AuthorizationHeaderMalformed,
        format!("The authorization header is malformed; {why}."),
    )
}

fn query_malformed(why: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AuthorizationQueryParametersError,
        format!("Error parsing the presigned URL parameters: {why}."),
    )
}

fn parse_signed_headers(value: &str) -> Vec<String> {
    value.split(';').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect()
}

/// Every `x-amz-*` header a request carries must be among its signed headers, or whoever holds
/// a signed request (a presigned URL, or one seen on the wire within its window) could add one
/// the signer never meant, such as `x-amz-copy-source`. S3 answers such a request 403
/// AccessDenied and so do we, once the key is known, before the signature is computed and
/// before the router sees the request.
fn check_amz_headers_signed(headers: &HeaderMap, signed_headers: &[String]) -> Result<(), S3Error> {
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-amz-") && !signed_headers.iter().any(|s| s == name))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    unsigned.dedup();
    Err(S3Error::access_denied("There were headers present in the request which were not signed")
        .detail("HeadersNotSigned", unsigned.join(", ")))
}

fn check_signature_hex(sig: &str, malformed: &dyn Fn(&str) -> S3Error) -> Result<(), S3Error> {
    if sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(malformed("the signature must be 64 hexadecimal digits"))
    }
}

impl AuthorizationHeader {
    pub fn parse(value: &str) -> Result<AuthorizationHeader, S3Error> {
        let rest = value.trim().strip_prefix(ALGORITHM).ok_or_else(|| {
            S3Error::invalid_request(
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
            )
        })?;
        if !rest.starts_with(' ') {
            return Err(header_malformed("expected a space after the algorithm"));
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            let Some((k, v)) = part.split_once('=') else {
                return Err(header_malformed("expected key=value components"));
            };
            match k.trim() {
                "Credential" => credential = Some(Credential::parse(v.trim(), &header_malformed)?),
                "SignedHeaders" => signed = Some(parse_signed_headers(v)),
                "Signature" => signature = Some(v.trim().to_ascii_lowercase()),
                _ => return Err(header_malformed("unknown component")),
            }
        }
        let credential = credential.ok_or_else(|| header_malformed("missing Credential"))?;
        let signed_headers = signed.ok_or_else(|| header_malformed("missing SignedHeaders"))?;
        let signature = signature.ok_or_else(|| header_malformed("missing Signature"))?;
        check_signature_hex(&signature, &header_malformed)?;
        if !signed_headers.iter().any(|h| h == "host") {
            return Err(header_malformed("the host header must be signed"));
        }
        Ok(AuthorizationHeader { credential, signed_headers, signature })
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The SigV4 signing key. Depends only on (secret, date, region, service), so each thread
/// keeps the last few it derived (four HMACs saved on nearly every request).
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    const CACHED_KEYS: usize = 8;
    /// A derived key and what it was derived from (the secret too, so a changed secret never
    /// finds an old key). Compared field by field: a hit allocates nothing.
    struct Cached {
        scope: [String; 4],
        key: [u8; 32],
    }
    thread_local! {
        static KEYS: std::cell::RefCell<Vec<Cached>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let wanted = [secret, date, region, service];
    let hit = KEYS.with(|c| c.borrow().iter().find(|k| k.scope.iter().zip(wanted).all(|(a, b)| a == b)).map(|k| k.key));
    if let Some(k) = hit {
        return k;
    }
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let key = hmac(&k_service, b"aws4_request");
    KEYS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() == CACHED_KEYS {
            c.remove(0);
        }
        c.push(Cached { scope: wanted.map(str::to_string), key });
    });
    key
}

/// HMAC-SHA256 of a string to sign, hex.
pub fn sign(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(signing_key, string_to_sign.as_bytes()))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Constant-time equality of two signatures (hex, case-insensitive input already lowered).
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn uri_encode(s: &str) -> String {
    utf8_percent_encode(s, URI_ENCODE).to_string()
}

fn uri_decode(s: &str) -> Result<String, S3Error> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| S3Error::invalid_argument("URL-decoded text is not valid UTF-8"))
}

/// Whether `c` stands for itself in a SigV4 URI encoding (unreserved characters).
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')
}

/// S3's canonical URI: each segment decoded once and re-encoded (no double encoding).
pub fn canonical_uri(raw_path: &str) -> Result<String, S3Error> {
    if raw_path.is_empty() {
        return Ok("/".to_string());
    }
    let mut out = String::with_capacity(raw_path.len() + 8);
    if !raw_path.starts_with('/') {
        out.push('/');
    }
    for (i, segment) in raw_path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment.bytes().all(is_unreserved) {
            out.push_str(segment); // decoding and encoding both leave it as it is
        } else {
            out.push_str(&uri_encode(&uri_decode(segment)?));
        }
    }
    Ok(out)
}

/// The canonical query string: names and values decoded, re-encoded, sorted.
/// `X-Amz-Signature` is left out (it cannot sign itself).
pub fn canonical_query(raw_query: Option<&str>) -> Result<String, S3Error> {
    let mut pairs = Vec::new();
    for part in raw_query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = uri_decode(k)?;
        if k == "X-Amz-Signature" {
            continue;
        }
        pairs.push((uri_encode(&k), uri_encode(&uri_decode(v)?)));
    }
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(joined.join("&"))
}

/// Appends a header value trimmed, with runs of whitespace collapsed to one space.
fn push_normalized(out: &mut String, value: &[u8]) {
    let text = String::from_utf8_lossy(value);
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

/// `name:value\n` for each signed header (multiple values joined with `,`).
pub fn canonical_headers(headers: &HeaderMap, signed_headers: &[String]) -> String {
    let mut out = String::with_capacity(64 * signed_headers.len());
    push_canonical_headers(&mut out, headers, signed_headers);
    out
}

fn push_canonical_headers(out: &mut String, headers: &HeaderMap, signed_headers: &[String]) {
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        for (i, v) in headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_normalized(out, v.as_bytes());
        }
        out.push('\n');
    }
}

/// The canonical request, exactly as AWS builds it for S3.
pub fn canonical_request(
    req: &SignedRequest<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, S3Error> {
    let uri = canonical_uri(req.path)?;
    let query = canonical_query(req.query)?;
    let mut out = String::with_capacity(256 + uri.len() + query.len() + 64 * signed_headers.len());
    out.push_str(req.method.as_str());
    out.push('\n');
    out.push_str(&uri);
    out.push('\n');
    out.push_str(&query);
    out.push('\n');
    push_canonical_headers(&mut out, req.headers, signed_headers);
    out.push('\n');
    for (i, h) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(h);
    }
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_skew(t: SystemTime, now: SystemTime) -> Result<(), S3Error> {
    let skew = match now.duration_since(t) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > Duration::from_secs(MAX_CLOCK_SKEW_SECS) {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    Ok(())
}

/// Authenticates a request signed with SigV4, by header or presigned URL.
/// `secret_for` maps an access key to its secret. Anonymous requests are refused.
pub fn authenticate<F>(req: &SignedRequest<'_>, now: SystemTime, secret_for: F) -> Result<AuthContext, S3Error>
where
    F: Fn(&str) -> Option<String>,
{
    let by_header = header(req.headers, "authorization");
    let by_query = req.query.is_some_and(|q| q.split('&').any(|p| p.starts_with("X-Amz-Algorithm=")));
    match (by_header, by_query) {
        (Some(_), true) => Err(S3Error::invalid_argument("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified")),
        (Some(h), false) => authenticate_header(req, h, now, &secret_for),
        (None, true) => authenticate_presigned(req, now, &secret_for),
        // No signature, so no signer whose intent an unsigned header could stretch: what the
        // request asks (its `x-amz-copy-source` too) is decided by the bucket's policy
        // against the operation as routed (`Endpoint::accesses`).
        (None, false) => Ok(AuthContext::anonymous(now)),
    }
}

fn lookup_secret(access_key: &str, secret_for: &dyn Fn(&str) -> Option<String>) -> Result<String, S3Error> {
    secret_for(access_key)
        .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId).detail("AWSAccessKeyId", access_key))
}

fn verify(
    req: &SignedRequest<'_>,
    credential: &Credential,
    secret: &str,
    signed_headers: &[String],
    amz_date: &str,
    payload_hash: &str,
    provided: &str,
) -> Result<([u8; 32], String), S3Error> {
    let canonical = canonical_request(req, signed_headers, payload_hash)?;
    let scope = credential.scope();
    let sts = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(secret, &credential.date, &credential.region, &credential.service);
    let expected = sign(&key, &sts);
    if !signatures_equal(&expected, provided) {
        return Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch)
            .detail("StringToSign", sts)
            .detail("CanonicalRequest", canonical));
    }
    Ok((key, scope))
}

fn authenticate_header(
    req: &SignedRequest<'_>,
    value: &str,
    now: SystemTime,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthContext, S3Error> {
    let auth = AuthorizationHeader::parse(value)?;
    let (amz_date, t) = match header(req.headers, "x-amz-date") {
        Some(d) => (
            d.to_string(),
            parse_amz_date(d).ok_or_else(|| {
                S3Error::access_denied("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
            })?,
        ),
        None => {
            let t = header(req.headers, "date").and_then(parse_http_date).ok_or_else(|| {
                S3Error::access_denied("AWS authentication requires a valid Date or x-amz-date header")
            })?;
            (format_amz_date(t), t)
        }
    };
    if !amz_date.starts_with(&auth.credential.date) {
        return Err(header_malformed("the credential date does not match the request date"));
    }
    check_skew(t, now)?;
    let payload_hash = header(req.headers, "x-amz-content-sha256")
        .ok_or_else(|| S3Error::invalid_request("Missing required header for this request: x-amz-content-sha256"))?;
    let payload_mode = PayloadMode::parse(payload_hash)?;
    let secret = lookup_secret(&auth.credential.access_key, secret_for)?;
    check_amz_headers_signed(req.headers, &auth.signed_headers)?;
    let (signing_key, scope) =
        verify(req, &auth.credential, &secret, &auth.signed_headers, &amz_date, payload_hash, &auth.signature)?;
    Ok(AuthContext {
        access_key: auth.credential.access_key,
        region: auth.credential.region,
        signing_key,
        amz_date,
        scope,
        seed_signature: auth.signature,
        payload_mode,
        presigned: false,
    })
}

fn authenticate_presigned(
    req: &SignedRequest<'_>,
    now: SystemTime,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthContext, S3Error> {
    let mut params = std::collections::HashMap::new();
    for part in req.query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = uri_decode(k)?;
        if k.starts_with("X-Amz-") {
            params.entry(k).or_insert(uri_decode(v)?);
        }
    }
    let get =
        |name: &str| params.get(name).map(String::as_str).ok_or_else(|| query_malformed(&format!("missing {name}")));
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(query_malformed("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""));
    }
    let credential = Credential::parse(get("X-Amz-Credential")?, &query_malformed)?;
    let amz_date = get("X-Amz-Date")?.to_string();
    let t =
        parse_amz_date(&amz_date).ok_or_else(|| query_malformed("X-Amz-Date must be in the ISO8601 Long Format"))?;
    if !amz_date.starts_with(&credential.date) {
        return Err(query_malformed("the credential date does not match X-Amz-Date"));
    }
    let expires: u64 =
        get("X-Amz-Expires")?.parse().map_err(|_| query_malformed("X-Amz-Expires should be a number"))?;
    if expires > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(query_malformed("X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds"));
    }
    let signed_headers = parse_signed_headers(get("X-Amz-SignedHeaders")?);
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(query_malformed("the host header must be signed"));
    }
    let signature = get("X-Amz-Signature")?.to_ascii_lowercase();
    check_signature_hex(&signature, &query_malformed)?;
    if now > t + Duration::from_secs(expires) {
        return Err(S3Error::request_expired());
    }
    if t > now + Duration::from_secs(MAX_CLOCK_SKEW_SECS) {
        return Err(S3Error::new(S3ErrorCode::RequestTimeTooSkewed));
    }
    let secret = lookup_secret(&credential.access_key, secret_for)?;
    check_amz_headers_signed(req.headers, &signed_headers)?;
    let (signing_key, scope) =
        verify(req, &credential, &secret, &signed_headers, &amz_date, UNSIGNED_PAYLOAD, &signature)?;
    Ok(AuthContext {
        access_key: credential.access_key,
        region: credential.region,
        signing_key,
        amz_date,
        scope,
        seed_signature: signature,
        payload_mode: PayloadMode::Unsigned,
        presigned: true,
    })
}

/// Checks a body against the SHA-256 its signed `x-amz-content-sha256` promised
/// ([`PayloadMode::Sha256`]), as the body streams.
pub struct PayloadHashVerifier {
    expected: [u8; 32],
    hasher: Sha256,
}

impl PayloadHashVerifier {
    pub fn new(expected: [u8; 32]) -> Self {
        PayloadHashVerifier { expected, hasher: Sha256::new() }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// XAmzContentSHA256Mismatch when the body is not what was signed.
    pub fn finish(self) -> Result<(), S3Error> {
        let got: [u8; 32] = self.hasher.finalize().into();
        if bool::from(got.ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(S3Error::new(S3ErrorCode::XAmzContentSHA256Mismatch)
                .detail("ClientComputedContentSHA256", hex::encode(self.expected))
                .detail("S3ComputedContentSHA256", hex::encode(got)))
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expected signatures are AWS's published examples ("Signature Calculations for the
    //! Authorization Header" and "Query String Authentication" in the S3 API reference).
    use super::*;
    use std::time::UNIX_EPOCH;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the examples' date.
    fn example_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn secrets(ak: &str) -> Option<String> {
        (ak == AK).then(|| SECRET.to_string())
    }

    use crate::auth::test_headers as headers;

    fn auth_header(signed: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={sig}")
    }

    fn check(method: Method, path: &str, query: Option<&str>, h: &HeaderMap) -> Result<AuthContext, S3Error> {
        let req = SignedRequest { method: &method, path, query, headers: h };
        authenticate(&req, example_time(), secrets)
    }

    const AWS_EXAMPLE_GET_SIGNATURE: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    /// The headers of AWS's documented GetObject example (a range GET), signed.
    fn aws_example_get_headers() -> HeaderMap {
        let authz = auth_header("host;range;x-amz-content-sha256;x-amz-date", AWS_EXAMPLE_GET_SIGNATURE);
        headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
            ("authorization", &authz),
        ])
    }

    #[test]
    fn aws_example_get_object() {
        let h = aws_example_get_headers();
        let ctx = check(Method::GET, "/test.txt", None, &h).expect("AWS example verifies");
        assert_eq!(ctx.access_key, AK);
        assert_eq!(ctx.seed_signature, AWS_EXAMPLE_GET_SIGNATURE);
        assert_eq!(ctx.scope, "20130524/us-east-1/s3/aws4_request");
        assert!(matches!(ctx.payload_mode, PayloadMode::Sha256(_)));
        // The same request one byte different fails.
        let mut h2 = h.clone();
        h2.insert("range", "bytes=0-8".parse().expect("header value"));
        assert_eq!(
            check(Method::GET, "/test.txt", None, &h2).expect_err("tampered").code,
            S3ErrorCode::SignatureDoesNotMatch
        );
    }

    #[test]
    fn aws_example_put_object_encodes_dollar_in_path() {
        let authz = auth_header(
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        );
        let h = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
            ("authorization", &authz),
        ]);
        assert_eq!(canonical_uri("/test$file.text").expect("uri"), "/test%24file.text");
        // Whether the client sent `$` raw or encoded, the canonical URI is the same.
        check(Method::PUT, "/test$file.text", None, &h).expect("raw $");
        let ctx = check(Method::PUT, "/test%24file.text", None, &h).expect("encoded $");
        assert_eq!(
            sha256_hex(b"Welcome to Amazon S3."),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        assert!(matches!(ctx.payload_mode, PayloadMode::Sha256(_)));
    }

    #[test]
    fn aws_example_get_bucket_lifecycle_and_list_objects() {
        let base = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
        ];
        let signed = "host;x-amz-content-sha256;x-amz-date";
        for (query, sig) in [
            ("lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
            ("max-keys=2&prefix=J", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
            // Order on the wire does not matter: the canonical query is sorted.
            ("prefix=J&max-keys=2", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
        ] {
            let authz = auth_header(signed, sig);
            let mut h = headers(&base);
            h.insert("authorization", authz.parse().expect("authz"));
            check(Method::GET, "/", Some(query), &h).unwrap_or_else(|e| panic!("{query}: {e}"));
        }
        assert_eq!(canonical_query(Some("lifecycle")).expect("q"), "lifecycle=");
    }

    #[test]
    fn aws_example_presigned_get() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
        let method = Method::GET;
        let req = SignedRequest { method: &method, path: "/test.txt", query: Some(query), headers: &h };
        let ctx = authenticate(&req, example_time() + Duration::from_secs(3600), secrets).expect("presigned");
        assert!(ctx.presigned);
        assert_eq!(ctx.payload_mode, PayloadMode::Unsigned);
        // One second past the 86400 s lifetime: expired.
        let late = authenticate(&req, example_time() + Duration::from_secs(86_401), secrets).expect_err("expired");
        assert_eq!(late.code, S3ErrorCode::AccessDenied);
        assert_eq!(late.message, "Request has expired");
        // Lifetimes over a week are refused before the signature is checked.
        let week = query.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801");
        let req = SignedRequest { query: Some(&week), ..req };
        assert_eq!(
            authenticate(&req, example_time(), secrets).expect_err("week").code,
            S3ErrorCode::AuthorizationQueryParametersError
        );
    }

    #[test]
    fn unsigned_amz_header_on_a_presigned_url_is_access_denied() {
        // The presigned-PUT attack: a valid URL plus an `x-amz-copy-source` the signer never
        // saw must not reach the router as a CopyObject.
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let method = Method::GET;
        for extra in ["x-amz-copy-source", "x-amz-meta-owner", "X-Amz-Server-Side-Encryption"] {
            let mut h = headers(&[("host", "examplebucket.s3.amazonaws.com")]);
            h.insert(http::HeaderName::from_bytes(extra.as_bytes()).expect("name"), "x".parse().expect("value"));
            let req = SignedRequest { method: &method, path: "/test.txt", query: Some(query), headers: &h };
            let e = authenticate(&req, example_time() + Duration::from_secs(60), secrets).expect_err(extra);
            assert_eq!(e.code, S3ErrorCode::AccessDenied, "{extra}");
            assert_eq!(e.message, "There were headers present in the request which were not signed");
            let named = e.details.iter().find(|(k, _)| *k == "HeadersNotSigned").map(|(_, v)| v.as_str());
            assert_eq!(named, Some(extra.to_ascii_lowercase().as_str()));
        }
        // Headers outside the x-amz- family (and x-amzn-*) need no signature.
        let h = headers(&[("host", "examplebucket.s3.amazonaws.com"), ("x-amzn-trace-id", "t"), ("user-agent", "u")]);
        let req = SignedRequest { method: &method, path: "/test.txt", query: Some(query), headers: &h };
        authenticate(&req, example_time() + Duration::from_secs(60), secrets).expect("unsigned non-amz headers");
    }

    #[test]
    fn unsigned_amz_header_on_a_header_signed_request_is_access_denied() {
        let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let authz = auth_header("host;range;x-amz-content-sha256;x-amz-date", sig);
        let mut h = headers(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
            ("authorization", &authz),
        ]);
        check(Method::GET, "/test.txt", None, &h).expect("signed as published");
        h.insert("x-amz-copy-source", "/other/secret".parse().expect("value"));
        h.insert("x-amz-meta-a", "1".parse().expect("value"));
        let e = check(Method::GET, "/test.txt", None, &h).expect_err("unsigned x-amz-*");
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
        let named = e.details.iter().find(|(k, _)| *k == "HeadersNotSigned").map(|(_, v)| v.as_str());
        assert_eq!(named, Some("x-amz-copy-source, x-amz-meta-a"));
    }

    #[test]
    fn aws_example_streaming_seed_signature() {
        // The seed request of the documented 66560-byte aws-chunked upload.
        let authz = auth_header(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        );
        let h = headers(&[
            ("host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", STREAMING_SIGNED),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("content-length", "66824"),
            ("authorization", &authz),
        ]);
        let ctx = check(Method::PUT, "/examplebucket/chunkObject.txt", None, &h).expect("seed verifies");
        assert_eq!(ctx.payload_mode, PayloadMode::StreamingSigned);
        assert_eq!(ctx.amz_date, "20130524T000000Z");
    }

    #[test]
    fn clock_skew_over_15_minutes_is_refused() {
        let h = aws_example_get_headers();
        let method = Method::GET;
        let req = SignedRequest { method: &method, path: "/test.txt", query: None, headers: &h };
        for (offset, ok) in [(900, true), (901, false)] {
            for t in [example_time() + Duration::from_secs(offset), example_time() - Duration::from_secs(offset)] {
                let r = authenticate(&req, t, secrets);
                assert_eq!(r.is_ok(), ok, "offset {offset}");
                if !ok {
                    assert_eq!(r.expect_err("skew").code, S3ErrorCode::RequestTimeTooSkewed);
                }
            }
        }
    }

    #[test]
    fn anonymous_unknown_key_and_malformed_headers() {
        // No credentials: an anonymous context (the bucket's policy decides what it may do).
        let h = headers(&[("host", "h"), ("x-amz-checksum-mode", "ENABLED")]);
        assert!(check(Method::GET, "/b/k", None, &h).expect("anon").is_anonymous());
        let mut h =
            headers(&[("host", "h"), ("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", UNSIGNED_PAYLOAD)]);
        let other = format!(
            "AWS4-HMAC-SHA256 Credential=NOPE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature={}",
            "0".repeat(64)
        );
        h.insert("authorization", other.parse().expect("authz"));
        assert_eq!(check(Method::GET, "/b/k", None, &h).expect_err("unknown").code, S3ErrorCode::InvalidAccessKeyId);
        for bad in [
            "AWS4-HMAC-SHA256 Credential=AK/2013/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00",
            "AWS4-HMAC-SHA256 SignedHeaders=host,Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,SignedHeaders=x-amz-date,Signature=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            h.insert("authorization", bad.parse().expect("authz"));
            assert_eq!(check(Method::GET, "/b/k", None, &h).expect_err(bad).code, S3ErrorCode::AuthorizationHeaderMalformed, "{bad}");
        }
        h.insert("authorization", "AWS AK:sig".parse().expect("v2"));
        assert_eq!(check(Method::GET, "/b/k", None, &h).expect_err("v2").code, S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn payload_hash_is_checked_as_the_body_streams() {
        let mut raw = [0u8; 32];
        hex::decode_to_slice("44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072", &mut raw)
            .expect("hex");
        let mut v = PayloadHashVerifier::new(raw);
        v.update(b"Welcome to ");
        v.update(b"Amazon S3.");
        assert!(v.finish().is_ok());
        let mut v = PayloadHashVerifier::new(raw);
        v.update(b"Welcome to Amazon S4.");
        assert_eq!(v.finish().expect_err("mismatch").code, S3ErrorCode::XAmzContentSHA256Mismatch);
    }

    #[test]
    fn cached_signing_keys_follow_every_part_of_their_scope() {
        let derive = |secret: &str, date: &str, region: &str| {
            let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
            let k_region = hmac(&k_date, region.as_bytes());
            hmac(&hmac(&k_region, b"s3"), b"aws4_request")
        };
        let scopes = [
            ("secret-a", "20261130", "us-east-1"),
            ("secret-b", "20261130", "us-east-1"),
            ("secret-a", "20261201", "us-east-1"),
            ("secret-a", "20261130", "eu-west-1"),
        ];
        // Twice round: the second pass is served from the cache and must still match.
        for _ in 0..2 {
            for (secret, date, region) in scopes {
                assert_eq!(
                    signing_key(secret, date, region, "s3"),
                    derive(secret, date, region),
                    "{secret} {date} {region}"
                );
            }
        }
    }

    #[test]
    fn canonical_forms_follow_s3_rules() {
        assert_eq!(canonical_uri("/b/a%20b/c+d/%E2%82%AC").expect("uri"), "/b/a%20b/c%2Bd/%E2%82%AC");
        assert_eq!(canonical_uri("/b/a%2Fb").expect("uri"), "/b/a%2Fb");
        assert_eq!(canonical_query(Some("b=2&a=1&a=0&c")).expect("q"), "a=0&a=1&b=2&c=");
        assert_eq!(canonical_query(Some("prefix=a%2Fb&x=%7E")).expect("q"), "prefix=a%2Fb&x=~");
        let h = headers(&[("x-a", "  a   b  c "), ("x-b", "1"), ("x-b", "2")]);
        assert_eq!(canonical_headers(&h, &["x-a".into(), "x-b".into()]), "x-a:a b c\nx-b:1,2\n");
    }
}
