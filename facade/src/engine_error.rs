//! How engine errors read to an S3 client. No message of a server-side failure reaches the
//! client: it may name files and devices (paths are the operator's, not the client's), so
//! the client gets S3's generic text and the log gets the detail.

use engine::error::{RequestError as R, StorageError as St};
use engine::Error as E;
use s3::error::{S3Error, S3ErrorCode as C};

pub fn to_s3(e: E) -> S3Error {
    let msg = e.to_string();
    match e {
        E::Request(r) => match r {
            R::NoSuchBucket(b) => S3Error::new(C::NoSuchBucket).resource(b),
            R::BucketAlreadyExists(b) => S3Error::new(C::BucketAlreadyOwnedByYou).resource(b),
            R::BucketNotEmpty(b) => S3Error::new(C::BucketNotEmpty).resource(b),
            R::InvalidBucketName(b) => S3Error::new(C::InvalidBucketName).resource(b),
            R::NoSuchKey { bucket, key } => S3Error::new(C::NoSuchKey).resource(format!("/{bucket}/{key}")),
            R::KeyTooLong(_) => S3Error::with_message(C::KeyTooLongError, msg),
            R::InvalidKey(m) => S3Error::invalid_argument(m),
            R::MetadataTooLarge(n) => {
                S3Error::new(C::MetadataTooLarge).detail("Size", n.to_string()).detail("MaxSizeAllowed", "2048")
            }
            R::NoSuchUpload(u) => S3Error::new(C::NoSuchUpload).resource(u),
            R::InvalidPart(_) => S3Error::with_message(C::InvalidPart, msg),
            R::InvalidPartOrder => S3Error::new(C::InvalidPartOrder),
            R::EntityTooSmall { .. } => S3Error::with_message(C::EntityTooSmall, msg),
            R::EntityTooLarge(_) | R::RecordTooLarge { .. } => S3Error::with_message(C::EntityTooLarge, msg),
            R::PreconditionFailed => S3Error::new(C::PreconditionFailed),
            R::BadDigest => S3Error::new(C::BadDigest),
            R::InvalidRange { .. } => S3Error::new(C::InvalidRange),
            R::BodyAborted(m) => S3Error::with_message(C::IncompleteBody, m),
        },
        E::SlowDown(_) => S3Error::new(C::SlowDown),
        E::ShuttingDown | E::Storage(St::InsufficientDevices(_)) => S3Error::with_message(C::ServiceUnavailable, msg),
        // A full device: 507, with S3's words for it, not the file that could not grow.
        ref e if engine::heal::is_no_space(e) => {
            // The engine logs a full device (rate-limited); per request only at debug.
            tracing::debug!("write refused, no room: {msg}");
            S3Error::new(C::InsufficientStorage)
        }
        E::Storage(St::Unreadable(_) | St::Layout(_) | St::InUse(_) | St::Corrupt(_) | St::Io(_) | St::Os(_)) => {
            tracing::error!("internal error: {msg}");
            S3Error::new(C::InternalError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> E {
        E::Storage(St::Os(engine::error::OsError::with_errno(
            std::path::Path::new("/srv/disk3/dev3/seg-7.dat"),
            errno,
            "x",
        )))
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
        for e in [
            os(libc::EIO),
            E::Storage(St::Io("/srv/disk3 broke".into())),
            E::Storage(St::Corrupt("/srv/disk3/x".into())),
        ] {
            let s = to_s3(e);
            assert_eq!(s.status().as_u16(), 500);
            assert!(!s.to_xml("r").contains("/srv"), "{}", s.to_xml("r"));
        }
    }
}
