//! The write path: a body streamed into aligned stripe buffers (or kept whole when it is
//! small enough to live inline in its log record), each full stripe placed on k+m devices,
//! encoded and its shards written at once, a few stripes of an object in flight.

use super::{PendingExtents, Tablet, INLINE_MAX_BYTES};
use crate::api::*;
use crate::buf::AlignedBuf;
use crate::error::{Error, RequestError, Result, StorageError};
use crate::ids::DeviceId;
use crate::placement;
use crate::record::*;
use crate::stripe::{crc, shard_len_for};
use futures::future::join_all;
use std::rc::Rc;

pub(super) enum Written {
    Inline(Vec<u8>),
    Part(PartLayout),
}

pub(super) struct WriteResult {
    pub(super) size: u64,
    pub(super) md5: [u8; 16],
    pub(super) data: Written,
    pub(super) checksum: Option<StoredChecksum>,
    _pending: PendingExtents,
}

pub(super) fn rotate_for(bucket: &str, key: &str) -> usize {
    let h = xxhash_rust::xxh3::xxh3_64(bucket.as_bytes()) ^ xxhash_rust::xxh3::xxh3_64(key.as_bytes()).rotate_left(17);
    h as usize
}

impl Tablet {
    pub(super) async fn write_body(
        self: &Rc<Self>,
        body: PutBody,
        allow_inline: bool,
        rotate: usize,
        max_bytes: u64,
    ) -> Result<WriteResult> {
        let ctx = &self.ctx;
        let set = &ctx.shared.set;
        let k = set.k;
        let chunk = ctx.shared.chunk_bytes;
        // Stripe buffers are taken from the pool only once the body outgrows the inline limit:
        // a small object (most of a small-PUT load) never holds k pool buffers, and many of
        // them in flight never drain the pool into fresh allocations.
        let mut bufs: Vec<AlignedBuf> = Vec::new();
        let mut small: Vec<u8> = Vec::new();
        let mut cur = 0usize;
        // The ETag's MD5, hashed together with the other PUTs of this core (`md5batch`).
        let mut md5 = ctx.md5.stream();
        let mut size = 0u64;
        let mut layout: Option<PartLayout> = None;
        let mut pending = PendingExtents { tablet: self.clone(), extents: Vec::new() };
        let mut inflight: std::collections::VecDeque<monoio::task::JoinHandle<Result<()>>> =
            std::collections::VecDeque::new();
        let checksum;
        loop {
            match body.recv_async().await {
                Err(_) => {
                    return Err(RequestError::BodyAborted("the request body ended before it was complete".into()).into())
                }
                Ok(BodyItem::Abort(why)) => return Err(RequestError::BodyAborted(why).into()),
                Ok(BodyItem::End { checksum: c }) => {
                    checksum = c;
                    break;
                }
                Ok(BodyItem::Data(bytes)) => {
                    md5.update(bytes.clone()).await;
                    size += bytes.len() as u64;
                    if size > max_bytes {
                        return Err(RequestError::EntityTooLarge(size).into());
                    }
                    if allow_inline && layout.is_none() && bufs.is_empty() && size <= INLINE_MAX_BYTES {
                        small.extend_from_slice(&bytes);
                        continue;
                    }
                    let spilled = std::mem::take(&mut small);
                    for piece in [&spilled[..], &bytes[..]] {
                        let mut src = piece;
                        while !src.is_empty() {
                            // The next stripe's buffers are taken only when its first byte
                            // arrives, after the oldest stripe in flight has let go of its own.
                            if bufs.is_empty() {
                                bufs = (0..k).map(|_| ctx.pool.get()).collect();
                            }
                            let n = bufs[cur].extend_from(src);
                            src = &src[n..];
                            if bufs[cur].len() == chunk {
                                cur += 1;
                                if cur == k {
                                    let l = layout.get_or_insert_with(|| new_layout(set, chunk));
                                    if l.devices.is_empty() {
                                        l.devices = self.place(rotate)?;
                                    }
                                    let full = std::mem::take(&mut bufs);
                                    // Keep a few stripes of this object in flight: the body keeps
                                    // streaming in while earlier stripes are on their way to disk.
                                    if inflight.len() >= ctx.shared.stripes_in_flight {
                                        if let Some(h) = inflight.pop_front() {
                                            h.await?;
                                        }
                                    }
                                    inflight.push_back(self.start_stripe(l, full, chunk * k, &mut pending).await?);
                                    cur = 0;
                                }
                            }
                        }
                    }
                }
            }
        }
        let md5: [u8; 16] = md5.finish().await;
        if allow_inline && layout.is_none() && bufs.is_empty() && size <= INLINE_MAX_BYTES {
            assert_eq!(small.len() as u64, size, "an inline body kept every byte it received");
            return Ok(WriteResult { size, md5, data: Written::Inline(small), checksum, _pending: pending });
        }
        assert!(small.is_empty(), "a body that outgrew the inline limit moved its first bytes to the stripes");
        let tail: usize = bufs.iter().map(|b| b.len()).sum();
        let mut l = layout.unwrap_or_else(|| new_layout(set, chunk));
        if l.devices.is_empty() {
            l.devices = self.place(rotate)?;
        }
        if tail > 0 {
            // Re-split the last, partial stripe evenly over the k data shards.
            let sl = shard_len_for(tail, k, chunk);
            let mut even: Vec<AlignedBuf> = (0..k).map(|_| ctx.pool.get()).collect();
            let mut flat = bufs.iter().flat_map(|b| b.as_slice().chunks(sl.max(1))).peekable();
            let mut i = 0;
            // Walk the filled bytes in order and pour them into the even buffers.
            let mut room = sl;
            for piece in flat.by_ref() {
                let mut p = piece;
                while !p.is_empty() {
                    let n = p.len().min(room);
                    even[i].extend_from(&p[..n]);
                    p = &p[n..];
                    room -= n;
                    if room == 0 {
                        i += 1;
                        room = sl;
                    }
                }
            }
            drop(flat);
            drop(bufs);
            inflight.push_back(self.start_stripe(&mut l, even, tail, &mut pending).await?);
        }
        // Every stripe must be on disk (and its files marked for the group commit's flush)
        // before the record can be committed.
        while let Some(h) = inflight.pop_front() {
            h.await?;
        }
        l.size = size;
        l.md5 = md5;
        l.assert_consistent();
        Ok(WriteResult { size, md5, data: Written::Part(l), checksum, _pending: pending })
    }

    fn place(&self, rotate: usize) -> Result<Vec<u16>> {
        let set = &self.ctx.shared.set;
        let healthy = self.ctx.healthy.borrow();
        placement::choose(&set.zones, &healthy, set.k + set.m, set.m, rotate).ok_or_else(|| {
            Error::Storage(StorageError::InsufficientDevices(format!(
                "cannot place {}+{} shards with at most {} per zone on the healthy devices",
                set.k, set.m, set.m
            )))
        })
    }

    /// Encode one stripe of `data_len` bytes held in `data` (k buffers), place its k+m shards
    /// (recording their locations and CRCs in `l`) and start writing them all at once. The
    /// returned task finishes when every shard write has completed.
    async fn start_stripe(
        self: &Rc<Self>,
        l: &mut PartLayout,
        mut data: Vec<AlignedBuf>,
        data_len: usize,
        pending: &mut PendingExtents,
    ) -> Result<monoio::task::JoinHandle<Result<()>>> {
        let ctx = &self.ctx;
        let (k, m) = (l.k as usize, l.m as usize);
        let sl = shard_len_for(data_len, k, l.chunk_bytes as usize);
        assert_eq!(data.len(), k, "a stripe is filled from k data buffers");
        assert_eq!(l.devices.len(), k + m, "a stripe is placed before it is written");
        assert!(l.shards.len().is_multiple_of(k + m), "stripes are recorded whole");
        assert!(sl > 0 && sl <= l.chunk_bytes as usize && data_len <= sl * k, "shard length {sl} for {data_len} bytes");
        for b in &mut data {
            b.resize_zeroed(sl);
        }
        let mut parity: Vec<AlignedBuf> = (0..m).map(|_| ctx.pool.get_for(sl)).collect();
        ctx.codec.borrow_mut().encode(&data, &mut parity)?;
        let mut all: Vec<AlignedBuf> = data;
        all.extend(parity);
        debug_assert!(all.iter().all(|b| b.len() == sl), "every shard of a stripe is {sl} bytes");
        let devs = l.devices.clone();
        // All k+m extents at once: a device whose active segment is full gets a new one made on
        // a helper thread while the others allocate.
        let allocs = join_all(devs.iter().map(|&dev| self.alloc_extent(dev, sl))).await;
        let mut exts = Vec::with_capacity(k + m);
        let mut failed = None;
        for (&dev, a) in devs.iter().zip(allocs) {
            match a {
                Ok(ext) => {
                    // Pending from here on, also if another shard's allocation failed: the
                    // marks go when `pending` does.
                    pending.extents.push((DeviceId(dev), ext.seg));
                    exts.push(ext);
                }
                Err(e) => {
                    failed.get_or_insert((dev, e));
                }
            }
        }
        if let Some((dev, e)) = failed {
            // A new segment file that cannot be created (its device directory is gone: ENOENT)
            // counts against the device like any I/O error, so the next write avoids it.
            if e.is_io() {
                self.ctx.note_io_error(dev, &e, false);
            }
            return Err(e);
        }
        let mut writes = Vec::with_capacity(k + m);
        for (ext, b) in exts.into_iter().zip(all) {
            l.shards.push(ShardLoc { seg: ext.seg.0, block: ext.block.0, crc: crc(b.as_slice()) });
            writes.push((ext.file, b, ext.block.offset_bytes()));
        }
        let me = self.clone();
        Ok(monoio::spawn(async move {
            let results = join_all(writes.into_iter().map(|(f, b, pos)| async move {
                let (r, _b) = f.write_at(b, pos).await;
                (r, f)
            }))
            .await;
            let mut err = None;
            for (i, (r, f)) in results.into_iter().enumerate() {
                match r {
                    Ok(()) => me.ctx.note_io_ok(devs[i]),
                    Err(e) => {
                        me.ctx.note_io_error(devs[i], &e, false);
                        err.get_or_insert(e);
                    }
                }
                me.dirty.borrow_mut().push((DeviceId(devs[i]), f));
            }
            match err {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }))
    }
}

fn new_layout(set: &crate::superblock::DeviceSet, chunk: usize) -> PartLayout {
    PartLayout {
        size: 0,
        chunk_bytes: chunk as u32,
        k: set.k as u8,
        m: set.m as u8,
        devices: Vec::new(),
        shards: Vec::new(),
        md5: [0; 16],
    }
}
