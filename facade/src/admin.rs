//! The admin endpoints: `GET /_tessera/status` (the engine's health as JSON) and
//! `POST /_tessera/device/replace?device=N&path=P[&force=true]` (replace a failed device with a
//! new, empty one on the running node), both signed by the root user like any S3 request; and
//! their JSON documents, which the server writes and the admin client (`cli::admin`) reads.
//!
//! The path cannot shadow a bucket: bucket names never contain `_`. It is only recognised on
//! path-style requests; on a virtual-hosted-style host (`bucket.<domain>`) the same path is an
//! ordinary object key and goes to the S3 router.

use serde::{Deserialize, Serialize};

/// The admin status path.
pub const STATUS_PATH: &str = "/_tessera/status";
/// The admin device replacement path (POST).
pub const REPLACE_PATH: &str = "/_tessera/device/replace";

/// Users: GET lists, POST `?name=N` creates (answers its first key), DELETE `?name=N` deletes.
pub const USERS_PATH: &str = "/_tessera/users";
/// A user's keys: POST `?name=N` creates one, DELETE `?name=N&key=AK` deletes one.
pub const USER_KEYS_PATH: &str = "/_tessera/users/keys";
/// POST `?name=N&key=AK&status=active|inactive`: enable or disable a key.
pub const USER_KEY_STATUS_PATH: &str = "/_tessera/users/keys/status";
/// A user's identity policy: PUT (the document is the body), GET, DELETE, all `?name=N`.
pub const USER_POLICY_PATH: &str = "/_tessera/users/policy";

/// Every admin path starts with this; none is a bucket (bucket names never contain `_`).
const ADMIN_PREFIX: &str = "/_tessera/";

/// One admin call, by method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    Status,
    Replace,
    Users(UsersCall),
    /// Under the admin prefix but no call: refused (and only after the root check, so the
    /// answer tells nobody else which calls exist).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersCall {
    List,
    Create,
    Delete,
    CreateKey,
    DeleteKey,
    SetKeyStatus,
    PutPolicy,
    GetPolicy,
    DeletePolicy,
}

/// The admin call a request is, if its path is an admin path (path-style only; see the
/// module comment).
pub fn route(method: &http::Method, path: &str, headers: &http::HeaderMap, domain: Option<&str>) -> Option<AdminRoute> {
    use http::Method as M;
    // `/_tessera/` alone is a bucket-level S3 path (a bucket named `_tessera`): the router
    // answers it (InvalidBucketName), as it would any other invalid name.
    if !path.starts_with(ADMIN_PREFIX)
        || path == ADMIN_PREFIX
        || s3::router::virtual_hosted_bucket(headers, domain).is_some()
    {
        return None;
    }
    Some(match (method, path) {
        (&M::GET, STATUS_PATH) => AdminRoute::Status,
        (&M::POST, REPLACE_PATH) => AdminRoute::Replace,
        (&M::GET, USERS_PATH) => AdminRoute::Users(UsersCall::List),
        (&M::POST, USERS_PATH) => AdminRoute::Users(UsersCall::Create),
        (&M::DELETE, USERS_PATH) => AdminRoute::Users(UsersCall::Delete),
        (&M::POST, USER_KEYS_PATH) => AdminRoute::Users(UsersCall::CreateKey),
        (&M::DELETE, USER_KEYS_PATH) => AdminRoute::Users(UsersCall::DeleteKey),
        (&M::POST, USER_KEY_STATUS_PATH) => AdminRoute::Users(UsersCall::SetKeyStatus),
        (&M::PUT, USER_POLICY_PATH) => AdminRoute::Users(UsersCall::PutPolicy),
        (&M::GET, USER_POLICY_PATH) => AdminRoute::Users(UsersCall::GetPolicy),
        (&M::DELETE, USER_POLICY_PATH) => AdminRoute::Users(UsersCall::DeletePolicy),
        _ => AdminRoute::Unknown,
    })
}

/// One user as `GET /_tessera/users` lists it: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserReport {
    pub name: String,
    pub status: crate::users::Status,
    pub created_ms: u64,
    pub keys: Vec<KeyReport>,
    pub has_policy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    pub access_key: String,
    pub status: crate::users::Status,
    pub created_ms: u64,
}

impl From<&crate::users::UserRecord> for UserReport {
    fn from(r: &crate::users::UserRecord) -> UserReport {
        UserReport {
            name: r.name.clone(),
            status: r.status,
            created_ms: r.created_ms,
            keys: r
                .keys
                .iter()
                .map(|k| KeyReport { access_key: k.access_key.clone(), status: k.status, created_ms: k.created_ms })
                .collect(),
            has_policy: r.policy.is_some(),
        }
    }
}

/// A key just created: the only answer that carries its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKeyReport {
    pub user: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Whether a request is the admin status call (path-style only; see the module comment).
pub fn is_status_request(method: &http::Method, path: &str, headers: &http::HeaderMap, domain: Option<&str>) -> bool {
    is_admin(method, path, headers, domain, &http::Method::GET, STATUS_PATH)
}

/// Whether a request is the admin device replacement (path-style only).
pub fn is_replace_request(method: &http::Method, path: &str, headers: &http::HeaderMap, domain: Option<&str>) -> bool {
    is_admin(method, path, headers, domain, &http::Method::POST, REPLACE_PATH)
}

fn is_admin(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    domain: Option<&str>,
    want_method: &http::Method,
    want_path: &str,
) -> bool {
    if path != want_path || method != want_method {
        return false;
    }
    // The router's own test: a virtual-hosted request names a bucket, never an admin route.
    s3::router::virtual_hosted_bucket(headers, domain).is_none()
}

/// A device named as `N` or `devN` (as `tessera status` shows it).
pub fn parse_device(s: &str) -> Result<u16, String> {
    let n = s.strip_prefix("dev").unwrap_or(s);
    n.parse::<u16>().map_err(|_| format!("device {s:?}: give its number as `tessera status` shows it (4 or dev4)"))
}

/// `GET /_tessera/status`: the node's health. Field names and order are the wire format
/// (scripts read `tessera status --json`): add fields, never rename them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub devices: Vec<DeviceReport>,
    pub objects_below_redundancy: u64,
    pub repairs_queued: u64,
    pub repairs_waiting: u64,
    pub repaired_parts: u64,
    pub repaired_stripes: u64,
    pub repair_failures: u64,
    pub scrubbed_bytes: u64,
    pub scrub_errors: u64,
    pub scrub_passes: u64,
    pub scrub_period_secs: u64,
    pub io_shares: IoSharesReport,
}

/// One device of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub index: u16,
    pub zone: String,
    /// `null` when the node knows no path for the device.
    pub path: Option<String>,
    pub healthy: bool,
    pub io_errors: u64,
}

/// The background I/O shares in force, in percent of the device bytes while clients are busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoSharesReport {
    pub repair: u32,
    pub scrub: u32,
    pub compaction: u32,
}

impl From<&engine::HealthStatus> for StatusReport {
    fn from(st: &engine::HealthStatus) -> StatusReport {
        StatusReport {
            devices: st
                .devices
                .iter()
                .map(|d| DeviceReport {
                    index: d.index,
                    zone: d.zone.clone(),
                    path: d.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
                    healthy: d.healthy,
                    io_errors: d.io_errors,
                })
                .collect(),
            objects_below_redundancy: st.objects_below_redundancy,
            repairs_queued: st.repairs_queued,
            repairs_waiting: st.repairs_waiting,
            repaired_parts: st.repaired_parts,
            repaired_stripes: st.repaired_stripes,
            repair_failures: st.repair_failures,
            scrubbed_bytes: st.scrubbed_bytes,
            scrub_errors: st.scrub_errors,
            scrub_passes: st.scrub_passes,
            scrub_period_secs: st.scrub_period_secs,
            io_shares: IoSharesReport {
                repair: st.io_shares.repair_percent,
                scrub: st.io_shares.scrub_percent,
                compaction: st.io_shares.compaction_percent,
            },
        }
    }
}

/// `POST /_tessera/device/replace`: what the replacement did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceReport {
    pub device: u16,
    pub zone: String,
    /// `null` when no path was known for the old device.
    pub old_path: Option<String>,
    pub new_path: String,
    /// Segment ids below this on the device were lost with the old one.
    pub seg_base: u32,
    /// Objects queued to have shards rebuilt onto the new device (or re-placed).
    pub queued: u64,
    /// Whether O_DIRECT works on the new device.
    pub direct_io: bool,
}

impl From<&engine::ReplaceReport> for ReplaceReport {
    fn from(r: &engine::ReplaceReport) -> ReplaceReport {
        ReplaceReport {
            device: r.device,
            zone: r.zone.clone(),
            old_path: r.old_path.as_ref().map(|p| p.to_string_lossy().into_owned()),
            new_path: r.new_path.to_string_lossy().into_owned(),
            seg_base: r.seg_base,
            queued: r.queued,
            direct_io: r.direct_io,
        }
    }
}

/// A report as the JSON body of an admin answer.
pub fn to_json<T: Serialize>(report: &T) -> String {
    // Plain structs of strings, numbers and booleans: serialising them cannot fail.
    serde_json::to_string(report).expect("admin reports serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{DeviceHealth, HealthStatus};

    fn sample() -> HealthStatus {
        HealthStatus {
            devices: vec![
                DeviceHealth {
                    index: 0,
                    zone: "z1".into(),
                    path: Some("/d/\"0\"".into()),
                    healthy: true,
                    io_errors: 0,
                },
                DeviceHealth { index: 1, zone: "z1".into(), path: None, healthy: false, io_errors: 7 },
            ],
            objects_below_redundancy: 3,
            repairs_queued: 2,
            repairs_waiting: 1,
            repaired_parts: 5,
            repaired_stripes: 9,
            repair_failures: 0,
            scrubbed_bytes: 3 << 20,
            scrub_errors: 1,
            scrub_passes: 4,
            io_shares: engine::IoShares { repair_percent: 11, scrub_percent: 3, compaction_percent: 17 },
            scrub_period_secs: 48 * 3600,
        }
    }

    /// The bytes the hand-written writer produced before serde: scripts that read
    /// `tessera status --json` see the same document.
    #[test]
    fn status_json_is_the_documented_wire_format() {
        let json = to_json(&StatusReport::from(&sample()));
        assert_eq!(
            json,
            "{\"devices\":[{\"index\":0,\"zone\":\"z1\",\"path\":\"/d/\\\"0\\\"\",\"healthy\":true,\"io_errors\":0},\
             {\"index\":1,\"zone\":\"z1\",\"path\":null,\"healthy\":false,\"io_errors\":7}],\
             \"objects_below_redundancy\":3,\"repairs_queued\":2,\"repairs_waiting\":1,\"repaired_parts\":5,\
             \"repaired_stripes\":9,\"repair_failures\":0,\"scrubbed_bytes\":3145728,\"scrub_errors\":1,\
             \"scrub_passes\":4,\"scrub_period_secs\":172800,\"io_shares\":{\"repair\":11,\"scrub\":3,\"compaction\":17}}"
        );
    }

    #[test]
    fn status_json_round_trips() {
        let report = StatusReport::from(&sample());
        let back: StatusReport = serde_json::from_str(&to_json(&report)).expect("parses");
        assert_eq!(back, report);
        assert_eq!(back.devices[0].path.as_deref(), Some("/d/\"0\""));
        assert_eq!(back.devices[1].path, None);
        assert!(!back.devices[1].healthy);
        assert_eq!(back.devices[1].io_errors, 7);
        assert_eq!(back.objects_below_redundancy, 3);
        assert_eq!(back.repairs_waiting, 1);
        assert_eq!(back.scrubbed_bytes, 3 << 20);
        assert_eq!(back.scrub_period_secs, 48 * 3600);
        assert_eq!(back.io_shares, IoSharesReport { repair: 11, scrub: 3, compaction: 17 });
    }

    #[test]
    fn replace_json_is_the_documented_wire_format() {
        let r = engine::ReplaceReport {
            device: 4,
            zone: "z2".into(),
            old_path: None,
            new_path: "/mnt/new".into(),
            seg_base: 12,
            queued: 30,
            direct_io: true,
        };
        assert_eq!(
            to_json(&ReplaceReport::from(&r)),
            "{\"device\":4,\"zone\":\"z2\",\"old_path\":null,\"new_path\":\"/mnt/new\",\"seg_base\":12,\"queued\":30,\"direct_io\":true}"
        );
    }

    #[test]
    fn admin_paths_route_by_method_and_never_from_a_virtual_hosted_bucket() {
        use http::Method as M;
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(route(&M::GET, USERS_PATH, &h, None), Some(AdminRoute::Users(UsersCall::List)));
        assert_eq!(route(&M::DELETE, USER_KEYS_PATH, &h, None), Some(AdminRoute::Users(UsersCall::DeleteKey)));
        assert_eq!(route(&M::PUT, USER_POLICY_PATH, &h, None), Some(AdminRoute::Users(UsersCall::PutPolicy)));
        assert_eq!(route(&M::PUT, USERS_PATH, &h, None), Some(AdminRoute::Unknown));
        assert_eq!(route(&M::GET, "/_tessera/nothing", &h, None), Some(AdminRoute::Unknown));
        assert_eq!(route(&M::PUT, "/_tessera/", &h, None), None, "a bucket-level path is the router's");
        assert_eq!(route(&M::GET, "/bucket/_tessera/users", &h, None), None);
        h.insert(http::header::HOST, "b1.s3.local:9000".parse().unwrap());
        assert_eq!(route(&M::GET, USERS_PATH, &h, Some("s3.local")), None);
    }

    #[test]
    fn a_listed_user_shows_no_secret() {
        let rec = crate::users::UserRecord {
            name: "alice".into(),
            status: crate::users::Status::Active,
            created_ms: 5,
            keys: vec![crate::users::KeyRecord {
                access_key: "TKAAA".into(),
                secret_key: "very-secret".into(),
                status: crate::users::Status::Inactive,
                created_ms: 6,
            }],
            policy: Some("{}".into()),
        };
        let json = to_json(&UserReport::from(&rec));
        assert_eq!(
            json,
            "{\"name\":\"alice\",\"status\":\"active\",\"created_ms\":5,\"keys\":[{\"access_key\":\"TKAAA\",\"status\":\"inactive\",\"created_ms\":6}],\"has_policy\":true}"
        );
    }

    #[test]
    fn the_status_path_is_not_taken_from_a_virtual_hosted_bucket() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, "b1.s3.local:9000".parse().unwrap());
        assert!(!is_status_request(&http::Method::GET, STATUS_PATH, &h, Some("s3.local")));
        h.insert(http::header::HOST, "s3.local:9000".parse().unwrap());
        assert!(is_status_request(&http::Method::GET, STATUS_PATH, &h, Some("s3.local")));
        h.insert(http::header::HOST, "127.0.0.1:9000".parse().unwrap());
        assert!(is_status_request(&http::Method::GET, STATUS_PATH, &h, None));
        assert!(!is_status_request(&http::Method::PUT, STATUS_PATH, &h, None));
        assert!(!is_status_request(&http::Method::GET, "/_tessera/status/x", &h, None));
    }
}
