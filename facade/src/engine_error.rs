//! How engine errors read to an S3 client.

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
        E::Storage(St::Unreadable(_) | St::Layout(_) | St::InUse(_) | St::Corrupt(_) | St::Io(_) | St::Os(_)) => {
            tracing::error!("internal error: {msg}");
            S3Error::internal(msg)
        }
    }
}
