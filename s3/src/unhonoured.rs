//! Request headers that ask for something Tessera does not do yet. Each is refused with
//! `501 NotImplemented` naming the header, before anything runs: accepting such a request and
//! ignoring the header would tell the client its data is encrypted, locked, tagged or public when
//! it is not (a PUT with SSE-C headers stored in plaintext and readable without the key).
//!
//! When a feature lands, its headers leave this table in the same change, with the tests that
//! show them honoured.

use crate::error::{S3Error, S3ErrorCode};
use http::HeaderMap;

/// How a header name is matched.
enum Name {
    Exact(&'static str),
    Prefix(&'static str),
}

/// One header (or family) the server cannot honour, and which of its values it can.
struct Unhonoured {
    name: Name,
    /// Values that ask for nothing beyond what the server does anyway (compared ASCII
    /// case-insensitively); any other value is refused. Empty: every value is refused.
    harmless_values: &'static [&'static str],
    what: &'static str,
}

const UNHONOURED: &[Unhonoured] = &[
    // SSE-S3, SSE-KMS, DSSE-KMS, SSE-C (and their key ids, contexts and bucket keys).
    Unhonoured {
        name: Name::Prefix("x-amz-server-side-encryption"),
        harmless_values: &[],
        what: "server-side encryption",
    },
    Unhonoured {
        name: Name::Prefix("x-amz-copy-source-server-side-encryption"),
        harmless_values: &[],
        what: "server-side encryption of the copy source",
    },
    Unhonoured {
        name: Name::Exact("x-amz-bucket-object-lock-enabled"),
        harmless_values: &["false"],
        what: "object lock",
    },
    Unhonoured { name: Name::Prefix("x-amz-object-lock-"), harmless_values: &[], what: "object lock" },
    Unhonoured { name: Name::Exact("x-amz-bypass-governance-retention"), harmless_values: &[], what: "object lock" },
    Unhonoured { name: Name::Exact("x-amz-tagging"), harmless_values: &[""], what: "object tagging" },
    // One owner per node and no anonymous access yet: a private ACL (and granting the bucket
    // owner what it has) is what every object gets; any other grant would be a lie.
    Unhonoured {
        name: Name::Exact("x-amz-acl"),
        harmless_values: &["private", "bucket-owner-full-control"],
        what: "access control lists",
    },
    Unhonoured { name: Name::Prefix("x-amz-grant-"), harmless_values: &[], what: "access control lists" },
    // Every object is stored in the node's one erasure-coded layout.
    Unhonoured { name: Name::Exact("x-amz-storage-class"), harmless_values: &["STANDARD"], what: "storage classes" },
    Unhonoured {
        name: Name::Exact("x-amz-website-redirect-location"),
        harmless_values: &[],
        what: "website redirects",
    },
    Unhonoured { name: Name::Exact("x-amz-mfa"), harmless_values: &[], what: "MFA delete" },
    Unhonoured { name: Name::Exact("x-amz-write-offset-bytes"), harmless_values: &[], what: "appends to objects" },
];

impl Name {
    fn matches(&self, header: &str) -> bool {
        match self {
            Name::Exact(n) => header == *n,
            Name::Prefix(p) => header.starts_with(p),
        }
    }
}

/// `Err(NotImplemented)` naming the first header of `headers` the server cannot honour.
pub fn refuse_unhonoured(headers: &HeaderMap) -> Result<(), S3Error> {
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("x-amz-") {
            continue;
        }
        let Some(u) = UNHONOURED.iter().find(|u| u.name.matches(name)) else { continue };
        let value = value.to_str().unwrap_or("").trim();
        if u.harmless_values.iter().any(|h| h.eq_ignore_ascii_case(value)) {
            continue;
        }
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!("{name}: {} is not supported by this server; the request was not carried out", u.what),
        )
        .detail("Header", name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(pairs: &[(&'static str, &str)]) -> Option<String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("value"));
        }
        refuse_unhonoured(&h).err().map(|e| {
            assert_eq!(e.code, S3ErrorCode::NotImplemented);
            assert_eq!(e.status(), http::StatusCode::NOT_IMPLEMENTED);
            e.details.iter().find(|(k, _)| *k == "Header").map(|(_, v)| v.clone()).unwrap_or_default()
        })
    }

    #[test]
    fn encryption_lock_tagging_and_grants_are_refused_by_name() {
        for (h, v) in [
            ("x-amz-server-side-encryption", "AES256"),
            ("x-amz-server-side-encryption", "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "k"),
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-server-side-encryption-customer-key", "a2V5"),
            ("x-amz-server-side-encryption-customer-key-md5", "bWQ1"),
            ("x-amz-copy-source-server-side-encryption-customer-key", "a2V5"),
            ("x-amz-bucket-object-lock-enabled", "true"),
            ("x-amz-bucket-object-lock-enabled", "True"),
            ("x-amz-object-lock-mode", "COMPLIANCE"),
            ("x-amz-object-lock-retain-until-date", "2030-01-01T00:00:00Z"),
            ("x-amz-object-lock-legal-hold", "ON"),
            ("x-amz-tagging", "a=b"),
            ("x-amz-acl", "public-read"),
            ("x-amz-grant-read", "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\""),
            ("x-amz-storage-class", "GLACIER"),
            ("x-amz-website-redirect-location", "/elsewhere"),
        ] {
            assert_eq!(refused(&[(h, v)]).as_deref(), Some(h), "{h}: {v}");
        }
    }

    #[test]
    fn values_that_ask_for_nothing_more_are_accepted() {
        for (h, v) in [
            ("x-amz-bucket-object-lock-enabled", "false"),
            ("x-amz-tagging", ""),
            ("x-amz-acl", "private"),
            ("x-amz-acl", "bucket-owner-full-control"),
            ("x-amz-storage-class", "STANDARD"),
            ("x-amz-tagging-directive", "COPY"),
            ("x-amz-meta-server-side-encryption", "AES256"),
            ("x-amz-checksum-crc32c", "AAAAAA=="),
            ("content-type", "text/plain"),
        ] {
            assert_eq!(refused(&[(h, v)]), None, "{h}: {v}");
        }
    }
}
