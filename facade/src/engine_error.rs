//! How engine errors read to an S3 client. No message of a server-side failure reaches the
//! client: it may name files and devices (paths are the operator's, not the client's), so
//! the client gets S3's generic text and the log gets the detail.

use engine::Error as E;
use s3::error::{S3Error, S3ErrorCode as C};

pub fn to_s3(e: E) -> S3Error {
    let msg = e.to_string();
    match e {
        E::NoSuchBucket(b) => S3Error::new(C::NoSuchBucket).resource(b),
        E::BucketAlreadyExists(b) => S3Error::new(C::BucketAlreadyOwnedByYou).resource(b),
        E::BucketNotEmpty(b) => S3Error::new(C::BucketNotEmpty).resource(b),
        E::InvalidBucketName(b) => S3Error::new(C::InvalidBucketName).resource(b),
        E::NoSuchKey { bucket, key } => S3Error::new(C::NoSuchKey).resource(format!("/{bucket}/{key}")),
        E::KeyTooLong(_) => S3Error::with_message(C::KeyTooLongError, msg),
        E::InvalidKey(m) => S3Error::invalid_argument(m),
        E::MetadataTooLarge(n) => {
            S3Error::new(C::MetadataTooLarge).detail("Size", n.to_string()).detail("MaxSizeAllowed", "2048")
        }
        E::NoSuchUpload(u) => S3Error::new(C::NoSuchUpload).resource(u),
        E::InvalidPart(_) => S3Error::with_message(C::InvalidPart, msg),
        E::InvalidPartOrder => S3Error::new(C::InvalidPartOrder),
        E::EntityTooSmall { .. } => S3Error::with_message(C::EntityTooSmall, msg),
        E::EntityTooLarge(_) => S3Error::with_message(C::EntityTooLarge, msg),
        E::PreconditionFailed => S3Error::new(C::PreconditionFailed),
        E::BadDigest => S3Error::new(C::BadDigest),
        E::InvalidRange { .. } => S3Error::new(C::InvalidRange),
        E::BodyAborted(m) => S3Error::with_message(C::IncompleteBody, m),
        E::SlowDown(_) => S3Error::new(C::SlowDown),
        E::InsufficientDevices(_) | E::ShuttingDown => S3Error::with_message(C::ServiceUnavailable, msg),
        // A full device: 507, with S3's words for it, not the file that could not grow.
        ref e if engine::heal::is_no_space(e) => {
            // The engine logs a full device (rate-limited); per request only at debug.
            tracing::debug!("write refused, no room: {msg}");
            S3Error::new(C::InsufficientStorage)
        }
        E::Unreadable(_) | E::Layout(_) | E::InUse(_) | E::Corrupt(_) | E::Io(_) | E::Os(_) => {
            tracing::error!("internal error: {msg}");
            S3Error::new(C::InternalError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> E {
        E::Os(engine::error::OsError::with_errno(std::path::Path::new("/srv/disk3/dev3/seg-7.dat"), errno, "x"))
    }

    #[test]
    fn a_full_device_is_507_insufficient_storage_and_names_no_path() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let e = to_s3(os(errno));
            assert_eq!(e.status().as_u16(), 507);
            assert_eq!(e.code, C::InsufficientStorage);
            assert!(!e.to_xml("r").contains("/srv"), "{}", e.to_xml("r"));
        }
    }

    #[test]
    fn server_failures_name_no_path() {
        for e in [os(libc::EIO), E::Io("/srv/disk3 broke".into()), E::Corrupt("/srv/disk3/x".into())] {
            let s = to_s3(e);
            assert_eq!(s.status().as_u16(), 500);
            assert!(!s.to_xml("r").contains("/srv"), "{}", s.to_xml("r"));
        }
    }
}
