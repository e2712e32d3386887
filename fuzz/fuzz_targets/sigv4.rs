//! SigV4: `AuthorizationHeader::parse`, `canonical_uri`, `canonical_query` and `authenticate`.
//!
//! Input: newline-separated lines. Line 0 is the `Authorization` value (`-` for none), line 1
//! the method, line 2 the raw path, line 3 the raw query (`-` for none), every further line a
//! header `name: value`. If the input starts with `!`, the harness signs the request itself
//! with the fixed secret (so `authenticate` gets past the signature check and the fuzzer
//! explores what follows: payload modes, the context it builds).
//! `now` is fixed at 2013-05-24T00:00:00Z, the date of AWS's documented examples.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use s3::auth::sigv4::{
    authenticate, canonical_query, canonical_request, canonical_uri, sign, signing_key, string_to_sign,
    AuthorizationHeader, SignedRequest,
};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 2013-05-24T00:00:00Z.
const NOW_UNIX_SECS: u64 = 1_369_353_600;

fn opt_line(line: &[u8]) -> Option<String> {
    match line {
        b"-" => None,
        l => Some(String::from_utf8_lossy(l).into_owned()),
    }
}

fn secret_for(ak: &str) -> Option<String> {
    (ak == ACCESS_KEY).then(|| SECRET.to_string())
}

fuzz_target!(|data: &[u8]| {
    let (self_sign, data) = match data.split_first() {
        Some((b'!', rest)) => (true, rest),
        _ => (false, data),
    };
    let mut lines = data.split(|&b| b == b'\n');
    let authorization = opt_line(lines.next().unwrap_or(b"-"));
    let Ok(method) = Method::from_bytes(lines.next().unwrap_or(b"GET")) else { return };
    let path = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let query = opt_line(lines.next().unwrap_or(b"-"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }

    let _ = canonical_uri(&path);
    let _ = canonical_query(query.as_deref());
    if let Ok(c) = canonical_uri(&path) {
        assert!(c.starts_with('/'), "canonical URI {c:?} does not start with /");
        // Canonicalisation is idempotent: the canonical form is its own canonical form.
        assert_eq!(canonical_uri(&c).ok().as_deref(), Some(c.as_str()), "canonical_uri not idempotent");
    }
    if let Ok(c) = canonical_query(query.as_deref()) {
        let again = canonical_query(Some(&c)).expect("a canonical query re-parses");
        assert_eq!(again, c, "canonical_query not idempotent");
    }

    if let Some(value) = &authorization {
        let parsed = AuthorizationHeader::parse(value);
        if let Ok(h) = &parsed {
            assert_eq!(h.signature.len(), 64);
            assert!(h.signed_headers.iter().any(|s| s == "host"));
            if self_sign {
                let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let payload = headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let req = SignedRequest { method: &method, path: &path, query: query.as_deref(), headers: &headers };
                if let Ok(cr) = canonical_request(&req, &h.signed_headers, &payload) {
                    let c = &h.credential;
                    let key = signing_key(SECRET, &c.date, &c.region, &c.service);
                    let sig = sign(&key, &string_to_sign(&amz_date, &c.scope(), &cr));
                    let v = format!(
                        "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={sig}",
                        c.access_key,
                        c.scope(),
                        h.signed_headers.join(";")
                    );
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        headers.insert(http::header::AUTHORIZATION, v);
                    }
                }
            }
        }
        if !self_sign || parsed.is_err() {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(http::header::AUTHORIZATION, v);
            }
        }
    }

    let req = SignedRequest { method: &method, path: &path, query: query.as_deref(), headers: &headers };
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECS);
    if let Ok(ctx) = authenticate(&req, now, secret_for) {
        assert_eq!(ctx.access_key, ACCESS_KEY);
        assert_eq!(ctx.seed_signature.len(), 64);
    }
});
