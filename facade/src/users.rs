//! Users, their access keys and their identity policies.
//!
//! A user is one node-wide engine attribute, `user/<name>`, holding its record as JSON (durable
//! in tablet 0's log before an admin call answers, kept by checkpoints). The record holds each
//! key's secret as given: SigV4 and SigV2 are HMACs keyed by (a key derived from) the secret,
//! so the server must be able to recover it, as MinIO and Garage do. The devices' metadata
//! logs therefore hold secrets: only file permissions on the data directories protect them
//! (the server does not change those; the operator keeps them private to its user, as for
//! `<data>/credentials`). Secrets never appear in logs, status output or `tessera user list`.
//!
//! The facade holds every user parsed in a per-process snapshot that every core reads without
//! a lock (`ArcSwap`: one atomic load per request), indexed by access key. Writers (admin calls)
//! take one async lock, write the engine first and then publish the new snapshot, so the
//! engine's order and the snapshot's are the same and a change answered is in force on every
//! core: a deleted or disabled key is refused by the very next request.

use arc_swap::ArcSwap;
use engine::Engine;
use rand::Rng;
use s3::auth::policy::{Decision, Policy, PolicyKind, Request, POLICY_BYTES_MAX};
use s3::error::{S3Error, S3ErrorCode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The engine attribute name of user `name` is this prefix and the name.
pub const USER_ATTR_PREFIX: &str = "user/";
/// IAM's bound on a user name.
pub const USER_NAME_BYTES_MAX: usize = 64;
/// Access keys per user, at most (IAM allows two: one in use, one being rotated in).
pub const KEYS_PER_USER_MAX: usize = 2;
/// Users on one node, at most (each is in memory on every request's path).
pub const USERS_MAX: usize = 10_000;
/// Generated access key ids: `TK` and this many characters of `[A-Z0-9]` (20 in all, as AWS).
const ACCESS_KEY_RANDOM_CHARS: usize = 18;
/// Generated secrets: this many characters of `[A-Za-z0-9]` (238 bits).
const SECRET_KEY_CHARS: usize = 40;

/// Whether a user or a key may sign requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Inactive,
}

/// One access key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub access_key: String,
    pub secret_key: String,
    pub status: Status,
    pub created_ms: u64,
}

/// One user as stored (the JSON value of its engine attribute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub status: Status,
    pub created_ms: u64,
    pub keys: Vec<KeyRecord>,
    /// The identity policy attached, as the operator sent it.
    pub policy: Option<String>,
}

/// A user in force: its record and its policy parsed.
#[derive(Debug)]
pub struct User {
    pub record: UserRecord,
    /// `None` when the user has no policy, or its stored policy no longer parses (see
    /// `identity_decision`).
    parsed: Option<Policy>,
}

impl User {
    fn new(record: UserRecord) -> User {
        let parsed = record.policy.as_deref().and_then(|text| match Policy::parse(text, PolicyKind::Identity) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(
                    "user {}: its stored identity policy does not parse ({e}); it denies everything until replaced",
                    record.name
                );
                None
            }
        });
        User { record, parsed }
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// What the user's identity policy says about `req`. A policy that is stored but does not
    /// parse (written by another build) denies: it must never allow by mistake.
    pub fn identity_decision(&self, req: &Request<'_>) -> Decision {
        match (&self.record.policy, &self.parsed) {
            (None, _) => Decision::Implicit,
            (Some(_), Some(p)) => p.evaluate(req),
            (Some(_), None) => Decision::Deny,
        }
    }
}

/// Every user, and every key's user.
#[derive(Default)]
struct Snapshot {
    by_name: BTreeMap<String, Arc<User>>,
    by_key: HashMap<String, Arc<User>>,
}

impl Snapshot {
    fn build(records: impl IntoIterator<Item = UserRecord>) -> Snapshot {
        let mut s = Snapshot::default();
        for r in records {
            let u = Arc::new(User::new(r));
            for k in &u.record.keys {
                s.by_key.insert(k.access_key.clone(), u.clone());
            }
            s.by_name.insert(u.record.name.clone(), u);
        }
        s
    }

    /// The secret of `access_key` if it may sign: the key and its user are active.
    fn secret_for(&self, access_key: &str) -> Option<String> {
        let u = self.by_key.get(access_key)?;
        let k = u.record.keys.iter().find(|k| k.access_key == access_key)?;
        (u.record.status == Status::Active && k.status == Status::Active).then(|| k.secret_key.clone())
    }
}

/// A user name as IAM allows it: 1 to 64 of `[A-Za-z0-9+=,.@_-]`.
pub fn check_user_name(name: &str) -> Result<(), S3Error> {
    let ok = !name.is_empty()
        && name.len() <= USER_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(S3Error::invalid_argument(format!(
            "user name {name:?}: give 1 to {USER_NAME_BYTES_MAX} characters of A-Z a-z 0-9 + = , . @ _ -"
        )))
    }
}

fn random_chars(n: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

/// A new key pair: `TK` + 18 of `[A-Z0-9]`, and 40 of `[A-Za-z0-9]`, from the thread's CSPRNG.
fn new_key(now_ms: u64) -> KeyRecord {
    const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    KeyRecord {
        access_key: format!("TK{}", random_chars(ACCESS_KEY_RANDOM_CHARS, UPPER_DIGITS)),
        secret_key: random_chars(SECRET_KEY_CHARS, ALNUM),
        status: Status::Active,
        created_ms: now_ms,
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn no_such_user(name: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchEntity, format!("The user with name {name} cannot be found."))
}

fn no_such_key(name: &str, key: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::NoSuchEntity, format!("User {name} has no access key {key}."))
}

/// One admin change to the users, decided on the snapshot before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateUser { name: String },
    DeleteUser { name: String },
    CreateKey { name: String },
    DeleteKey { name: String, access_key: String },
    SetKeyStatus { name: String, access_key: String, status: Status },
    PutPolicy { name: String, text: String },
    DeletePolicy { name: String },
}

impl Change {
    /// The user the change is to.
    pub fn user(&self) -> &str {
        match self {
            Change::CreateUser { name }
            | Change::DeleteUser { name }
            | Change::CreateKey { name }
            | Change::DeleteKey { name, .. }
            | Change::SetKeyStatus { name, .. }
            | Change::PutPolicy { name, .. }
            | Change::DeletePolicy { name } => name,
        }
    }
}

/// The user's new record (`None`: deleted) after `change`, and the key it created, if any.
/// Pure: checks everything against the snapshot and the root key, writes nothing.
fn plan(
    s: &Snapshot,
    root_access_key: &str,
    change: &Change,
    now_ms: u64,
) -> Result<(Option<UserRecord>, Option<KeyRecord>), S3Error> {
    let name = change.user();
    check_user_name(name)?;
    let current = s.by_name.get(name).map(|u| &u.record);
    // A new key id must be no other key's: the root's, or any user's (a clash is 1 in 36^18,
    // but a clash would hand one identity's requests to another).
    let fresh_key = || {
        for _ in 0..8 {
            let k = new_key(now_ms);
            if k.access_key != root_access_key && !s.by_key.contains_key(&k.access_key) {
                return Ok(k);
            }
        }
        Err(S3Error::internal("could not generate an unused access key id"))
    };
    if let Change::CreateUser { .. } = change {
        if current.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityAlreadyExists,
                format!("User with name {name} already exists."),
            ));
        }
        if s.by_name.len() >= USERS_MAX {
            return Err(S3Error::with_message(
                S3ErrorCode::LimitExceeded,
                format!("This node has {USERS_MAX} users, the most it holds."),
            ));
        }
        let key = fresh_key()?;
        let rec = UserRecord {
            name: name.to_string(),
            status: Status::Active,
            created_ms: now_ms,
            keys: vec![key.clone()],
            policy: None,
        };
        return Ok((Some(rec), Some(key)));
    }
    let mut rec = current.cloned().ok_or_else(|| no_such_user(name))?;
    let key_index = |rec: &UserRecord, ak: &str| {
        rec.keys.iter().position(|k| k.access_key == ak).ok_or_else(|| no_such_key(name, ak))
    };
    match change {
        Change::CreateUser { .. } => unreachable!("handled above"),
        Change::DeleteUser { .. } => return Ok((None, None)),
        Change::CreateKey { .. } => {
            if rec.keys.len() >= KEYS_PER_USER_MAX {
                return Err(S3Error::with_message(
                    S3ErrorCode::LimitExceeded,
                    format!(
                        "User {name} has {KEYS_PER_USER_MAX} access keys, the most a user may have: delete one first."
                    ),
                ));
            }
            let key = fresh_key()?;
            rec.keys.push(key.clone());
            return Ok((Some(rec), Some(key)));
        }
        Change::DeleteKey { access_key, .. } => {
            let i = key_index(&rec, access_key)?;
            rec.keys.remove(i);
        }
        Change::SetKeyStatus { access_key, status, .. } => {
            let i = key_index(&rec, access_key)?;
            rec.keys[i].status = *status;
        }
        Change::PutPolicy { text, .. } => {
            if text.len() > POLICY_BYTES_MAX {
                return Err(S3Error::with_message(
                    S3ErrorCode::MalformedPolicy,
                    format!("Policies are at most {POLICY_BYTES_MAX} bytes"),
                ));
            }
            Policy::parse(text, PolicyKind::Identity)
                .map_err(|e| S3Error::with_message(S3ErrorCode::MalformedPolicy, e.0))?;
            rec.policy = Some(text.clone());
        }
        Change::DeletePolicy { .. } => {
            if rec.policy.is_none() {
                return Err(S3Error::with_message(
                    S3ErrorCode::NoSuchEntity,
                    format!("User {name} has no identity policy."),
                ));
            }
            rec.policy = None;
        }
    }
    Ok((Some(rec), None))
}

pub struct Users {
    snapshot: ArcSwap<Snapshot>,
    /// The root user's access key: no user's key may equal it.
    root_access_key: String,
    writers: futures::lock::Mutex<()>,
}

impl Users {
    /// The users stored in the engine. A record that does not parse stops the start: skipping
    /// it would silently refuse its keys, guessing would be worse.
    pub async fn load(engine: &Engine, root_access_key: &str) -> Result<Users, String> {
        let attrs = engine.system_attrs().await.map_err(|e| format!("reading users: {e}"))?;
        let mut records = Vec::new();
        for (attr, value) in attrs {
            let Some(name) = attr.strip_prefix(USER_ATTR_PREFIX) else {
                continue;
            };
            let rec: UserRecord = serde_json::from_str(&value)
                .map_err(|e| format!("user {name}: its stored record does not parse: {e}"))?;
            if rec.name != name {
                return Err(format!("user {name}: its stored record names {}", rec.name));
            }
            records.push(rec);
        }
        Ok(Users::from_records(records, root_access_key))
    }

    pub fn from_records(records: Vec<UserRecord>, root_access_key: &str) -> Users {
        Users {
            snapshot: ArcSwap::from_pointee(Snapshot::build(records)),
            root_access_key: root_access_key.to_string(),
            writers: futures::lock::Mutex::new(()),
        }
    }

    /// The secret of an active key of an active user; `None` otherwise (InvalidAccessKeyId).
    pub fn secret_for(&self, access_key: &str) -> Option<String> {
        self.snapshot.load().secret_for(access_key)
    }

    /// The user `access_key` belongs to if it may sign (checked again after authentication:
    /// a key deleted meanwhile is refused, not taken for someone else).
    pub fn signer(&self, access_key: &str) -> Option<Arc<User>> {
        let s = self.snapshot.load();
        s.secret_for(access_key)?;
        s.by_key.get(access_key).cloned()
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.snapshot.load().by_name.get(name).cloned()
    }

    /// Every user, in name order.
    pub fn list(&self) -> Vec<Arc<User>> {
        self.snapshot.load().by_name.values().cloned().collect()
    }

    /// Apply an admin change: checked, written to the engine, then in force on every core.
    /// Returns the key it created, if any (its secret is shown this once).
    pub async fn apply(&self, engine: &Engine, change: Change) -> Result<Option<KeyRecord>, S3Error> {
        let _w = self.writers.lock().await;
        let current = self.snapshot.load_full();
        let (record, key) = plan(&current, &self.root_access_key, &change, now_ms())?;
        let name = change.user();
        // Strings, numbers and enums: serialising cannot fail.
        let value = record.as_ref().map(|r| serde_json::to_string(r).expect("user records serialise"));
        engine
            .set_system_attr(&format!("{USER_ATTR_PREFIX}{name}"), value)
            .await
            .map_err(crate::engine_error::to_s3)?;
        let mut records: Vec<UserRecord> =
            current.by_name.values().filter(|u| u.record.name != name).map(|u| u.record.clone()).collect();
        records.extend(record);
        self.snapshot.store(Arc::new(Snapshot::build(records)));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "ROOTKEY";

    fn apply(s: &Snapshot, change: Change) -> Result<(Snapshot, Option<KeyRecord>), S3Error> {
        let (rec, key) = plan(s, ROOT, &change, 7)?;
        let name = change.user().to_string();
        let mut records: Vec<UserRecord> =
            s.by_name.values().filter(|u| u.record.name != name).map(|u| u.record.clone()).collect();
        records.extend(rec);
        Ok((Snapshot::build(records), key))
    }

    fn code(r: Result<(Snapshot, Option<KeyRecord>), S3Error>) -> S3ErrorCode {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn a_created_user_signs_with_its_new_key_until_disabled_or_deleted() {
        let s = Snapshot::default();
        let (s, key) = apply(&s, Change::CreateUser { name: "alice".into() }).unwrap();
        let key = key.unwrap();
        assert!(key.access_key.starts_with("TK") && key.access_key.len() == 20, "{}", key.access_key);
        assert_eq!(key.secret_key.len(), SECRET_KEY_CHARS);
        assert_eq!(s.secret_for(&key.access_key).as_deref(), Some(key.secret_key.as_str()));
        let ak = key.access_key.clone();
        let (s, _) =
            apply(&s, Change::SetKeyStatus { name: "alice".into(), access_key: ak.clone(), status: Status::Inactive })
                .unwrap();
        assert_eq!(s.secret_for(&ak), None, "a disabled key signs nothing");
        let (s, _) =
            apply(&s, Change::SetKeyStatus { name: "alice".into(), access_key: ak.clone(), status: Status::Active })
                .unwrap();
        assert!(s.secret_for(&ak).is_some());
        let (s, _) = apply(&s, Change::DeleteUser { name: "alice".into() }).unwrap();
        assert_eq!(s.secret_for(&ak), None, "a deleted user's key signs nothing");
        assert!(s.by_name.is_empty() && s.by_key.is_empty());
    }

    #[test]
    fn bad_changes_are_refused_with_the_iam_error() {
        let s = Snapshot::default();
        assert_eq!(code(apply(&s, Change::CreateUser { name: "".into() })), S3ErrorCode::InvalidArgument);
        assert_eq!(code(apply(&s, Change::CreateUser { name: "a/b".into() })), S3ErrorCode::InvalidArgument);
        assert_eq!(code(apply(&s, Change::CreateUser { name: "x".repeat(65) })), S3ErrorCode::InvalidArgument);
        assert_eq!(code(apply(&s, Change::DeleteUser { name: "nobody".into() })), S3ErrorCode::NoSuchEntity);
        let (s, key) = apply(&s, Change::CreateUser { name: "bob".into() }).unwrap();
        assert_eq!(code(apply(&s, Change::CreateUser { name: "bob".into() })), S3ErrorCode::EntityAlreadyExists);
        assert_eq!(
            code(apply(&s, Change::DeleteKey { name: "bob".into(), access_key: "TKNOPE".into() })),
            S3ErrorCode::NoSuchEntity
        );
        assert_eq!(code(apply(&s, Change::DeletePolicy { name: "bob".into() })), S3ErrorCode::NoSuchEntity);
        assert_eq!(
            code(apply(&s, Change::PutPolicy { name: "bob".into(), text: "{".into() })),
            S3ErrorCode::MalformedPolicy
        );
        let with_principal = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#;
        assert_eq!(
            code(apply(&s, Change::PutPolicy { name: "bob".into(), text: with_principal.into() })),
            S3ErrorCode::MalformedPolicy
        );
        let (s, second) = apply(&s, Change::CreateKey { name: "bob".into() }).unwrap();
        assert_ne!(second.unwrap().access_key, key.unwrap().access_key);
        assert_eq!(code(apply(&s, Change::CreateKey { name: "bob".into() })), S3ErrorCode::LimitExceeded);
    }

    #[test]
    fn a_deleted_key_goes_and_the_other_stays() {
        let (s, k1) = apply(&Snapshot::default(), Change::CreateUser { name: "carol".into() }).unwrap();
        let (s, k2) = apply(&s, Change::CreateKey { name: "carol".into() }).unwrap();
        let (k1, k2) = (k1.unwrap().access_key, k2.unwrap().access_key);
        let (s, _) = apply(&s, Change::DeleteKey { name: "carol".into(), access_key: k1.clone() }).unwrap();
        assert_eq!(s.secret_for(&k1), None);
        assert!(s.secret_for(&k2).is_some());
        assert_eq!(s.by_name["carol"].record.keys.len(), 1);
    }

    #[test]
    fn a_stored_policy_that_no_longer_parses_denies() {
        let rec = UserRecord {
            name: "dave".into(),
            status: Status::Active,
            created_ms: 1,
            keys: vec![],
            policy: Some("not json".into()),
        };
        let u = User::new(rec);
        let req = Request {
            principal: s3::auth::policy::Principal::User("dave"),
            action: "s3:getobject",
            bucket: "b",
            key: Some("k"),
            prefix: None,
            delimiter: None,
            max_keys: None,
            acl: None,
            source_ip: None,
            secure_transport: false,
            now_secs: 0,
        };
        assert_eq!(u.identity_decision(&req), Decision::Deny);
    }

    #[test]
    fn records_round_trip_through_json() {
        let (s, _) = apply(&Snapshot::default(), Change::CreateUser { name: "erin".into() }).unwrap();
        let rec = s.by_name["erin"].record.clone();
        let json = serde_json::to_string(&rec).unwrap();
        assert!(json.contains("\"status\":\"active\""), "{json}");
        assert_eq!(serde_json::from_str::<UserRecord>(&json).unwrap(), rec);
    }
}
