//! A shard's in-memory state: an ordered index of (bucket, key) → object record, the open
//! multipart uploads, and (on shard 0) the bucket table. It changes only by applying log
//! records, at runtime and in recovery alike, so the two cannot disagree.

use crate::record::{DataLoc, ObjectHeaders, ObjectMeta, PartLayout, PartRecord, Record};
use crate::segment::Segments;
use std::collections::{BTreeMap, HashMap};

pub struct Upload {
    pub bucket: String,
    pub key: String,
    pub headers: ObjectHeaders,
    pub initiated_ms: u64,
    pub parts: BTreeMap<u32, PartRecord>,
}

#[derive(Default)]
pub struct ShardState {
    /// name → creation time; authoritative on shard 0 only.
    pub buckets: BTreeMap<String, u64>,
    pub objects: HashMap<String, BTreeMap<String, ObjectMeta>>,
    pub uploads: BTreeMap<String, Upload>,
    /// Bytes of log the live state would take if rewritten (drives checkpoints).
    pub live_log_bytes: u64,
}

/// Call `f(device, segment, bytes)` for every shard extent of a layout.
pub fn for_each_extent(p: &PartLayout, mut f: impl FnMut(u16, u32, u64)) {
    let w = p.width();
    for s in 0..p.stripe_count() {
        let len = p.shard_len(s) as u64;
        for i in 0..w {
            let loc = p.loc(s, i);
            f(p.devices[i], loc.seg, len);
        }
    }
}

fn add_parts(segs: &mut Segments, parts: &[PartLayout]) {
    for p in parts {
        for_each_extent(p, |d, s, b| segs.add_live(d, s, b));
    }
}

fn sub_parts(segs: &mut Segments, parts: &[PartLayout]) {
    for p in parts {
        for_each_extent(p, |d, s, b| segs.sub_live(d, s, b));
    }
}

fn sub_meta(segs: &mut Segments, meta: &ObjectMeta) {
    if let DataLoc::Parts(parts) = &meta.data {
        sub_parts(segs, parts);
    }
}

fn approx_len(meta: &ObjectMeta, key: &str) -> u64 {
    let data = match &meta.data {
        DataLoc::Inline { len, .. } => *len as u64,
        DataLoc::Parts(p) => p.iter().map(|p| 40 + p.shards.len() as u64 * 12).sum(),
    };
    64 + key.len() as u64 + meta.headers.encoded_len() as u64 + data
}

impl ShardState {
    pub fn get(&self, bucket: &str, key: &str) -> Option<&ObjectMeta> {
        self.objects.get(bucket).and_then(|m| m.get(key))
    }

    pub fn object_count(&self) -> usize {
        self.objects.values().map(|m| m.len()).sum()
    }

    pub fn bucket_in_use(&self, bucket: &str) -> bool {
        self.objects.get(bucket).is_some_and(|m| !m.is_empty()) || self.uploads.values().any(|u| u.bucket == bucket)
    }

    /// Apply one durable record. `segs` tracks live bytes per segment.
    pub fn apply(&mut self, rec: Record, segs: &mut Segments) {
        match rec {
            Record::Header { .. } | Record::CheckpointEnd => {}
            Record::BucketCreate { name, created_ms } => {
                self.buckets.insert(name, created_ms);
            }
            Record::BucketDelete { name } => {
                self.buckets.remove(&name);
            }
            Record::ObjectPut { bucket, key, meta, completes, .. } => {
                if let DataLoc::Parts(parts) = &meta.data {
                    add_parts(segs, parts);
                }
                if let Some(id) = completes {
                    if let Some(u) = self.uploads.remove(&id) {
                        for p in u.parts.values() {
                            sub_parts(segs, std::slice::from_ref(&p.layout));
                        }
                    }
                }
                self.live_log_bytes += approx_len(&meta, &key);
                let old = self.objects.entry(bucket).or_default().insert(key.clone(), meta);
                if let Some(old) = old {
                    self.live_log_bytes = self.live_log_bytes.saturating_sub(approx_len(&old, &key));
                    sub_meta(segs, &old);
                }
            }
            Record::ObjectDelete { bucket, key } => {
                if let Some(m) = self.objects.get_mut(&bucket) {
                    if let Some(old) = m.remove(&key) {
                        self.live_log_bytes = self.live_log_bytes.saturating_sub(approx_len(&old, &key));
                        sub_meta(segs, &old);
                    }
                    if m.is_empty() {
                        self.objects.remove(&bucket);
                    }
                }
            }
            Record::UploadCreate { bucket, key, upload_id, headers, initiated_ms } => {
                self.uploads.insert(upload_id, Upload { bucket, key, headers, initiated_ms, parts: BTreeMap::new() });
            }
            Record::PartPut { upload_id, part } => {
                if let Some(u) = self.uploads.get_mut(&upload_id) {
                    add_parts(segs, std::slice::from_ref(&part.layout));
                    if let Some(old) = u.parts.insert(part.number, part) {
                        sub_parts(segs, std::slice::from_ref(&old.layout));
                    }
                } else {
                    // The upload ended while this part streamed in: its extents are garbage.
                    tracing::debug!("part for unknown upload {upload_id} ignored");
                }
            }
            Record::UploadEnd { upload_id, .. } => {
                if let Some(u) = self.uploads.remove(&upload_id) {
                    for p in u.parts.values() {
                        sub_parts(segs, std::slice::from_ref(&p.layout));
                    }
                }
            }
        }
    }

    /// The records that rebuild this state (a checkpoint), with inline objects' bytes filled
    /// in by `inline` (which reads them from the current log).
    pub fn checkpoint_records(
        &self,
        mut inline: impl FnMut(&ObjectMeta) -> crate::error::Result<Vec<u8>>,
        mut emit: impl FnMut(&Record, Option<(&str, &str)>) -> crate::error::Result<()>,
    ) -> crate::error::Result<()> {
        for (name, created) in &self.buckets {
            emit(&Record::BucketCreate { name: name.clone(), created_ms: *created }, None)?;
        }
        for (bucket, m) in &self.objects {
            for (key, meta) in m {
                let bytes = match meta.data {
                    DataLoc::Inline { .. } => inline(meta)?,
                    DataLoc::Parts(_) => Vec::new(),
                };
                let rec = Record::ObjectPut {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    meta: meta.clone(),
                    inline: bytes,
                    completes: None,
                };
                emit(&rec, Some((bucket, key)))?;
            }
        }
        for (id, u) in &self.uploads {
            emit(
                &Record::UploadCreate {
                    bucket: u.bucket.clone(),
                    key: u.key.clone(),
                    upload_id: id.clone(),
                    headers: u.headers.clone(),
                    initiated_ms: u.initiated_ms,
                },
                None,
            )?;
            for p in u.parts.values() {
                emit(&Record::PartPut { upload_id: id.clone(), part: p.clone() }, None)?;
            }
        }
        Ok(())
    }
}
