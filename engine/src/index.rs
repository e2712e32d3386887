//! A tablet's in-memory state: an ordered index of (bucket, key) → object record, the open
//! multipart uploads, and (on tablet 0) the bucket table. It changes only by applying log
//! records, at runtime and in recovery alike, so the two cannot disagree.

use crate::record::{DataLoc, ObjectHeaders, ObjectMeta, PartLayout, PartRecord, Record, RelocTarget};
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
pub struct TabletState {
    /// name → creation time; authoritative on tablet 0 only.
    pub buckets: BTreeMap<String, u64>,
    /// (bucket, attribute) → value (`Record::BucketAttr`); tablet 0 only, like `buckets`.
    pub bucket_attrs: BTreeMap<(String, String), String>,
    /// name → value (`Record::SystemAttr`): node-wide settings such as users; tablet 0 only.
    pub system_attrs: BTreeMap<String, String>,
    pub objects: HashMap<String, BTreeMap<String, ObjectMeta>>,
    pub uploads: BTreeMap<String, Upload>,
    /// Bytes of log the live state would take if rewritten (drives checkpoints).
    pub live_log_bytes: u64,
}

/// Call `f(device, segment, first block, bytes)` for every shard extent of a layout.
pub fn for_each_extent(p: &PartLayout, mut f: impl FnMut(u16, u32, u32, u64)) {
    let w = p.width();
    for s in 0..p.stripe_count() {
        let len = p.shard_len(s) as u64;
        for i in 0..w {
            let loc = p.loc(s, i);
            f(p.devices[i], loc.seg, loc.block, len);
        }
    }
}

fn add_parts(segs: &mut Segments, parts: &[PartLayout]) {
    for p in parts {
        for_each_extent(p, |d, s, block, b| segs.add_live(d, s, block, b));
    }
}

fn sub_parts(segs: &mut Segments, parts: &[PartLayout]) {
    for p in parts {
        for_each_extent(p, |d, s, _, b| segs.sub_live(d, s, b));
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
    64 + key.len() as u64 + meta.headers().encoded_len() as u64 + data
}

impl TabletState {
    pub fn get(&self, bucket: &str, key: &str) -> Option<&ObjectMeta> {
        self.objects.get(bucket).and_then(|m| m.get(key))
    }

    /// The run a `Relocate` with `target` would replace now (`None` if the target changed).
    pub fn run(&self, target: &RelocTarget) -> Option<&PartLayout> {
        match target {
            RelocTarget::Object { bucket, key, md5, parts_count, mtime_ms, index } => match self.get(bucket, key) {
                Some(m) if m.md5 == *md5 && m.parts_count == *parts_count && m.mtime_ms == *mtime_ms => match &m.data {
                    DataLoc::Parts(parts) => parts.get(*index as usize),
                    DataLoc::Inline { .. } => None,
                },
                _ => None,
            },
            RelocTarget::Part { upload_id, number, mtime_ms } => self
                .uploads
                .get(upload_id)
                .and_then(|u| u.parts.get(number))
                .filter(|p| p.mtime_ms == *mtime_ms)
                .map(|p| &p.layout),
        }
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
                self.bucket_attrs.retain(|(b, _), _| *b != name);
                self.buckets.remove(&name);
            }
            Record::BucketAttr { bucket, attr, value } => match value {
                Some(v) => {
                    self.live_log_bytes += (bucket.len() + attr.len() + v.len()) as u64 + 16;
                    self.bucket_attrs.insert((bucket, attr), v);
                }
                None => {
                    self.bucket_attrs.remove(&(bucket, attr));
                }
            },
            Record::SystemAttr { name, value } => match value {
                Some(v) => {
                    self.live_log_bytes += (name.len() + v.len()) as u64 + 16;
                    self.system_attrs.insert(name, v);
                }
                None => {
                    self.system_attrs.remove(&name);
                }
            },
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
            Record::Relocate { target, layout } => {
                let old = match target {
                    RelocTarget::Object { bucket, key, md5, parts_count, mtime_ms, index } => {
                        match self.objects.get_mut(&bucket).and_then(|m| m.get_mut(&key)) {
                            Some(m) if m.md5 == md5 && m.parts_count == parts_count && m.mtime_ms == mtime_ms => {
                                match &mut m.data {
                                    DataLoc::Parts(parts) => parts.get_mut(index as usize),
                                    DataLoc::Inline { .. } => None,
                                }
                            }
                            _ => None,
                        }
                    }
                    RelocTarget::Part { upload_id, number, mtime_ms } => self
                        .uploads
                        .get_mut(&upload_id)
                        .and_then(|u| u.parts.get_mut(&number))
                        .filter(|p| p.mtime_ms == mtime_ms)
                        .map(|p| &mut p.layout),
                };
                // The copy must hold the same bytes as what it replaces.
                match old {
                    Some(old) if old.md5 == layout.md5 && old.size == layout.size => {
                        add_parts(segs, std::slice::from_ref(&layout));
                        sub_parts(segs, std::slice::from_ref(old));
                        *old = layout;
                    }
                    _ => tracing::debug!("relocation of a run that changed since it was copied: ignored"),
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
        for ((bucket, attr), value) in &self.bucket_attrs {
            let rec = Record::BucketAttr { bucket: bucket.clone(), attr: attr.clone(), value: Some(value.clone()) };
            emit(&rec, None)?;
        }
        for (name, value) in &self.system_attrs {
            emit(&Record::SystemAttr { name: name.clone(), value: Some(value.clone()) }, None)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ShardLoc;

    fn layout(seg: u32) -> PartLayout {
        PartLayout {
            size: 100,
            chunk_bytes: 4096,
            k: 4,
            m: 2,
            devices: (0..6).collect(),
            shards: (0..6).map(|_| ShardLoc { seg, block: 0, crc: 0 }).collect(),
            md5: [7; 16],
        }
    }

    fn live(segs: &Segments, seg: u32) -> u64 {
        segs.sealed_usage().iter().filter(|u| u.1 == seg).map(|u| u.2).sum()
    }

    #[test]
    fn relocation_applies_only_to_an_unchanged_object() {
        let devs: Vec<(Option<std::path::PathBuf>, bool)> = vec![(None, false); 6];
        let mut segs = Segments::open(0, 1 << 20, &devs).unwrap();
        let mut st = TabletState::default();
        let meta = ObjectMeta {
            size: 100,
            md5: [7; 16],
            parts_count: 0,
            mtime_ms: 5,
            headers: Default::default(),
            data: DataLoc::Parts(Box::new([layout(1)])),
        };
        let put = Record::ObjectPut { bucket: "b".into(), key: "k".into(), meta, inline: vec![], completes: None };
        st.apply(put, &mut segs);
        let target = |mtime_ms| RelocTarget::Object {
            bucket: "b".into(),
            key: "k".into(),
            md5: [7; 16],
            parts_count: 0,
            mtime_ms,
            index: 0,
        };
        // Overwritten since the copy was read (another mtime): the copy is ignored.
        st.apply(Record::Relocate { target: target(4), layout: layout(2) }, &mut segs);
        assert_eq!(st.get("b", "k").unwrap().data, DataLoc::Parts(Box::new([layout(1)])));
        assert_eq!((live(&segs, 1), live(&segs, 2)), (6 * 4096, 0));
        // A copy whose bytes differ (another MD5) is ignored too.
        let mut bad = layout(2);
        bad.md5 = [8; 16];
        st.apply(Record::Relocate { target: target(5), layout: bad }, &mut segs);
        assert_eq!(live(&segs, 2), 0);
        // Unchanged: the object moves and the old segment's bytes die.
        st.apply(Record::Relocate { target: target(5), layout: layout(2) }, &mut segs);
        assert_eq!(st.get("b", "k").unwrap().data, DataLoc::Parts(Box::new([layout(2)])));
        assert_eq!((live(&segs, 1), live(&segs, 2)), (0, 6 * 4096));
        // Deleted since: ignored.
        st.apply(Record::ObjectDelete { bucket: "b".into(), key: "k".into() }, &mut segs);
        st.apply(Record::Relocate { target: target(5), layout: layout(3) }, &mut segs);
        assert!(st.get("b", "k").is_none());
        assert_eq!(live(&segs, 3), 0);
    }
}
