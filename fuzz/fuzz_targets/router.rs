//! `s3::router::parse` on a request built from the input.
//!
//! Input: newline-separated lines. Line 0 is the method, line 1 the raw path, line 2 the query
//! (`-` for none), line 3 the virtual-host domain (`-` for none), every further line a header
//! `name: value` (raw bytes, so non-ASCII and invalid header values are reachable).
//! Checks: parsing never panics, and an accepted request respects the router's own limits.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use s3::router::{self, Endpoint, MAX_KEY_BYTES, MAX_LIST_KEYS, MAX_PART_NUMBER};

fn opt_line(line: &[u8]) -> Option<String> {
    match line {
        b"-" => None,
        l => Some(String::from_utf8_lossy(l).into_owned()),
    }
}

fn check(ep: &Endpoint) {
    let _ = ep.name();
    let key = match ep {
        Endpoint::PutObject { key, .. }
        | Endpoint::CopyObject { key, .. }
        | Endpoint::GetObject { key, .. }
        | Endpoint::HeadObject { key, .. }
        | Endpoint::DeleteObject { key, .. }
        | Endpoint::CreateMultipartUpload { key, .. }
        | Endpoint::UploadPart { key, .. }
        | Endpoint::UploadPartCopy { key, .. }
        | Endpoint::CompleteMultipartUpload { key, .. }
        | Endpoint::AbortMultipartUpload { key, .. }
        | Endpoint::ListParts { key, .. } => Some(key),
        _ => None,
    };
    if let Some(key) = key {
        assert!(!key.is_empty(), "object endpoint with an empty key: {ep:?}");
        assert!(key.len() <= MAX_KEY_BYTES, "key of {} bytes accepted", key.len());
    }
    match ep {
        Endpoint::UploadPart { part_number, .. } | Endpoint::UploadPartCopy { part_number, .. } => {
            assert!((1..=MAX_PART_NUMBER).contains(part_number), "part number {part_number} accepted");
        }
        Endpoint::GetObject { part_number: Some(n), .. } | Endpoint::HeadObject { part_number: Some(n), .. } => {
            assert!((1..=MAX_PART_NUMBER).contains(n), "partNumber {n} accepted");
        }
        Endpoint::ListParts { max_parts, .. } => assert!(*max_parts <= MAX_LIST_KEYS, "max-parts {max_parts}"),
        Endpoint::ListObjects { args, .. } => assert!(args.max_keys <= MAX_LIST_KEYS),
        Endpoint::ListObjectsV2 { args, .. } => assert!(args.max_keys <= MAX_LIST_KEYS),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or_default();
    let Ok(method) = Method::from_bytes(method) else { return };
    let path = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let query = opt_line(lines.next().unwrap_or(b"-"));
    let domain = opt_line(lines.next().unwrap_or(b"-"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value.trim_ascii())) else {
            continue;
        };
        headers.append(name, value);
    }
    if let Ok(ep) = router::parse(&method, &path, query.as_deref(), &headers, domain.as_deref()) {
        check(&ep);
    }
});
