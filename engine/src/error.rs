//! The engine's one error type. Each variant says what went wrong in words an operator or an
//! S3 client can act on; the facade maps them to S3 error codes.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NoSuchBucket(String),
    BucketAlreadyExists(String),
    BucketNotEmpty(String),
    InvalidBucketName(String),
    NoSuchKey {
        bucket: String,
        key: String,
    },
    KeyTooLong(usize),
    MetadataTooLarge(usize),
    NoSuchUpload(String),
    InvalidPart(String),
    InvalidPartOrder,
    EntityTooSmall {
        part_number: u32,
        size: u64,
    },
    EntityTooLarge(u64),
    PreconditionFailed,
    /// The body's MD5 did not match the Content-MD5 the client sent.
    BadDigest,
    InvalidRange {
        size: u64,
    },
    /// The client's body stream ended early or was aborted by the facade (bad checksum, bad
    /// chunk signature, disconnect). Nothing was stored.
    BodyAborted(String),
    /// Too many shards of a stripe are missing or corrupt to rebuild it.
    Unreadable(String),
    /// Not enough healthy devices to place a stripe zone-safely.
    InsufficientDevices(String),
    /// Refused by `format`/`open`: the device set or layout is unusable.
    Layout(String),
    /// A data or device directory is held by another process (see `dirlock`).
    InUse(String),
    Corrupt(String),
    Io(String),
    ShuttingDown,
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchBucket(b) => write!(f, "bucket {b:?} does not exist"),
            Error::BucketAlreadyExists(b) => write!(f, "bucket {b:?} already exists"),
            Error::BucketNotEmpty(b) => write!(f, "bucket {b:?} is not empty"),
            Error::InvalidBucketName(b) => write!(f, "{b:?} is not a valid bucket name"),
            Error::NoSuchKey { bucket, key } => write!(f, "no object {key:?} in bucket {bucket:?}"),
            Error::KeyTooLong(n) => write!(f, "key is {n} bytes; the limit is 1024"),
            Error::MetadataTooLarge(n) => write!(f, "metadata is {n} bytes; the limit is 2048"),
            Error::NoSuchUpload(u) => write!(f, "multipart upload {u:?} does not exist"),
            Error::InvalidPart(m) => write!(f, "invalid part: {m}"),
            Error::InvalidPartOrder => write!(f, "parts must be listed in ascending order"),
            Error::EntityTooSmall { part_number, size } => {
                write!(f, "part {part_number} is {size} bytes; all parts but the last must be at least 5 MiB")
            }
            Error::EntityTooLarge(n) => write!(f, "object of {n} bytes is larger than allowed"),
            Error::PreconditionFailed => write!(f, "a precondition did not hold"),
            Error::BadDigest => write!(f, "the Content-MD5 did not match the body"),
            Error::InvalidRange { size } => write!(f, "range not satisfiable for an object of {size} bytes"),
            Error::BodyAborted(m) => write!(f, "body aborted: {m}"),
            Error::Unreadable(m) => write!(f, "data unreadable: {m}"),
            Error::InsufficientDevices(m) => write!(f, "not enough healthy devices: {m}"),
            Error::Layout(m) => write!(f, "{m}"),
            Error::InUse(m) => write!(f, "{m}"),
            Error::Corrupt(m) => write!(f, "corrupt: {m}"),
            Error::Io(m) => write!(f, "I/O error: {m}"),
            Error::ShuttingDown => write!(f, "the engine is shutting down"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Attach a path to an I/O error so the message says which file failed.
pub(crate) fn io_at(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}
