pub mod chunked;
pub mod policy;
pub mod post_policy;
pub mod sigv2;
pub mod sigv4;

/// A header map from (name, value) pairs, for the signers' tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, v.parse().expect("test header"));
    }
    h
}
