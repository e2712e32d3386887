//! Who may do what: the bucket policies in force and the decision for one request.
//!
//! Policies are stored in the engine (a bucket attribute, durable before PutBucketPolicy
//! answers) and held here parsed, in a map every core reads without a lock (`ArcSwap`: one
//! atomic load per request). Writers (policy puts and deletes, bucket deletes) take one async
//! lock so that the engine's order and the map's order are the same.
//!
//! The rules, AWS's for a bucket owner's account:
//! - The root user may do anything a bucket policy does not explicitly deny; it may always
//!   read, replace and delete the policy itself (a policy cannot lock its owner out).
//! - An anonymous request may do only what a bucket policy explicitly allows, and never
//!   list or create buckets.
//! - A user (see `users`) may do what its identity policy or a bucket policy allows it, as
//!   within one AWS account; never the policy calls unless a policy allows them.
//! - An explicit Deny in either policy wins over any Allow.

use crate::users::User;
use arc_swap::ArcSwap;
use engine::Engine;
use http::HeaderMap;
use s3::auth::policy::{Decision, Policy, PolicyKind, Principal, Request};
use s3::error::{S3Error, S3ErrorCode};
use s3::router::{Access, Query};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The bucket attribute a policy is stored under.
pub const POLICY_ATTR: &str = "policy";

/// A bucket's policy as stored.
#[derive(Debug)]
pub struct StoredPolicy {
    /// The document as the client sent it (GetBucketPolicy returns it unchanged).
    pub text: String,
    /// `None` if it no longer parses (a stored policy this build does not understand): it
    /// then denies everyone but the root user's policy calls, never allows by mistake.
    pub parsed: Option<Policy>,
}

impl StoredPolicy {
    fn evaluate(&self, req: &Request<'_>) -> Decision {
        match &self.parsed {
            Some(p) => p.evaluate(req),
            None => Decision::Deny,
        }
    }
}

pub struct Policies {
    by_bucket: ArcSwap<HashMap<String, Arc<StoredPolicy>>>,
    writers: futures::lock::Mutex<()>,
}

/// What a request is, beyond its endpoint, for conditions in policies.
pub struct Facts<'a> {
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub source_ip: Option<IpAddr>,
    pub secure_transport: bool,
}

impl Policies {
    /// The policies stored in the engine, parsed.
    pub async fn load(engine: &Engine) -> Result<Policies, String> {
        let attrs = engine.bucket_attrs(None).await.map_err(|e| format!("reading bucket policies: {e}"))?;
        let mut map = HashMap::new();
        for (bucket, attr, text) in attrs {
            if attr != POLICY_ATTR {
                continue;
            }
            let parsed = match Policy::parse(&text, PolicyKind::Bucket(&bucket)) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!("bucket {bucket}: its stored policy does not parse ({e}); denying all but the root user's policy calls until it is replaced");
                    None
                }
            };
            map.insert(bucket, Arc::new(StoredPolicy { text, parsed }));
        }
        Ok(Policies { by_bucket: ArcSwap::from_pointee(map), writers: futures::lock::Mutex::new(()) })
    }

    pub fn get(&self, bucket: &str) -> Option<Arc<StoredPolicy>> {
        self.by_bucket.load().get(bucket).cloned()
    }

    fn replace(&self, bucket: &str, policy: Option<Arc<StoredPolicy>>) {
        let mut map = HashMap::clone(&self.by_bucket.load());
        match policy {
            Some(p) => map.insert(bucket.to_string(), p),
            None => map.remove(bucket),
        };
        self.by_bucket.store(Arc::new(map));
    }

    /// PutBucketPolicy: checked, stored durably, then in force on every core.
    pub async fn put(&self, engine: &Engine, bucket: &str, text: String) -> Result<(), S3Error> {
        let parsed = Policy::parse(&text, PolicyKind::Bucket(bucket))
            .map_err(|e| S3Error::with_message(S3ErrorCode::MalformedPolicy, e.0))?;
        let _w = self.writers.lock().await;
        engine.set_bucket_attr(bucket, POLICY_ATTR, Some(text.clone())).await.map_err(crate::engine_error::to_s3)?;
        self.replace(bucket, Some(Arc::new(StoredPolicy { text, parsed: Some(parsed) })));
        Ok(())
    }

    /// DeleteBucketPolicy (no policy is not an error, as in S3).
    pub async fn delete(&self, engine: &Engine, bucket: &str) -> Result<(), S3Error> {
        let _w = self.writers.lock().await;
        engine.set_bucket_attr(bucket, POLICY_ATTR, None).await.map_err(crate::engine_error::to_s3)?;
        self.replace(bucket, None);
        Ok(())
    }

    /// DeleteBucket, with the policy forgotten in the same step (the engine drops it with the
    /// bucket): a bucket created later under the name starts without it.
    pub async fn delete_bucket(&self, engine: &Engine, bucket: &str) -> Result<(), S3Error> {
        let _w = self.writers.lock().await;
        engine.delete_bucket(bucket).await.map_err(crate::engine_error::to_s3)?;
        self.replace(bucket, None);
        Ok(())
    }

    /// Decide one access of a request by `caller`.
    pub fn authorize(&self, caller: &Caller, access: &Access<'_>, facts: &Facts<'_>) -> Result<(), S3Error> {
        let principal = caller.principal();
        let policy = access.bucket.and_then(|b| self.get(b));
        // The common case (root or anonymous, no bucket policy) needs no request facts: no
        // clock read and no query or header lookups on every request.
        if policy.is_none() && !matches!(caller, Caller::User(_)) {
            return decide(principal, access.action, Decision::Implicit, Decision::Implicit)
                .map_err(S3Error::access_denied);
        }
        let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let q = |n: &str| facts.query.get(n);
        let req = Request {
            principal,
            action: access.action,
            bucket: access.bucket.unwrap_or(""),
            key: access.key,
            prefix: q("prefix"),
            delimiter: q("delimiter"),
            max_keys: q("max-keys"),
            acl: facts.headers.get("x-amz-acl").and_then(|v| v.to_str().ok()),
            source_ip: facts.source_ip,
            secure_transport: facts.secure_transport,
            now_secs,
        };
        let bucket = match policy {
            None => Decision::Implicit,
            Some(p) => p.evaluate(&req),
        };
        let identity = match caller {
            Caller::User(u) => u.identity_decision(&req),
            Caller::Anonymous | Caller::Root => Decision::Implicit,
        };
        decide(principal, access.action, bucket, identity).map_err(S3Error::access_denied)
    }
}

/// Who signed a request, as authentication found it.
#[derive(Clone)]
pub enum Caller {
    Anonymous,
    Root,
    /// A user's active key; the user as it was when the request was authenticated.
    User(Arc<User>),
}

impl Caller {
    pub fn principal(&self) -> Principal<'_> {
        match self {
            Caller::Anonymous => Principal::Anonymous,
            Caller::Root => Principal::Root,
            Caller::User(u) => Principal::User(u.name()),
        }
    }
}

/// The decision rule, given what the bucket policy and the caller's identity policy say:
/// - root: anything the bucket policy does not explicitly deny, and always the policy calls;
/// - a user: what either policy allows (AWS's rule within one account), unless either
///   explicitly denies;
/// - anonymous: only what the bucket policy allows.
fn decide(principal: Principal<'_>, action: &str, bucket: Decision, identity: Decision) -> Result<(), &'static str> {
    let combined = bucket.and(identity);
    let allowed = match principal {
        Principal::Root => {
            let policy_call = matches!(action, "s3:PutBucketPolicy" | "s3:GetBucketPolicy" | "s3:DeleteBucketPolicy");
            policy_call || bucket != Decision::Deny
        }
        Principal::User(_) => combined == Decision::Allow,
        Principal::Anonymous => bucket == Decision::Allow,
    };
    if allowed {
        return Ok(());
    }
    Err(match (principal, bucket, identity) {
        (_, Decision::Deny, _) => "Access Denied: an explicit Deny in the bucket policy applies",
        (_, _, Decision::Deny) => "Access Denied: an explicit Deny in the user's identity policy applies",
        (Principal::Anonymous, _, _) => "Access Denied: anonymous access is not allowed by this bucket's policy",
        (Principal::User(_), _, _) => {
            "Access Denied: neither the user's identity policy nor the bucket policy allows this"
        }
        _ => "Access Denied",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::{Allow, Deny, Implicit};

    const ALL: [Decision; 3] = [Allow, Deny, Implicit];

    #[test]
    fn a_user_gets_what_either_policy_allows_unless_either_denies() {
        let alice = Principal::User("alice");
        for b in ALL {
            for i in ALL {
                let want = (b == Allow || i == Allow) && b != Deny && i != Deny;
                assert_eq!(decide(alice, "s3:GetObject", b, i).is_ok(), want, "bucket {b:?} identity {i:?}");
            }
        }
        assert!(decide(alice, "s3:PutBucketPolicy", Implicit, Implicit).is_err(), "no owner's privilege");
        assert!(decide(alice, "s3:GetObject", Implicit, Deny).unwrap_err().contains("identity policy"));
    }

    #[test]
    fn root_and_anonymous_are_decided_by_the_bucket_policy_alone() {
        for i in ALL {
            assert!(decide(Principal::Root, "s3:GetObject", Implicit, i).is_ok());
            assert!(decide(Principal::Root, "s3:GetObject", Deny, i).is_err());
            assert!(decide(Principal::Root, "s3:DeleteBucketPolicy", Deny, i).is_ok());
            assert!(decide(Principal::Anonymous, "s3:GetObject", Allow, i).is_ok());
            assert!(decide(Principal::Anonymous, "s3:GetObject", Implicit, i).is_err());
        }
    }
}
