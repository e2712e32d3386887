//! Metadata records: what the write-ahead log holds and what the in-memory index stores.
//! Encoded with `codec`; a record's checksum lives in the log frame around it.

use crate::codec::{Dec, Enc};
use crate::error::{Result, StorageError};

/// Where one shard of one stripe lives: segment, offset in 4 KiB blocks, and the CRC32C of its
/// bytes. The length follows from the part's size and geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLoc {
    pub seg: u32,
    pub block: u32,
    pub crc: u32,
}

/// One erasure-coded run of data (a whole single-PUT object, or one multipart part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartLayout {
    pub size: u64,
    /// Bytes per shard per full stripe (multiple of 4 KiB).
    pub chunk_bytes: u32,
    pub k: u8,
    pub m: u8,
    /// Device of each shard index (k data then m parity), zone-safe.
    pub devices: Vec<u16>,
    /// k+m locations per stripe, stripe after stripe.
    pub shards: Vec<ShardLoc>,
    /// MD5 of the part's bytes (the part ETag for multipart).
    pub md5: [u8; 16],
}

impl PartLayout {
    pub fn width(&self) -> usize {
        self.k as usize + self.m as usize
    }
    pub fn stripe_data_bytes(&self) -> u64 {
        self.chunk_bytes as u64 * self.k as u64
    }
    pub fn stripe_count(&self) -> usize {
        self.size.div_ceil(self.stripe_data_bytes()) as usize
    }
    /// Data bytes in stripe `s`.
    pub fn stripe_len(&self, s: usize) -> u64 {
        let start = s as u64 * self.stripe_data_bytes();
        (self.size - start).min(self.stripe_data_bytes())
    }
    /// Bytes per shard in stripe `s` (4 KiB-aligned).
    pub fn shard_len(&self, s: usize) -> usize {
        crate::stripe::shard_len_for(self.stripe_len(s) as usize, self.k as usize, self.chunk_bytes as usize)
    }
    pub fn loc(&self, stripe: usize, shard: usize) -> ShardLoc {
        debug_assert!(shard < self.width(), "shard {shard} of a {}+{} stripe", self.k, self.m);
        debug_assert!(stripe < self.stripe_count(), "stripe {stripe} of {}", self.stripe_count());
        self.shards[stripe * self.width() + shard]
    }

    /// What is structurally wrong with this layout, if anything.
    fn inconsistency(&self) -> Option<String> {
        let ok = self.chunk_bytes > 0
            && self.chunk_bytes.is_multiple_of(4096)
            && self.k > 0
            && self.m > 0
            && self.devices.len() == self.width()
            && self.shards.len() == self.stripe_count() * self.width();
        (!ok).then(|| {
            format!(
                "part layout inconsistent: size {} chunk {} k {} m {} devices {} shard locs {}",
                self.size,
                self.chunk_bytes,
                self.k,
                self.m,
                self.devices.len(),
                self.shards.len()
            )
        })
    }

    /// Structural invariants of a layout read back from the log: a violation is bad bytes
    /// on disk, refused as `StorageError::Corrupt`.
    pub fn check(&self) -> Result<()> {
        match self.inconsistency() {
            None => Ok(()),
            Some(why) => Err(StorageError::Corrupt(why).into()),
        }
    }

    /// The same invariants for a layout this process built (the write path, a repair, a
    /// record being encoded): a violation is a programmer's error, so it stops the process.
    pub fn assert_consistent(&self) {
        if let Some(why) = self.inconsistency() {
            panic!("{why}");
        }
        // Placement gives every shard of a stripe its own device.
        debug_assert!(
            (1..self.devices.len()).all(|i| !self.devices[..i].contains(&self.devices[i])),
            "part placed twice on one device: {:?}",
            self.devices
        );
    }
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLoc {
    /// Bytes inside the log record itself (tiny objects). In the index: the log generation,
    /// the frame's offset and the frame's whole length (header included), so one read gets it.
    Inline { gen: u64, offset: u64, len: u32 },
    /// Boxed slice, not `Vec`: no capacity word, which keeps `DataLoc` at 24 bytes (the
    /// `Inline` variant's size) and `ObjectMeta` at 72 (index memory per object).
    Parts(Box<[PartLayout]>),
}

/// Checksum algorithm a client asked to be stored with the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChecksum {
    /// Algorithm name as S3 spells it: CRC32, CRC32C, CRC64NVME, SHA1, SHA256.
    pub algorithm: String,
    /// Base64 value as the client sent it (with `-N` for composite multipart checksums).
    pub value: String,
}

/// Headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    /// `x-amz-meta-*` pairs, names lowercased without the prefix.
    pub user: Vec<(String, String)>,
    pub checksum: Option<StoredChecksum>,
}

impl ObjectHeaders {
    /// No header set (most objects): stored as `None` in `ObjectMeta`.
    pub const EMPTY: ObjectHeaders = ObjectHeaders {
        content_type: None,
        content_encoding: None,
        content_disposition: None,
        content_language: None,
        cache_control: None,
        expires: None,
        user: Vec::new(),
        checksum: None,
    };

    pub fn is_empty(&self) -> bool {
        *self == Self::EMPTY
    }

    pub fn encoded_len(&self) -> usize {
        let o = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len());
        o(&self.content_type)
            + o(&self.content_encoding)
            + o(&self.content_disposition)
            + o(&self.content_language)
            + o(&self.cache_control)
            + o(&self.expires)
            + self.user.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub md5: [u8; 16],
    /// 0 for a single PUT; the number of parts for a multipart object (ETag gets `-N`).
    pub parts_count: u32,
    pub mtime_ms: u64,
    /// Boxed, and `None` when empty: an inline `ObjectHeaders` is about 200 bytes, which
    /// would double the index's memory per object. Read with `headers()`, build with
    /// `pack_headers`.
    pub headers: Option<Box<ObjectHeaders>>,
    pub data: DataLoc,
}

// The index holds one `ObjectMeta` per object (goal: at most 200 bytes of heap per object at
// 1 M objects, `tessera-bench index-memory`): a field that grows it must be paid for elsewhere.
const _: () = assert!(std::mem::size_of::<DataLoc>() <= 24, "DataLoc grew past 24 bytes");
const _: () = assert!(std::mem::size_of::<ObjectMeta>() <= 72, "ObjectMeta grew past 72 bytes");

/// The S3 ETag, quoted, of an object with this MD5 and parts count (0 = single PUT).
pub fn etag_of(md5: &[u8; 16], parts_count: u32) -> String {
    // Built in place (a listing makes one per object): no formatting machinery, one allocation.
    let mut digits = [0u8; 32];
    let _ = hex::encode_to_slice(md5, &mut digits); // 16 bytes always fit 32 digits
    let mut s = String::with_capacity(2 + 32 + 11);
    s.push('"');
    s.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    if parts_count != 0 {
        use std::fmt::Write;
        let _ = write!(s, "-{parts_count}");
    }
    s.push('"');
    s
}

static EMPTY_HEADERS: ObjectHeaders = ObjectHeaders::EMPTY;

impl ObjectMeta {
    /// The object's headers (`ObjectHeaders::EMPTY` when none were stored).
    pub fn headers(&self) -> &ObjectHeaders {
        self.headers.as_deref().unwrap_or(&EMPTY_HEADERS)
    }

    /// The stored form of `h`: `None` when empty.
    pub fn pack_headers(h: ObjectHeaders) -> Option<Box<ObjectHeaders>> {
        (!h.is_empty()).then(|| Box::new(h))
    }

    /// The S3 ETag, quoted.
    pub fn etag(&self) -> String {
        etag_of(&self.md5, self.parts_count)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRecord {
    pub number: u32,
    pub mtime_ms: u64,
    pub layout: PartLayout,
    pub checksum: Option<StoredChecksum>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// First record of every log generation. `tablet` is encoded where the field called
    /// `shard` was before the rename (the same u32, same place).
    Header {
        tablet: u32,
        gen: u64,
        set_id: u128,
    },
    /// Ends the checkpoint section at the start of a generation: a generation without it is
    /// an unfinished checkpoint and is ignored.
    CheckpointEnd,
    BucketCreate {
        name: String,
        created_ms: u64,
    },
    BucketDelete {
        name: String,
    },
    /// Set (`Some`) or remove (`None`) one of a bucket's attributes: its policy, and the
    /// bucket-level settings to come, each under its own `attr` name. Tablet 0's, like the
    /// bucket records; a `BucketDelete` removes them all.
    BucketAttr {
        bucket: String,
        attr: String,
        value: Option<String>,
    },
    /// Set (`Some`) or remove (`None`) a node-wide attribute (users and their keys, each under
    /// its own `name`). Tablet 0's, like the bucket records; values are opaque to the engine.
    SystemAttr {
        name: String,
        value: Option<String>,
    },
    /// For `DataLoc::Inline` the bytes follow in `inline`. `completes` names the multipart
    /// upload this record completes: one record both creates the object and ends the upload.
    ObjectPut {
        bucket: String,
        key: String,
        meta: ObjectMeta,
        inline: Vec<u8>,
        completes: Option<String>,
    },
    ObjectDelete {
        bucket: String,
        key: String,
    },
    UploadCreate {
        bucket: String,
        key: String,
        upload_id: String,
        headers: ObjectHeaders,
        initiated_ms: u64,
    },
    PartPut {
        upload_id: String,
        part: PartRecord,
    },
    /// The upload was completed (its parts now belong to an object) or aborted.
    UploadEnd {
        upload_id: String,
        aborted: bool,
    },
    /// Compaction copied one run of data to new extents. It applies only if its target is
    /// unchanged since the copy was read (otherwise the new extents are garbage).
    Relocate {
        target: RelocTarget,
        layout: PartLayout,
    },
}

/// What a `Relocate` record moves, and how to tell the target is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelocTarget {
    /// Run `index` of an object's `DataLoc::Parts`; the object must still have this ETag
    /// (`md5`, `parts_count`) and `mtime_ms`.
    Object { bucket: String, key: String, md5: [u8; 16], parts_count: u32, mtime_ms: u64, index: u32 },
    /// Part `number` of an open upload, uploaded at `mtime_ms`.
    Part { upload_id: String, number: u32, mtime_ms: u64 },
}

const T_HEADER: u8 = 1;
const T_CKPT_END: u8 = 2;
const T_BUCKET_CREATE: u8 = 3;
const T_BUCKET_DELETE: u8 = 4;
const T_OBJECT_PUT: u8 = 5;
const T_OBJECT_DELETE: u8 = 6;
const T_UPLOAD_CREATE: u8 = 7;
const T_PART_PUT: u8 = 8;
const T_UPLOAD_END: u8 = 9;
const T_RELOCATE: u8 = 10;
const T_BUCKET_ATTR: u8 = 11;
const T_SYSTEM_ATTR: u8 = 12;

fn enc_checksum(e: &mut Enc, c: &Option<StoredChecksum>) {
    match c {
        Some(c) => {
            e.u8(1);
            e.str(&c.algorithm);
            e.str(&c.value);
        }
        None => e.u8(0),
    }
}

fn dec_checksum(d: &mut Dec) -> Result<Option<StoredChecksum>> {
    Ok(match d.u8()? {
        0 => None,
        _ => Some(StoredChecksum { algorithm: d.str()?, value: d.str()? }),
    })
}

fn enc_headers(e: &mut Enc, h: &ObjectHeaders) {
    e.opt_str(&h.content_type);
    e.opt_str(&h.content_encoding);
    e.opt_str(&h.content_disposition);
    e.opt_str(&h.content_language);
    e.opt_str(&h.cache_control);
    e.opt_str(&h.expires);
    e.u16(h.user.len() as u16);
    for (k, v) in &h.user {
        e.str(k);
        e.str(v);
    }
    enc_checksum(e, &h.checksum);
}

fn dec_headers(d: &mut Dec) -> Result<ObjectHeaders> {
    let mut h = ObjectHeaders {
        content_type: d.opt_str()?,
        content_encoding: d.opt_str()?,
        content_disposition: d.opt_str()?,
        content_language: d.opt_str()?,
        cache_control: d.opt_str()?,
        expires: d.opt_str()?,
        ..Default::default()
    };
    let n = d.u16()?;
    for _ in 0..n {
        h.user.push((d.str()?, d.str()?));
    }
    h.checksum = dec_checksum(d)?;
    Ok(h)
}

fn enc_layout(e: &mut Enc, p: &PartLayout) {
    // Checked where written (here) and where read back (`dec_layout`).
    p.assert_consistent();
    e.u64(p.size);
    e.u32(p.chunk_bytes);
    e.u8(p.k);
    e.u8(p.m);
    for &d in &p.devices {
        e.u16(d);
    }
    e.u32(p.shards.len() as u32);
    for s in &p.shards {
        e.u32(s.seg);
        e.u32(s.block);
        e.u32(s.crc);
    }
    e.fixed(&p.md5);
}

fn dec_layout(d: &mut Dec) -> Result<PartLayout> {
    let size = d.u64()?;
    let chunk_bytes = d.u32()?;
    let k = d.u8()?;
    let m = d.u8()?;
    let mut devices = Vec::with_capacity(k as usize + m as usize);
    for _ in 0..(k as usize + m as usize) {
        devices.push(d.u16()?);
    }
    let n = d.u32()? as usize;
    if n > d.remaining() / 12 {
        return Err(StorageError::Corrupt("shard location count exceeds record".into()).into());
    }
    let mut shards = Vec::with_capacity(n);
    for _ in 0..n {
        shards.push(ShardLoc { seg: d.u32()?, block: d.u32()?, crc: d.u32()? });
    }
    let md5 = d.fixed::<16>()?;
    let p = PartLayout { size, chunk_bytes, k, m, devices, shards, md5 };
    p.check()?;
    Ok(p)
}

fn enc_part(e: &mut Enc, p: &PartRecord) {
    e.u32(p.number);
    e.u64(p.mtime_ms);
    enc_layout(e, &p.layout);
    enc_checksum(e, &p.checksum);
}

fn dec_part(d: &mut Dec) -> Result<PartRecord> {
    Ok(PartRecord { number: d.u32()?, mtime_ms: d.u64()?, layout: dec_layout(d)?, checksum: dec_checksum(d)? })
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        match self {
            Record::Header { tablet, gen, set_id } => {
                e.u8(T_HEADER);
                e.u32(*tablet);
                e.u64(*gen);
                e.u128(*set_id);
            }
            Record::CheckpointEnd => e.u8(T_CKPT_END),
            Record::BucketCreate { name, created_ms } => {
                e.u8(T_BUCKET_CREATE);
                e.str(name);
                e.u64(*created_ms);
            }
            Record::BucketDelete { name } => {
                e.u8(T_BUCKET_DELETE);
                e.str(name);
            }
            Record::BucketAttr { bucket, attr, value } => {
                e.u8(T_BUCKET_ATTR);
                e.str(bucket);
                e.str(attr);
                e.opt_str(value);
            }
            Record::SystemAttr { name, value } => {
                e.u8(T_SYSTEM_ATTR);
                e.str(name);
                e.opt_str(value);
            }
            Record::ObjectPut { bucket, key, meta, inline, completes } => {
                e.u8(T_OBJECT_PUT);
                e.str(bucket);
                e.str(key);
                e.opt_str(completes);
                e.u64(meta.size);
                e.fixed(&meta.md5);
                e.u32(meta.parts_count);
                e.u64(meta.mtime_ms);
                enc_headers(&mut e, meta.headers());
                match &meta.data {
                    DataLoc::Inline { .. } => {
                        e.u8(0);
                        e.bytes(inline);
                    }
                    DataLoc::Parts(parts) => {
                        e.u8(1);
                        e.u32(parts.len() as u32);
                        for p in parts {
                            enc_layout(&mut e, p);
                        }
                    }
                }
            }
            Record::ObjectDelete { bucket, key } => {
                e.u8(T_OBJECT_DELETE);
                e.str(bucket);
                e.str(key);
            }
            Record::UploadCreate { bucket, key, upload_id, headers, initiated_ms } => {
                e.u8(T_UPLOAD_CREATE);
                e.str(bucket);
                e.str(key);
                e.str(upload_id);
                enc_headers(&mut e, headers);
                e.u64(*initiated_ms);
            }
            Record::PartPut { upload_id, part } => {
                e.u8(T_PART_PUT);
                e.str(upload_id);
                enc_part(&mut e, part);
            }
            Record::UploadEnd { upload_id, aborted } => {
                e.u8(T_UPLOAD_END);
                e.str(upload_id);
                e.u8(*aborted as u8);
            }
            Record::Relocate { target, layout } => {
                e.u8(T_RELOCATE);
                match target {
                    RelocTarget::Object { bucket, key, md5, parts_count, mtime_ms, index } => {
                        e.u8(0);
                        e.str(bucket);
                        e.str(key);
                        e.fixed(md5);
                        e.u32(*parts_count);
                        e.u64(*mtime_ms);
                        e.u32(*index);
                    }
                    RelocTarget::Part { upload_id, number, mtime_ms } => {
                        e.u8(1);
                        e.str(upload_id);
                        e.u32(*number);
                        e.u64(*mtime_ms);
                    }
                }
                enc_layout(&mut e, layout);
            }
        }
        e.buf
    }

    /// Decode a record. For inline objects, `DataLoc::Inline` gets `gen`/`offset` from the
    /// caller's log position.
    pub fn decode(b: &[u8], gen: u64, offset: u64) -> Result<Record> {
        let mut d = Dec::new(b);
        let r = match d.u8()? {
            T_HEADER => Record::Header { tablet: d.u32()?, gen: d.u64()?, set_id: d.u128()? },
            T_CKPT_END => Record::CheckpointEnd,
            T_BUCKET_CREATE => Record::BucketCreate { name: d.str()?, created_ms: d.u64()? },
            T_BUCKET_DELETE => Record::BucketDelete { name: d.str()? },
            T_BUCKET_ATTR => Record::BucketAttr { bucket: d.str()?, attr: d.str()?, value: d.opt_str()? },
            T_SYSTEM_ATTR => Record::SystemAttr { name: d.str()?, value: d.opt_str()? },
            T_OBJECT_PUT => {
                let bucket = d.str()?;
                let key = d.str()?;
                let completes = d.opt_str()?;
                let size = d.u64()?;
                let md5 = d.fixed::<16>()?;
                let parts_count = d.u32()?;
                let mtime_ms = d.u64()?;
                let headers = dec_headers(&mut d)?;
                let (data, inline) = match d.u8()? {
                    0 => {
                        let bytes = d.bytes()?.to_vec();
                        if bytes.len() as u64 != size {
                            return Err(
                                StorageError::Corrupt("inline object length differs from its size".into()).into()
                            );
                        }
                        (DataLoc::Inline { gen, offset, len: bytes.len() as u32 }, bytes)
                    }
                    1 => {
                        let n = d.u32()? as usize;
                        let mut parts = Vec::with_capacity(n.min(crate::api::MAX_PART_NUMBER as usize));
                        for _ in 0..n {
                            parts.push(dec_layout(&mut d)?);
                        }
                        if parts.iter().map(|p| p.size).sum::<u64>() != size {
                            return Err(
                                StorageError::Corrupt("part sizes do not add up to the object size".into()).into()
                            );
                        }
                        (DataLoc::Parts(parts.into_boxed_slice()), Vec::new())
                    }
                    t => return Err(StorageError::Corrupt(format!("bad data location tag {t}")).into()),
                };
                Record::ObjectPut {
                    bucket,
                    key,
                    meta: ObjectMeta {
                        size,
                        md5,
                        parts_count,
                        mtime_ms,
                        headers: ObjectMeta::pack_headers(headers),
                        data,
                    },
                    inline,
                    completes,
                }
            }
            T_OBJECT_DELETE => Record::ObjectDelete { bucket: d.str()?, key: d.str()? },
            T_UPLOAD_CREATE => Record::UploadCreate {
                bucket: d.str()?,
                key: d.str()?,
                upload_id: d.str()?,
                headers: dec_headers(&mut d)?,
                initiated_ms: d.u64()?,
            },
            T_PART_PUT => Record::PartPut { upload_id: d.str()?, part: dec_part(&mut d)? },
            T_UPLOAD_END => Record::UploadEnd { upload_id: d.str()?, aborted: d.u8()? != 0 },
            T_RELOCATE => {
                let target = match d.u8()? {
                    0 => RelocTarget::Object {
                        bucket: d.str()?,
                        key: d.str()?,
                        md5: d.fixed::<16>()?,
                        parts_count: d.u32()?,
                        mtime_ms: d.u64()?,
                        index: d.u32()?,
                    },
                    1 => RelocTarget::Part { upload_id: d.str()?, number: d.u32()?, mtime_ms: d.u64()? },
                    t => return Err(StorageError::Corrupt(format!("bad relocation target tag {t}")).into()),
                };
                Record::Relocate { target, layout: dec_layout(&mut d)? }
            }
            t => return Err(StorageError::Corrupt(format!("unknown record type {t}")).into()),
        };
        if d.remaining() != 0 {
            return Err(StorageError::Corrupt(format!("{} trailing bytes after record", d.remaining())).into());
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_the_quoted_md5_hex_with_the_parts_count() {
        let md5: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xA5);
        assert_eq!(etag_of(&md5, 0), format!("\"{}\"", hex::encode(md5)));
        assert_eq!(etag_of(&md5, 10_000), format!("\"{}-10000\"", hex::encode(md5)));
        assert_eq!(etag_of(&[0; 16], 1), "\"00000000000000000000000000000000-1\"");
    }

    fn layout() -> PartLayout {
        PartLayout {
            size: 5 << 20,
            chunk_bytes: 256 << 10,
            k: 4,
            m: 2,
            devices: vec![0, 1, 2, 3, 4, 5],
            shards: (0..30).map(|i| ShardLoc { seg: i, block: i * 2, crc: i * 7 }).collect(),
            md5: [3; 16],
        }
    }

    #[test]
    fn records_round_trip() {
        let headers = ObjectHeaders {
            content_type: Some("text/plain".into()),
            user: vec![("a".into(), "b".into())],
            checksum: Some(StoredChecksum { algorithm: "CRC32C".into(), value: "AAAAAA==".into() }),
            ..Default::default()
        };
        let recs = vec![
            Record::Header { tablet: 1, gen: 2, set_id: 3 },
            Record::CheckpointEnd,
            Record::BucketCreate { name: "b".into(), created_ms: 9 },
            Record::BucketAttr { bucket: "b".into(), attr: "policy".into(), value: Some("{}".into()) },
            Record::BucketAttr { bucket: "b".into(), attr: "policy".into(), value: None },
            Record::SystemAttr { name: "user/alice".into(), value: Some("{}".into()) },
            Record::SystemAttr { name: "user/alice".into(), value: None },
            Record::ObjectPut {
                bucket: "b".into(),
                key: "k".into(),
                meta: ObjectMeta {
                    size: 3,
                    md5: [1; 16],
                    parts_count: 0,
                    mtime_ms: 4,
                    headers: ObjectMeta::pack_headers(headers.clone()),
                    data: DataLoc::Inline { gen: 7, offset: 100, len: 3 },
                },
                inline: b"abc".to_vec(),
                completes: None,
            },
            Record::ObjectPut {
                bucket: "b".into(),
                key: "big".into(),
                meta: ObjectMeta {
                    size: 5 << 20,
                    md5: [1; 16],
                    parts_count: 1,
                    mtime_ms: 4,
                    headers: ObjectMeta::pack_headers(headers.clone()),
                    data: DataLoc::Parts(Box::new([layout()])),
                },
                inline: vec![],
                completes: Some("u".into()),
            },
            Record::Relocate {
                target: RelocTarget::Object {
                    bucket: "b".into(),
                    key: "big".into(),
                    md5: [2; 16],
                    parts_count: 3,
                    mtime_ms: 5,
                    index: 1,
                },
                layout: layout(),
            },
            Record::Relocate {
                target: RelocTarget::Part { upload_id: "u".into(), number: 7, mtime_ms: 8 },
                layout: layout(),
            },
            Record::PartPut {
                upload_id: "u".into(),
                part: PartRecord { number: 3, mtime_ms: 1, layout: layout(), checksum: None },
            },
            Record::UploadEnd { upload_id: "u".into(), aborted: true },
        ];
        for r in recs {
            let b = r.encode();
            assert_eq!(Record::decode(&b, 7, 100).unwrap(), r);
            // Any truncation is an error, never a panic.
            for cut in 0..b.len() {
                let _ = Record::decode(&b[..cut], 7, 100);
            }
        }
    }
}
