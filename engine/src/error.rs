//! The engine's errors, in two kinds the reader must tell apart: a [`RequestError`] is the
//! client's (no such key, a precondition that did not hold, a bad part list: the S3 client can
//! act on it and the node is fine); a [`StorageError`] is the node's (an I/O error with its
//! errno, bad bytes on disk, too few devices: the operator acts on it). `Error` carries one or
//! the other, or says that the node is too busy or stopping. The facade maps them to S3 error
//! codes (`facade/src/engine_error.rs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request cannot be served as asked; nothing on the node is wrong.
    Request(RequestError),
    /// The node's storage failed or refused (devices, files, bytes on disk, the device set).
    Storage(StorageError),
    /// A bound was reached (a core's mailbox is full): the client should retry later.
    SlowDown(String),
    ShuttingDown,
}

/// What was wrong with a request, in words an S3 client can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    NoSuchBucket(String),
    BucketAlreadyExists(String),
    BucketNotEmpty(String),
    InvalidBucketName(String),
    NoSuchKey {
        bucket: String,
        key: String,
    },
    KeyTooLong(usize),
    /// A key S3 refuses for its characters (see `names::check_key_characters`).
    InvalidKey(String),
    MetadataTooLarge(usize),
    NoSuchUpload(String),
    InvalidPart(String),
    InvalidPartOrder,
    EntityTooSmall {
        part_number: u32,
        size: u64,
    },
    EntityTooLarge(u64),
    /// The request's metadata record would not fit in one log frame (`wal::record_fits`): an
    /// object of very many stripes (a huge multipart upload at a small chunk size).
    RecordTooLarge {
        record_bytes: usize,
    },
    PreconditionFailed,
    /// The body's MD5 did not match the Content-MD5 the client sent.
    BadDigest,
    InvalidRange {
        size: u64,
    },
    /// The client's body stream ended early or was aborted by the facade (bad checksum, bad
    /// chunk signature, disconnect). Nothing was stored.
    BodyAborted(String),
}

/// What failed in the node's storage, in words an operator can act on. Never a programmer's
/// error: a broken invariant is an assertion (docs/DESIGN.md, "Assertions").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// Too many shards of a stripe are missing or corrupt to rebuild it.
    Unreadable(String),
    /// Not enough healthy devices to place a stripe zone-safely.
    InsufficientDevices(String),
    /// Refused by `format`/`open`: the device set or layout is unusable.
    Layout(String),
    /// A data or device directory is held by another process (see `dirlock`).
    InUse(String),
    /// Bytes read from a device (a record, a frame, a superblock) are not what was written.
    Corrupt(String),
    /// An I/O failure described in words (no errno to act on: a thread that died, a channel
    /// that closed, a condition found by our own checks).
    Io(String),
    /// An I/O error the kernel reported, with its errno and the file it concerned.
    Os(OsError),
}

/// An operating-system I/O error as the kernel reported it. Code that decides something from
/// it (is the device failing? is it full?) matches on `errno`, never on the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsError {
    /// The errno, when the error came from a system call.
    pub errno: Option<i32>,
    /// The file or directory the call was about.
    pub path: Option<std::path::PathBuf>,
    /// The kernel's (or std's) description, without the errno suffix.
    pub message: String,
}

impl OsError {
    pub fn new(path: Option<&std::path::Path>, e: &std::io::Error) -> OsError {
        let errno = e.raw_os_error();
        let mut message = e.to_string();
        // std's Display appends " (os error N)"; it is kept as a number, not as text.
        if let Some(n) = errno {
            if let Some(cut) = message.strip_suffix(&format!(" (os error {n})")) {
                message = cut.to_string();
            }
        }
        OsError { errno, path: path.map(|p| p.to_path_buf()), message }
    }

    /// An errno of ours, with what it means here (e.g. a device directory without superblock).
    pub fn with_errno(path: &std::path::Path, errno: i32, message: impl Into<String>) -> OsError {
        OsError { errno: Some(errno), path: Some(path.to_path_buf()), message: message.into() }
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "{}", self.message)?;
        if let Some(n) = self.errno {
            write!(f, " (os error {n})")?;
        }
        Ok(())
    }
}

impl Error {
    /// The errno of an operating-system error, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Storage(StorageError::Os(e)) => e.errno,
            _ => None,
        }
    }

    /// Whether this is an I/O failure (of the OS, or described in words) rather than a
    /// request, layout or data error.
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Storage(StorageError::Io(_) | StorageError::Os(_)))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Request(e) => write!(f, "{e}"),
            Error::Storage(e) => write!(f, "{e}"),
            Error::SlowDown(m) => write!(f, "too busy: {m}; retry later"),
            Error::ShuttingDown => write!(f, "the engine is shutting down"),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RequestError as R;
        match self {
            R::NoSuchBucket(b) => write!(f, "bucket {b:?} does not exist"),
            R::BucketAlreadyExists(b) => write!(f, "bucket {b:?} already exists"),
            R::BucketNotEmpty(b) => write!(f, "bucket {b:?} is not empty"),
            R::InvalidBucketName(b) => write!(f, "{b:?} is not a valid bucket name"),
            R::NoSuchKey { bucket, key } => write!(f, "no object {key:?} in bucket {bucket:?}"),
            R::KeyTooLong(n) => write!(f, "key is {n} bytes; the limit is 1024"),
            R::InvalidKey(m) => write!(f, "{m}"),
            R::MetadataTooLarge(n) => write!(f, "metadata is {n} bytes; the limit is 2048"),
            R::NoSuchUpload(u) => write!(f, "multipart upload {u:?} does not exist"),
            R::InvalidPart(m) => write!(f, "invalid part: {m}"),
            R::InvalidPartOrder => write!(f, "parts must be listed in ascending order"),
            R::EntityTooSmall { part_number, size } => {
                write!(f, "part {part_number} is {size} bytes; all parts but the last must be at least 5 MiB")
            }
            R::EntityTooLarge(n) => write!(f, "object of {n} bytes is larger than allowed"),
            R::RecordTooLarge { record_bytes } => write!(
                f,
                "the object's layout needs a {record_bytes}-byte metadata record; a record is at most {} bytes \
                 (fewer, larger parts do not help: the limit is on stripes per object, set by the chunk size)",
                crate::wal::MAX_RECORD_BYTES
            ),
            R::PreconditionFailed => write!(f, "a precondition did not hold"),
            R::BadDigest => write!(f, "the Content-MD5 did not match the body"),
            R::InvalidRange { size } => write!(f, "range not satisfiable for an object of {size} bytes"),
            R::BodyAborted(m) => write!(f, "body aborted: {m}"),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use StorageError as S;
        match self {
            S::Unreadable(m) => write!(f, "data unreadable: {m}"),
            S::InsufficientDevices(m) => write!(f, "not enough healthy devices: {m}"),
            S::Layout(m) => write!(f, "{m}"),
            S::InUse(m) => write!(f, "{m}"),
            S::Corrupt(m) => write!(f, "corrupt: {m}"),
            S::Io(m) => write!(f, "I/O error: {m}"),
            S::Os(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {}
impl std::error::Error for RequestError {}
impl std::error::Error for StorageError {}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        Error::Request(e)
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(StorageError::Os(OsError::new(None, &e)))
    }
}

/// Attach a path to an I/O error so the message says which file failed.
pub(crate) fn io_at(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Storage(StorageError::Os(OsError::new(Some(path), &e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_keeps_its_errno_and_path_apart_from_its_text() {
        let p = std::path::Path::new("/dev/nonexistent/seg-1.dat");
        let e = io_at(p, std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.errno(), Some(libc::EIO));
        assert!(e.is_io());
        let Error::Storage(StorageError::Os(os)) = &e else { panic!("{e:?}") };
        assert_eq!(os.path.as_deref(), Some(p));
        assert!(!os.message.contains("os error"), "{}", os.message);
        assert_eq!(e.to_string(), format!("I/O error: {}: {} (os error {})", p.display(), os.message, libc::EIO));
        let plain: Error = std::io::Error::other("no errno").into();
        assert_eq!(plain.errno(), None);
        assert_eq!(Error::from(StorageError::Io("words".into())).errno(), None);
    }

    #[test]
    fn request_and_storage_errors_read_as_before_the_split() {
        let e: Error = RequestError::NoSuchKey { bucket: "b".into(), key: "k".into() }.into();
        assert_eq!(e.to_string(), "no object \"k\" in bucket \"b\"");
        assert!(!e.is_io());
        let e: Error = StorageError::Corrupt("bad tag".into()).into();
        assert_eq!(e.to_string(), "corrupt: bad tag");
        assert!(!e.is_io());
        assert!(Error::from(StorageError::Io("x".into())).is_io());
    }
}
