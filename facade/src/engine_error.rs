//! How engine errors read to an S3 client.

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
        E::EntityTooLarge(_) | E::RecordTooLarge { .. } => S3Error::with_message(C::EntityTooLarge, msg),
        E::PreconditionFailed => S3Error::new(C::PreconditionFailed),
        E::BadDigest => S3Error::new(C::BadDigest),
        E::InvalidRange { .. } => S3Error::new(C::InvalidRange),
        E::BodyAborted(m) => S3Error::with_message(C::IncompleteBody, m),
        E::SlowDown(_) => S3Error::new(C::SlowDown),
        E::InsufficientDevices(_) | E::ShuttingDown => S3Error::with_message(C::ServiceUnavailable, msg),
        E::Unreadable(_) | E::Layout(_) | E::InUse(_) | E::Corrupt(_) | E::Io(_) | E::Os(_) => {
            tracing::error!("internal error: {msg}");
            S3Error::internal(msg)
        }
    }
}
