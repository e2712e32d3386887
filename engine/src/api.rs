//! Types of the engine's public API: what the facade, the benchmarks and the tests pass in and
//! get back.

use crate::record::{ObjectHeaders, ObjectMeta, StoredChecksum};
use bytes::Bytes;

/// S3's limit on key length in bytes, and its bucket naming rules: one definition, shared with
/// the protocol crate's router (`tessera-names`).
pub use names::{valid_bucket_name, MAX_KEY_BYTES};
/// S3's limit on user metadata (names and values) in bytes.
pub const MAX_USER_METADATA_BYTES: usize = 2048;
/// S3's largest single object (5 TiB).
pub const MAX_OBJECT_BYTES: u64 = 5 << 40;
/// S3's largest single PUT, and largest part of a multipart upload (5 GiB): a larger object is
/// uploaded in parts. (A copy goes through the same write path and so has the same limit.)
pub const MAX_PUT_BYTES: u64 = 5 << 30;
const _: () = assert!(MAX_PUT_BYTES <= MAX_OBJECT_BYTES);
/// Smallest part of a multipart upload other than the last.
pub const MIN_PART_BYTES: u64 = 5 << 20;
pub use names::MAX_PART_NUMBER;
/// Body chunks in flight between the accepting core and the owner (backpressure bound).
pub const BODY_CHANNEL_CHUNKS: usize = 8;

/// One message of a streamed request body.
#[derive(Debug)]
pub enum BodyItem {
    Data(Bytes),
    /// The body ended and the facade verified it; carries a checksum to store, if any.
    End {
        checksum: Option<StoredChecksum>,
    },
    /// The facade found the body bad (signature, checksum, truncation): store nothing.
    Abort(String),
}

pub type BodySender = flume::Sender<BodyItem>;
pub type PutBody = flume::Receiver<BodyItem>;
/// A streamed object body coming back from the owner core.
pub type GetBody = flume::Receiver<crate::Result<Bytes>>;

pub fn body_channel() -> (BodySender, PutBody) {
    flume::bounded(BODY_CHANNEL_CHUNKS)
}

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub headers: ObjectHeaders,
    /// The Content-MD5 the client sent: a mismatch stores nothing (BadDigest).
    pub content_md5: Option<[u8; 16]>,
    /// `If-None-Match: *`: only create.
    pub if_none_match_any: bool,
    /// `If-Match: "etag"`: only replace this version.
    pub if_match: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Quoted ETag.
    pub etag: String,
    pub mtime_ms: u64,
    pub parts_count: u32,
    pub headers: ObjectHeaders,
}

impl ObjectInfo {
    pub fn from_meta(bucket: &str, key: &str, m: &ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: m.size,
            etag: m.etag(),
            mtime_ms: m.mtime_ms,
            parts_count: m.parts_count,
            headers: m.headers().clone(),
        }
    }
}

/// A resolved byte range: `start..end` (end exclusive), within the object.
/// What a conditional read found (`Engine::get_object_if`).
pub enum ReadOutcome {
    /// The object's bytes in `ByteRange`, streamed through the `GetBody`.
    Stream(ObjectInfo, ByteRange, GetBody),
    /// The caller's condition declined the object: nothing was read.
    Declined(ObjectInfo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What a client asked for; resolved against the object's size by the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` (b inclusive) or `bytes=a-` (b = None).
    FromTo(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl RangeSpec {
    pub fn resolve(self, size: u64) -> crate::Result<ByteRange> {
        let bad = Err(crate::Error::Request(crate::error::RequestError::InvalidRange { size }));
        match self {
            RangeSpec::FromTo(a, b) => {
                if a >= size {
                    return bad;
                }
                let end = b.map_or(size, |b| b.saturating_add(1).min(size));
                if end <= a {
                    return bad;
                }
                Ok(ByteRange { start: a, end })
            }
            RangeSpec::Suffix(n) => {
                if n == 0 || size == 0 {
                    return bad;
                }
                Ok(ByteRange { start: size.saturating_sub(n), end: size })
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Return keys strictly after this one (S3 marker / start-after / continuation).
    pub start_after: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub mtime_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListItem {
    Object(ListEntry),
    CommonPrefix(String),
}

impl ListItem {
    pub fn sort_key(&self) -> &str {
        match self {
            ListItem::Object(e) => &e.key,
            ListItem::CommonPrefix(p) => p,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<ListItem>,
    pub truncated: bool,
    /// The last key or common prefix returned, when truncated.
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u32,
    pub etag: String,
    pub size: u64,
    pub mtime_ms: u64,
    pub checksum: Option<StoredChecksum>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct UploadListQuery {
    pub prefix: String,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

/// Counters a core reports (for `tessera status`, benchmarks and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub core: usize,
    pub io_driver: String,
    pub objects: u64,
    pub segment_files: u64,
    pub degraded_reads: u64,
    pub repairs_queued: u64,
    pub pool_overflow_allocs: u64,
    /// The most bytes of I/O buffers (stripes being filled, encoded, written or read) held at
    /// once on the core since start.
    pub pool_peak_bytes: u64,
    pub log_bytes: u64,
    /// Bytes the scrubber read and verified.
    pub scrubbed_bytes: u64,
    /// Bad or missing shards the scrubber found.
    pub scrub_errors: u64,
    /// Stripes rebuilt by repair.
    pub repaired_stripes: u64,
    /// Parts (runs of stripes) rewritten by repair.
    pub repaired_parts: u64,
    /// Client bytes covered by the stripes repair rebuilt (a re-placed part counts its size,
    /// a mended stripe its data bytes): the progress rate of a rebuild.
    pub repaired_bytes: u64,
    /// Device bytes the I/O scheduler counted per class (foreground, repair, scrub,
    /// compaction), and the background bytes it let through while the foreground was idle.
    pub sched_bytes: [u64; 4],
    pub sched_idle_bytes: [u64; 4],
    /// Log checkpoints (generations written while running) since start.
    pub checkpoints: u64,
    /// Log generations written over a retired generation's file (recycled) instead of a new one.
    pub log_files_recycled: u64,
    /// Group commits (log appends made durable), the records they carried, and the time
    /// they took in total (µs): records per commit and commit latency.
    pub log_commits: u64,
    pub log_records: u64,
    pub log_commit_us: u64,
    pub repair_failures: u64,
    /// Data bytes compaction moved out of mostly-dead segments.
    pub compacted_bytes: u64,
    /// ETag MD5: body chunks hashed, and how many of them in SIMD batches with other PUTs.
    pub md5_chunks: u64,
    pub md5_batched_chunks: u64,
    /// Batches (flusher runs) that hashed something.
    pub md5_flushes: u64,
    /// Records waiting for a group commit right now (all tablets of the core), the most any
    /// one tablet's queue held since start (never above `EngineConfig::commit_queue_depth_max`),
    /// client writes refused because a queue was full, and writes that waited for room.
    pub commit_queue_len: u64,
    pub commit_queue_peak: u64,
    pub commit_queue_refused: u64,
    pub commit_queue_waits: u64,
    /// Objects left out of a full repair queue (found again by a rescan or the scrubber), and
    /// the rescans of the index for objects below redundancy that this started.
    pub repair_queue_overflows: u64,
    pub repair_rescans: u64,
    /// I/Os refused because a device was full (ENOSPC, EDQUOT): not device failures.
    pub no_space_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_s3() {
        assert_eq!(RangeSpec::FromTo(0, Some(9)).resolve(100).unwrap(), ByteRange { start: 0, end: 10 });
        assert_eq!(RangeSpec::FromTo(90, Some(200)).resolve(100).unwrap(), ByteRange { start: 90, end: 100 });
        assert_eq!(RangeSpec::FromTo(5, None).resolve(100).unwrap(), ByteRange { start: 5, end: 100 });
        assert_eq!(RangeSpec::Suffix(10).resolve(100).unwrap(), ByteRange { start: 90, end: 100 });
        assert_eq!(RangeSpec::Suffix(1000).resolve(100).unwrap(), ByteRange { start: 0, end: 100 });
        assert!(RangeSpec::FromTo(100, None).resolve(100).is_err());
        assert!(RangeSpec::FromTo(0, None).resolve(0).is_err());
        assert!(RangeSpec::Suffix(0).resolve(100).is_err());
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.1", "a1b"] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in ["ab", "ABC", "-abc", "abc-", "a..b", "192.168.1.1", "a_b", &"a".repeat(64)] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
        // The reserved prefixes and suffixes too: the rules are the router's (`tessera-names`).
        for bad in ["xn--abc", "sthree-abc", "amzn-s3-demo-abc", "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3"] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }
}
