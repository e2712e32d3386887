//! The read path: a GET opens every file it needs when it looks the object up, then streams
//! the range stripe by stripe; each shard read is checked against its CRC32C, and a stripe
//! with a missing or bad shard is rebuilt from parity (and its object queued for repair).
//! Inline objects are read back from a log mirror and checked against their frame's CRC.

use super::Tablet;
use crate::api::*;
use crate::buf::AlignedBuf;
use crate::error::{Error, RequestError, Result, StorageError};
use crate::ids::{BlockIndex, DeviceId, SegmentId};
use crate::io::DevFile;
use crate::record::*;
use crate::stripe::crc;
use crate::wal::{self, Salt};
use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use std::collections::HashMap;
use std::rc::Rc;

/// Where an inline object's frame is: its generation's mirror files (open, so a checkpoint
/// that retires the generation meanwhile cannot take them away), the frame's offset and length.
pub(super) struct InlineFiles {
    files: Vec<Rc<DevFile>>,
    gen: u64,
    offset: u64,
    len: u32,
}

/// The files a read needs, opened when the object is looked up: an inline object's log
/// mirrors, or the segment files of its stripes (see `read_plan`).
pub(super) enum ReadFiles {
    Inline(InlineFiles),
    Segments(SegmentFiles),
}

/// Open segment files, by device and segment: what a read of erasure-coded stripes needs.
pub(super) type SegmentFiles = HashMap<(DeviceId, SegmentId), Rc<DevFile>>;

impl Tablet {
    /// Start streaming `range` of an object. The body arrives on the returned channel.
    /// Start reading an object (or a range of it), unless `proceed` declines it: the caller's
    /// conditions (If-Match, If-None-Match, ...) are decided here, before any stripe is read
    /// or any read budget is taken, so a 304 or a 412 costs no I/O.
    pub fn get_object(
        self: Rc<Self>,
        bucket: String,
        key: String,
        range: Option<RangeSpec>,
        proceed: impl FnOnce(&ObjectInfo) -> bool,
    ) -> Result<ReadOutcome> {
        self.ctx.bucket_exists(&bucket)?;
        let meta = {
            let st = self.state.borrow();
            st.get(&bucket, &key)
                .cloned()
                .ok_or_else(|| RequestError::NoSuchKey { bucket: bucket.clone(), key: key.clone() })?
        };
        let info = ObjectInfo::from_meta(&bucket, &key, &meta);
        if !proceed(&info) {
            return Ok(ReadOutcome::Declined(info));
        }
        let r = match range {
            Some(r) => r.resolve(meta.size)?,
            None => ByteRange { start: 0, end: meta.size },
        };
        self.ctx.foreground_io(r.end - r.start);
        let busy = self.ctx.foreground_guard();
        let (tx, rx) = flume::bounded(2);
        // Open every file the read needs now, so a concurrent overwrite that deletes a
        // segment, or a checkpoint that retires the log generation, cannot pull it away.
        let files = match meta.data {
            DataLoc::Inline { .. } => ReadFiles::Inline(self.inline_files(&meta)?),
            DataLoc::Parts(_) => ReadFiles::Segments(self.read_plan(&meta, r)),
        };
        // A small object whose log pages are cached is answered at once, with no read task.
        if let ReadFiles::Inline(at) = &files {
            if let Some(data) = self.read_inline_cached(at, meta.size) {
                let b = Bytes::from(data).slice(r.start as usize..r.end as usize);
                if tx.try_send(Ok(b)).is_ok() {
                    return Ok(ReadOutcome::Stream(info, r, rx));
                }
            }
        }
        let me = self.clone();
        monoio::spawn(async move {
            let _busy = busy;
            if let Err(e) = me.stream(&bucket, &key, &meta, r, files, &tx).await {
                let _ = tx.send_async(Err(e)).await;
            }
        });
        Ok(ReadOutcome::Stream(info, r, rx))
    }

    fn read_plan(&self, meta: &ObjectMeta, r: ByteRange) -> SegmentFiles {
        self.read_plan_for(meta, r, true)
    }

    /// `report`: a segment that cannot be opened counts against its device. Background tasks
    /// read from a copy of the metadata taken earlier, whose segments may have been deleted
    /// since (the object was overwritten): they pass false.
    pub(super) fn read_plan_for(&self, meta: &ObjectMeta, r: ByteRange, report: bool) -> SegmentFiles {
        let mut plan = HashMap::new();
        let mut failed = Vec::new();
        if let DataLoc::Parts(parts) = &meta.data {
            let mut segs = self.segs.borrow_mut();
            for (p, lo, hi) in parts_in_range(parts, r) {
                let sdb = p.stripe_data_bytes();
                for s in (lo / sdb)..=((hi - 1) / sdb) {
                    for i in 0..p.width() {
                        let loc = p.loc(s as usize, i);
                        let dev = p.devices[i];
                        if segs.is_lost(dev, loc.seg) {
                            // Lost with a replaced device: a missing shard, not a device fault.
                            continue;
                        }
                        if let std::collections::hash_map::Entry::Vacant(v) =
                            plan.entry((DeviceId(dev), SegmentId(loc.seg)))
                        {
                            match segs.file(dev, loc.seg) {
                                Ok(f) => {
                                    v.insert(f);
                                }
                                Err(e) => failed.push((dev, e)),
                            }
                        }
                    }
                }
            }
        }
        for (dev, e) in failed.into_iter().filter(|_| report) {
            // A segment the index points to cannot be opened (ENOENT fails the device).
            if self.ctx.healthy.borrow().get(dev as usize).copied().unwrap_or(false) {
                tracing::warn!("tablet {}: cannot open a segment on device {dev}: {e}", self.id);
                self.ctx.note_io_error(dev, &e, false);
            }
        }
        plan
    }

    pub(super) async fn stream(
        &self,
        bucket: &str,
        key: &str,
        meta: &ObjectMeta,
        r: ByteRange,
        files: ReadFiles,
        tx: &flume::Sender<Result<Bytes>>,
    ) -> Result<()> {
        match (&meta.data, files) {
            (DataLoc::Inline { .. }, ReadFiles::Inline(at)) => {
                let data = self.read_inline(&at, meta.size).await?;
                let b = Bytes::from(data).slice(r.start as usize..r.end as usize);
                let _ = tx.send_async(Ok(b)).await;
                Ok(())
            }
            (DataLoc::Parts(parts), ReadFiles::Segments(plan)) => {
                for (p, lo, hi) in parts_in_range(parts, r) {
                    let sdb = p.stripe_data_bytes();
                    for s in (lo / sdb)..=((hi - 1) / sdb) {
                        let s0 = s * sdb;
                        let a = lo.max(s0) - s0;
                        let b = hi.min(s0 + p.stripe_len(s as usize)) - s0;
                        let bytes = self.read_stripe(bucket, key, p, s as usize, a as usize, b as usize, &plan).await?;
                        if tx.send_async(Ok(bytes)).await.is_err() {
                            return Ok(()); // the reader went away
                        }
                    }
                }
                Ok(())
            }
            // `get_object` and `relocate` open the files from the same metadata they pass.
            _ => unreachable!("an object read with the files of another kind of object"),
        }
    }

    /// The log mirrors holding an inline object, and where in them it is.
    pub(super) fn inline_files(&self, meta: &ObjectMeta) -> Result<InlineFiles> {
        let DataLoc::Inline { gen, offset, len } = meta.data else {
            unreachable!("inline_files is asked only about inline objects");
        };
        let w = self.wal.borrow();
        let files = match &w.prev {
            _ if w.gen == gen => &w.files,
            Some((g, files)) if *g == gen => files,
            _ => {
                return Err(StorageError::Corrupt(format!(
                    "inline object points to log generation {gen}, current is {}",
                    w.gen
                ))
                .into())
            }
        };
        Ok(InlineFiles { files: files.iter().map(|(_, f)| f.clone()).collect(), gen, offset, len })
    }

    /// An inline object's bytes from the first mirror whose pages are cached, checked; `None`
    /// when none is cached or the bytes do not check (the async path then reads and reports).
    fn read_inline_cached(&self, at: &InlineFiles, size: u64) -> Option<Vec<u8>> {
        at.files.iter().find_map(|f| {
            let frame = f.read_cached_at(at.len as usize, at.offset)?;
            wal::inline_bytes(&frame, Salt::Gen(at.gen), size).ok()
        })
    }

    /// An inline object's bytes from the mirrors `at` names (opened at lookup), checked.
    pub(super) async fn read_inline(&self, at: &InlineFiles, size: u64) -> Result<Vec<u8>> {
        let mut last = Error::Storage(StorageError::Unreadable("no log mirror is readable".into()));
        for f in &at.files {
            match f
                .read_vec_at(at.len as usize, at.offset)
                .await
                .and_then(|fr| wal::inline_bytes(&fr, Salt::Gen(at.gen), size))
            {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!("tablet {}: inline read from {} failed: {e}", self.id, f.path().display());
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Read bytes `a..b` of stripe `s` of part `p`, verifying every shard read and rebuilding
    /// from parity when a shard is missing or corrupt.
    #[allow(clippy::too_many_arguments)]
    async fn read_stripe(
        &self,
        bucket: &str,
        key: &str,
        p: &PartLayout,
        s: usize,
        a: usize,
        b: usize,
        plan: &SegmentFiles,
    ) -> Result<Bytes> {
        let (k, m) = (p.k as usize, p.m as usize);
        let sl = p.shard_len(s);
        assert!(a < b && b <= sl * k, "bytes {a}..{b} of a stripe of {k} shards of {sl}");
        let (first, last) = (a / sl, (b - 1) / sl);
        let mut shards: Vec<Option<AlignedBuf>> = (0..k + m).map(|_| None).collect();
        let ok = self.read_shards(p, s, sl, first..=last, plan, &mut shards).await;
        if !ok {
            let rest: Vec<usize> = (0..k + m).filter(|i| shards[*i].is_none() && !(first..=last).contains(i)).collect();
            for i in rest {
                self.read_shards(p, s, sl, i..=i, plan, &mut shards).await;
                if shards.iter().filter(|x| x.is_some()).count() >= k {
                    break;
                }
            }
            self.ctx.stats.borrow_mut().degraded_reads += 1;
            {
                let mut q = self.repair_queue.borrow_mut();
                self.queue_repair(&mut q, (bucket.to_string(), key.to_string()));
            }
            let pool = self.ctx.pool.clone();
            self.ctx.codec.borrow_mut().reconstruct(k, m, sl, &mut shards, || pool.get_for(sl)).map_err(
                |e| match e {
                    Error::Storage(StorageError::Unreadable(why)) => {
                        Error::Storage(StorageError::Unreadable(format!("{bucket}/{key} stripe {s}: {why}")))
                    }
                    e => e,
                },
            )?;
        }
        let mut out = BytesMut::with_capacity(b - a);
        for (i, shard) in shards.iter().enumerate().take(last + 1).skip(first) {
            // Read whole, or `reconstruct` returned Ok: every data shard is there.
            let shard = shard.as_ref().unwrap_or_else(|| panic!("{bucket}/{key}: shard {i} missing after a rebuild"));
            let lo = a.max(i * sl) - i * sl;
            let hi = b.min((i + 1) * sl) - i * sl;
            out.extend_from_slice(&shard.as_slice()[lo..hi]);
        }
        Ok(out.freeze())
    }

    /// Read and verify shards `idx` of stripe `s` into `out`; false if any failed.
    pub(super) async fn read_shards(
        &self,
        p: &PartLayout,
        s: usize,
        sl: usize,
        idx: std::ops::RangeInclusive<usize>,
        plan: &SegmentFiles,
        out: &mut [Option<AlignedBuf>],
    ) -> bool {
        let healthy = self.ctx.healthy.borrow().clone();
        let reads = idx.clone().map(|i| {
            let loc = p.loc(s, i);
            let dev = p.devices[i];
            // A failed device is not read (it may hang or return garbage): rebuild instead.
            let f = plan
                .get(&(DeviceId(dev), SegmentId(loc.seg)))
                .cloned()
                .filter(|_| healthy.get(dev as usize).copied().unwrap_or(false));
            let buf = self.ctx.pool.get_for(sl);
            async move {
                let f = f?;
                let (r, b) = f.read_at(buf, BlockIndex(loc.block).offset_bytes(), sl).await;
                if let Err(e) = &r {
                    self.ctx.note_io_error(dev, e, false);
                } else {
                    self.ctx.note_io_ok(dev);
                }
                match r {
                    Ok(()) if crc(b.as_slice()) == loc.crc => Some(b),
                    Ok(()) => {
                        tracing::warn!(
                            "checksum mismatch in {} block {} (shard {i} of stripe {s}); rebuilding from parity",
                            f.path().display(),
                            loc.block
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!("read failed: {e}; rebuilding from parity");
                        None
                    }
                }
            }
        });
        let results = join_all(reads).await;
        let mut ok = true;
        for (i, r) in idx.zip(results) {
            ok &= r.is_some();
            out[i] = r;
        }
        ok
    }
}

/// The parts of an object that overlap `r`, each with the overlapping byte range inside the
/// part (`lo..hi`, never empty).
fn parts_in_range(parts: &[PartLayout], r: ByteRange) -> impl Iterator<Item = (&PartLayout, u64, u64)> {
    let mut base = 0u64;
    parts.iter().filter_map(move |p| {
        let (ps, pe) = (base, base + p.size);
        base = pe;
        (pe > r.start && ps < r.end).then(|| (p, r.start.max(ps) - ps, r.end.min(pe) - ps))
    })
}
