//! Browser-based uploads (POST Object): the form's policy document and its Signature Version 4.
//!
//! A form carries a base64 JSON policy (an expiration and a list of conditions) and the
//! signature of that base64 text made with the uploader's signing key. The server checks, in
//! this order: the signature (the policy is the uploader's), the expiration, that every
//! condition holds for the form's fields, and that every field the form sends is named by some
//! condition (so nothing can be added to a signed form). The file's size is checked against
//! `content-length-range` while it streams (`PostPolicy::length_range`).

use super::sigv4::{sign, signatures_equal, signing_key};
use crate::error::{S3Error, S3ErrorCode};
use crate::http_util::{parse_amz_date, parse_iso8601};
use base64::Engine as _;
use std::time::SystemTime;

/// The algorithm a Signature Version 4 form names in `x-amz-algorithm`.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Form fields no condition needs to name (S3's list): the signature, the policy itself, the
/// file, and anything the uploader marks `x-ignore-`.
const UNCONDITIONED: [&str; 3] = ["x-amz-signature", "policy", "file"];

/// A form's fields before the file, names lowercased (S3 field names are case-insensitive), in
/// the order sent. A name sent twice is refused when the form is read.
#[derive(Debug, Default, Clone)]
pub struct PostForm {
    pub fields: Vec<(String, String)>,
}

impl PostForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Add a field; a second field of the same name is malformed (which one would count?).
    pub fn push(&mut self, name: &str, value: String) -> Result<(), S3Error> {
        let name = name.to_ascii_lowercase();
        if self.get(&name).is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedPOSTRequest,
                format!("The form field {name} is given more than once."),
            ));
        }
        self.fields.push((name, value));
        Ok(())
    }
}

/// What a verified policy still has to enforce once the file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPolicy {
    pub access_key: String,
    /// `content-length-range`: the file's size must be within these bounds, inclusive.
    pub length_range: Option<(u64, u64)>,
}

/// Verify a Signature Version 4 form for `bucket` with the file named `filename`: the key it
/// writes is `form["key"]` with `${filename}` replaced. Returns what the file must still meet.
pub fn verify<F>(form: &PostForm, bucket: &str, now: SystemTime, secret_for: F) -> Result<PostPolicy, S3Error>
where
    F: Fn(&str) -> Option<String>,
{
    if form.get("awsaccesskeyid").is_some() || form.get("signature").is_some() {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "POST uploads signed with Signature Version 2 are not supported; sign the form with AWS4-HMAC-SHA256",
        ));
    }
    let Some(policy_b64) = form.get("policy") else {
        // An unsigned form would be an anonymous write: no bucket here grants one.
        return Err(S3Error::with_message(S3ErrorCode::AccessDenied, "A POST upload must carry a signed policy."));
    };
    let field = |name: &str| {
        form.get(name).ok_or_else(|| {
            S3Error::invalid_argument(format!("Bucket POST must contain a field named '{name}'. If it is specified, please check the order of the fields."))
        })
    };
    let algorithm = field("x-amz-algorithm")?;
    if algorithm != ALGORITHM {
        return Err(S3Error::invalid_argument(format!("Unsupported x-amz-algorithm {algorithm:?}; use {ALGORITHM}")));
    }
    let credential = field("x-amz-credential")?;
    let amz_date = field("x-amz-date")?;
    let signature = field("x-amz-signature")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = parts[..] else {
        return Err(S3Error::invalid_argument(format!(
            "x-amz-credential {credential:?} is not AK/DATE/REGION/s3/aws4_request"
        )));
    };
    if service != "s3"
        || terminator != "aws4_request"
        || !amz_date.starts_with(date)
        || parse_amz_date(amz_date).is_none()
    {
        return Err(S3Error::invalid_argument(format!(
            "x-amz-credential {credential:?} does not match x-amz-date {amz_date:?} or is not for s3"
        )));
    }
    let secret = secret_for(access_key).ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))?;
    let want = sign(&signing_key(&secret, date, region, "s3"), policy_b64);
    if !signatures_equal(&want, signature) {
        return Err(S3Error::new(S3ErrorCode::SignatureDoesNotMatch));
    }
    // The policy is the signer's from here on; what it says is enforced.
    let policy = parse(policy_b64)?;
    if now >= policy.expiration {
        return Err(denied("Policy expired."));
    }
    let mut named: Vec<&str> = vec!["bucket"];
    let value_of = |name: &str| if name == "bucket" { Some(bucket) } else { form.get(name) };
    let mut length_range = None;
    for c in &policy.conditions {
        match c {
            Condition::Eq(name, want) => {
                named.push(name);
                if value_of(name) != Some(want.as_str()) {
                    return Err(denied(&format!("Policy Condition failed: [\"eq\", \"${name}\", \"{want}\"]")));
                }
            }
            Condition::StartsWith(name, prefix) => {
                named.push(name);
                if !value_of(name).unwrap_or("").starts_with(prefix.as_str()) {
                    return Err(denied(&format!(
                        "Policy Condition failed: [\"starts-with\", \"${name}\", \"{prefix}\"]"
                    )));
                }
            }
            Condition::LengthRange(lo, hi) => length_range = Some((*lo, *hi)),
        }
    }
    let extra: Vec<&str> = form
        .fields
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !UNCONDITIONED.contains(n) && !n.starts_with("x-ignore-") && !named.contains(n))
        .collect();
    if !extra.is_empty() {
        return Err(denied(&format!("Extra input fields: {}", extra.join(", "))));
    }
    Ok(PostPolicy { access_key: access_key.to_string(), length_range })
}

fn denied(why: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::AccessDenied, format!("Invalid according to Policy: {why}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
    /// `{"name": "value"}` or `["eq", "$name", "value"]`.
    Eq(String, String),
    /// `["starts-with", "$name", "prefix"]` (an empty prefix allows any value).
    StartsWith(String, String),
    /// `["content-length-range", min, max]`.
    LengthRange(u64, u64),
}

#[derive(Debug)]
struct Policy {
    expiration: SystemTime,
    conditions: Vec<Condition>,
}

fn invalid(why: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidPolicyDocument, format!("Invalid Policy: {}", why.into()))
}

fn parse(policy_b64: &str) -> Result<Policy, S3Error> {
    use serde_json::Value;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(policy_b64.trim())
        .map_err(|_| invalid("the policy is not base64"))?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|e| invalid(format!("the policy is not JSON: {e}")))?;
    let expiration = doc
        .get("expiration")
        .and_then(Value::as_str)
        .and_then(parse_iso8601)
        .ok_or_else(|| invalid("Policy missing expiration (an ISO 8601 UTC time)."))?;
    let list = doc.get("conditions").and_then(Value::as_array).ok_or_else(|| invalid("Policy missing conditions."))?;
    let field_name = |v: &Value| -> Result<String, S3Error> {
        let s = v.as_str().ok_or_else(|| invalid("a condition's field is not a string"))?;
        let name = s.strip_prefix('$').ok_or_else(|| invalid(format!("condition field {s:?} must start with $")))?;
        Ok(name.to_ascii_lowercase())
    };
    let mut conditions = Vec::with_capacity(list.len());
    for c in list {
        match c {
            Value::Object(map) => {
                if map.len() != 1 {
                    return Err(invalid("a condition object names exactly one field"));
                }
                for (name, v) in map {
                    let v = v.as_str().ok_or_else(|| invalid(format!("condition {name:?} is not a string")))?;
                    conditions.push(Condition::Eq(name.to_ascii_lowercase(), v.to_string()));
                }
            }
            Value::Array(items) => {
                match items.first().and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                    Some(op @ ("eq" | "starts-with")) if items.len() == 3 => {
                        let name = field_name(&items[1])?;
                        let v = items[2]
                            .as_str()
                            .ok_or_else(|| invalid("a condition's value is not a string"))?
                            .to_string();
                        conditions.push(if op == "eq" {
                            Condition::Eq(name, v)
                        } else {
                            Condition::StartsWith(name, v)
                        });
                    }
                    Some("content-length-range") if items.len() == 3 => {
                        let n = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                        let (Some(lo), Some(hi)) = (n(&items[1]), n(&items[2])) else {
                            return Err(invalid("content-length-range needs two non-negative integers"));
                        };
                        if lo > hi {
                            return Err(invalid("content-length-range minimum is above its maximum"));
                        }
                        conditions.push(Condition::LengthRange(lo, hi));
                    }
                    _ => return Err(invalid(format!("unknown or malformed condition {c}"))),
                }
            }
            _ => return Err(invalid(format!("condition {c} is neither an object nor a list"))),
        }
    }
    Ok(Policy { expiration, conditions })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "AKIDPOST";
    const SECRET: &str = "post-secret";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// A form for `policy` signed with `secret`, with `extra` fields.
    fn form(policy: &str, secret: &str, extra: &[(&str, &str)]) -> PostForm {
        let p = b64(policy);
        let mut f = PostForm::default();
        for (n, v) in extra {
            f.push(n, v.to_string()).unwrap();
        }
        f.push("x-amz-algorithm", ALGORITHM.into()).unwrap();
        f.push("x-amz-credential", format!("{AK}/20261206/us-east-1/s3/aws4_request")).unwrap();
        f.push("x-amz-date", "20261206T120000Z".into()).unwrap();
        f.push("x-amz-signature", sign(&signing_key(secret, "20261206", "us-east-1", "s3"), &p)).unwrap();
        f.push("policy", p).unwrap();
        f
    }

    fn policy(conditions: &str) -> String {
        format!(
            r#"{{"expiration":"2026-12-06T13:00:00.000Z","conditions":[{conditions},
            {{"x-amz-algorithm":"AWS4-HMAC-SHA256"}},{{"x-amz-credential":"{AK}/20261206/us-east-1/s3/aws4_request"}},
            {{"x-amz-date":"20261206T120000Z"}}]}}"#
        )
    }

    fn at(hms: &str) -> SystemTime {
        parse_amz_date(&format!("20261206T{hms}Z")).unwrap()
    }

    fn check(f: &PostForm, when: SystemTime) -> Result<PostPolicy, S3Error> {
        verify(f, "bkt", when, |ak| (ak == AK).then(|| SECRET.to_string()))
    }

    #[test]
    fn a_signed_form_within_its_conditions_is_accepted() {
        let p = policy(
            r#"{"bucket":"bkt"},["starts-with","$key","up/"],["content-length-range",1,1000],["starts-with","$Content-Type","image/"]"#,
        );
        let f = form(&p, SECRET, &[("key", "up/a.png"), ("Content-Type", "image/png"), ("x-ignore-me", "1")]);
        let ok = check(&f, at("120500")).unwrap();
        assert_eq!(ok, PostPolicy { access_key: AK.into(), length_range: Some((1, 1000)) });
    }

    #[test]
    fn each_way_a_form_can_be_wrong_is_refused_with_s3s_code() {
        let p = policy(r#"{"bucket":"bkt"},["starts-with","$key","up/"]"#);
        let code = |f: &PostForm, when| check(f, when).unwrap_err().code;
        // Signed with another secret, or the policy changed after signing.
        assert_eq!(code(&form(&p, "wrong", &[("key", "up/a")]), at("120000")), S3ErrorCode::SignatureDoesNotMatch);
        let mut tampered = form(&p, SECRET, &[("key", "up/a")]);
        let other = b64(&p.replace("up/", ""));
        tampered.fields.iter_mut().filter(|(n, _)| n == "policy").for_each(|(_, v)| *v = other.clone());
        assert_eq!(code(&tampered, at("120000")), S3ErrorCode::SignatureDoesNotMatch);
        // Expired, a key outside the prefix, another bucket, a field no condition names.
        let good = form(&p, SECRET, &[("key", "up/a")]);
        assert_eq!(code(&good, at("130000")), S3ErrorCode::AccessDenied);
        assert_eq!(code(&form(&p, SECRET, &[("key", "down/a")]), at("120000")), S3ErrorCode::AccessDenied);
        let e = verify(&good, "other", at("120000"), |_| Some(SECRET.into())).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::AccessDenied);
        let extra = form(&p, SECRET, &[("key", "up/a"), ("x-amz-meta-owner", "mallory")]);
        let e = check(&extra, at("120000")).unwrap_err();
        assert!(e.message.contains("Extra input fields: x-amz-meta-owner"), "{}", e.message);
        // Unknown key, no policy, a Version 2 form.
        let e = verify(&good, "bkt", at("120000"), |_| None).unwrap_err();
        assert_eq!(e.code, S3ErrorCode::InvalidAccessKeyId);
        let mut unsigned = PostForm::default();
        unsigned.push("key", "up/a".into()).unwrap();
        assert_eq!(code(&unsigned, at("120000")), S3ErrorCode::AccessDenied);
        let mut v2 = unsigned.clone();
        v2.push("AWSAccessKeyId", AK.into()).unwrap();
        assert_eq!(code(&v2, at("120000")), S3ErrorCode::NotImplemented);
        // A field sent twice.
        assert_eq!(unsigned.push("KEY", "x".into()).unwrap_err().code, S3ErrorCode::MalformedPOSTRequest);
    }

    #[test]
    fn malformed_policies_are_invalid_policy_documents() {
        for bad in [
            "not json",
            r#"{"conditions":[]}"#,
            r#"{"expiration":"2026-12-06T13:00:00Z"}"#,
            r#"{"expiration":"2026-12-06T13:00:00Z","conditions":[["starts-with","key","x"]]}"#,
            r#"{"expiration":"2026-12-06T13:00:00Z","conditions":[["content-length-range",9,1]]}"#,
            r#"{"expiration":"2026-12-06T13:00:00Z","conditions":[["in","$key","x"]]}"#,
        ] {
            let f = form(bad, SECRET, &[("key", "k")]);
            assert_eq!(check(&f, at("120000")).unwrap_err().code, S3ErrorCode::InvalidPolicyDocument, "{bad}");
        }
    }
}
