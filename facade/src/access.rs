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
//! - An explicit Deny wins over any Allow.

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

    /// Decide one access of a request by `principal` (`Root` or `Anonymous` today).
    pub fn authorize(&self, principal: Principal<'_>, access: &Access<'_>, facts: &Facts<'_>) -> Result<(), S3Error> {
        let policy = access.bucket.and_then(|b| self.get(b));
        let decision = match &policy {
            None => Decision::Implicit,
            Some(p) => {
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
                p.evaluate(&req)
            }
        };
        let allowed = match principal {
            Principal::Root => {
                let policy_call =
                    matches!(access.action, "s3:PutBucketPolicy" | "s3:GetBucketPolicy" | "s3:DeleteBucketPolicy");
                policy_call || decision != Decision::Deny
            }
            Principal::Anonymous | Principal::User(_) => decision == Decision::Allow,
        };
        if allowed {
            Ok(())
        } else {
            Err(S3Error::access_denied(match (principal, decision) {
                (_, Decision::Deny) => "Access Denied: an explicit Deny in the bucket policy applies",
                (Principal::Anonymous, _) => "Access Denied: anonymous access is not allowed by this bucket's policy",
                _ => "Access Denied",
            }))
        }
    }
}
