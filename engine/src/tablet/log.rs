//! The tablet's write-ahead log at run time: the commit queue, the group-commit leader that
//! turns a batch of queued records into one durable append to every log mirror, and the two
//! ways of appending (O_DIRECT|O_DSYNC, or through the page cache and fdatasync).

use super::Tablet;
use crate::buf::AlignedBuf;
use crate::error::{Error, RequestError, Result};
use crate::ids::DeviceId;
use crate::io::DevFile;
use crate::record::Record;
use crate::util::ALIGN_BYTES;
use crate::wal::{self, frame_into, FRAME_HEADER_BYTES};
use bytes::Bytes;
use futures::future::join_all;
use std::path::PathBuf;
use std::rc::Rc;

pub(super) struct Pending {
    payload: Vec<u8>,
    rec: Record,
    key: Option<(String, String)>,
    reply: futures::channel::oneshot::Sender<Result<()>>,
}

/// A log generation's mirror files: (device, file).
pub(super) type Mirrors = Vec<(DeviceId, Rc<DevFile>)>;

pub(super) struct WalState {
    pub(super) gen: u64,
    pub(super) len: u64,
    /// The mirrors, opened through the page cache (reads of inline objects).
    pub(super) files: Mirrors,
    /// The same files opened O_DIRECT|O_DSYNC, in `files` order, for appends; `None` where the
    /// filesystem refuses O_DIRECT (or `EngineConfig::log_direct` is off): appends then go
    /// through the page cache and each mirror is fdatasync'd.
    pub(super) direct: Option<Vec<Rc<DevFile>>>,
    /// The log's bytes from the 4 KiB boundary at or below `len` up to `len`: an O_DIRECT
    /// append rewrites that block (the same bytes, so a torn write cannot change committed
    /// frames) followed by the new frames, zero-padded to the next boundary.
    pub(super) tail: Vec<u8>,
    /// The previous generation's mirrors during a switch, between the new generation taking
    /// over and the inline objects being re-pointed at it (`install_checkpoint`): a read that
    /// looks an object up in that window finds it at its old place. `None` otherwise, so the
    /// retired files are not held once no reader needs them.
    pub(super) prev: Option<(u64, Mirrors)>,
}

/// A generation's mirror files opened (`WalState::open_files`), not yet on the ring.
pub(super) struct OpenedMirrors {
    files: Vec<std::fs::File>,
    direct: Option<Vec<std::fs::File>>,
}

impl WalState {
    /// The state of a generation just written: `bytes` is its whole content, `written` its
    /// mirror files. Opens on the calling thread: at start-up only (`open_files` otherwise).
    pub(super) fn open(gen: u64, bytes: &[u8], written: &[(u16, PathBuf)], direct: bool) -> Result<WalState> {
        let opened = Self::open_files(written, direct)?;
        Self::from_files(gen, bytes, written, opened)
    }

    /// Open a generation's mirror files (blocking opens, for a helper thread): through the
    /// page cache for reads and, with `direct`, O_DIRECT|O_DSYNC for appends, on every mirror
    /// or none.
    pub(super) fn open_files(written: &[(u16, PathBuf)], direct: bool) -> Result<OpenedMirrors> {
        let files = written.iter().map(|(_, p)| DevFile::open_std(p, false, false)).collect::<Result<Vec<_>>>()?;
        let direct = if direct {
            let mut v = Vec::with_capacity(written.len());
            for (_, p) in written {
                match DevFile::open_dsync_std(p)? {
                    Some(f) => v.push(f),
                    None => break,
                }
            }
            (v.len() == written.len()).then_some(v)
        } else {
            None
        };
        Ok(OpenedMirrors { files, direct })
    }

    /// The state of a generation whose files `open_files` opened.
    pub(super) fn from_files(
        gen: u64,
        bytes: &[u8],
        written: &[(u16, PathBuf)],
        opened: OpenedMirrors,
    ) -> Result<WalState> {
        assert_eq!(opened.files.len(), written.len(), "one open file per mirror");
        let files = written
            .iter()
            .zip(opened.files)
            .map(|((d, p), f)| Ok((DeviceId(*d), Rc::new(DevFile::from_std(f, p, false)?))))
            .collect::<Result<Vec<_>>>()?;
        let direct = match opened.direct {
            Some(v) => Some(
                written
                    .iter()
                    .zip(v)
                    .map(|((_, p), f)| Ok(Rc::new(DevFile::from_std(f, p, true)?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let len = bytes.len() as u64;
        let tail = bytes[align_down(len) as usize..].to_vec();
        assert!((tail.len() as u64) < LOG_BLOCK_BYTES, "the tail is less than one log block");
        Ok(WalState { gen, len, files, direct, tail, prev: None })
    }
}

/// O_DIRECT I/O granularity of the log appends (a multiple of every device's logical block).
pub(super) const LOG_BLOCK_BYTES: u64 = 4096;
const _: () = assert!(LOG_BLOCK_BYTES.is_power_of_two(), "align_down masks with LOG_BLOCK_BYTES - 1");
// An O_DIRECT append writes whole log blocks from an `AlignedBuf`, at a block boundary.
const _: () =
    assert!(LOG_BLOCK_BYTES.is_multiple_of(ALIGN_BYTES as u64), "a log block is a whole number of I/O blocks");
// A frame's length is kept as a u32 (`wal::set_inline_pos`, `DataLoc::Inline::len`), and
// recovery accepts frames up to `MAX_RECORD_BYTES`.
const _: () = assert!(wal::MAX_RECORD_BYTES + FRAME_HEADER_BYTES <= u32::MAX as usize, "a frame's length fits a u32");

pub(super) fn align_down(x: u64) -> u64 {
    x & !(LOG_BLOCK_BYTES - 1)
}

impl Tablet {
    /// Bytes in the current log generation.
    pub fn log_bytes(&self) -> u64 {
        self.wal.borrow().len
    }

    /// Commit a record that no key-level precondition guards (bucket records).
    pub async fn commit_public(self: Rc<Self>, rec: Record) -> Result<()> {
        self.commit(rec, None).await
    }

    /// Refuse a client write with `Error::SlowDown` while the commit queue is full, before it
    /// writes anything: its record would only wait (memory) behind a log that cannot keep up.
    /// One admitted here may still find the queue full when its data is on disk; `commit`
    /// then waits for room rather than throw that work away.
    pub(super) fn admit_write(&self) -> Result<()> {
        let (len, max) = (self.queue.borrow().len(), self.ctx.shared.commit_queue_depth_max);
        if len >= max {
            self.ctx.stats.borrow_mut().commit_queue_refused += 1;
            return Err(Error::SlowDown(format!("tablet {} has {len} records waiting for the log", self.id)));
        }
        Ok(())
    }

    /// Make `rec` durable (together with every data write already done) and apply it. Waits
    /// while the commit queue holds `commit_queue_depth_max` records: the bound holds for
    /// every writer, and the ones that reach it here (data already written, or the engine's
    /// own records) are never refused.
    pub(super) async fn commit(self: &Rc<Self>, rec: Record, key: Option<(String, String)>) -> Result<()> {
        let payload = rec.encode();
        if !wal::record_fits(payload.len()) {
            return Err(RequestError::RecordTooLarge { record_bytes: payload.len() }.into());
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        // Marked before any wait, in the same turn as the caller's precondition check: a
        // conditional write to this key that comes later must see it pending.
        if let Some(k) = &key {
            *self.pending_keys.borrow_mut().entry(k.clone()).or_insert(0) += 1;
        }
        let max = self.ctx.shared.commit_queue_depth_max;
        while self.queue.borrow().len() >= max {
            // A full queue has a leader (whoever queued made sure of it); it wakes every
            // waiter when it takes the next batch, and each checks again.
            let (room_tx, room_rx) = futures::channel::oneshot::channel();
            self.queue_room.borrow_mut().push(room_tx);
            self.ctx.stats.borrow_mut().commit_queue_waits += 1;
            let _ = room_rx.await;
        }
        let len = {
            let mut q = self.queue.borrow_mut();
            q.push(Pending { payload, rec, key, reply: tx });
            q.len()
        };
        // Checked where the queue grows (the bound's only writer) and reported as the peak.
        assert!(len <= max, "tablet {}: commit queue at {len} records, bound {max}", self.id);
        {
            let mut st = self.ctx.stats.borrow_mut();
            st.commit_queue_peak = st.commit_queue_peak.max(len as u64);
        }
        self.lead_commits();
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Records waiting for the next group commit.
    pub fn commit_queue_len(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Start a commit leader unless one is running: a task of its own that writes batches
    /// until the queue is empty. (Not the committing request's task: under steady load the
    /// leader loops for long, and the request whose commit started it would wait for all of
    /// that instead of for its own batch.)
    pub(super) fn lead_commits(self: &Rc<Self>) {
        if self.flushing.get() {
            return;
        }
        self.flushing.set(true);
        let tablet = self.clone();
        monoio::spawn(async move {
            tablet.flush_batches().await;
            tablet.flushing.set(false);
        });
    }

    async fn flush_batches(self: &Rc<Self>) {
        loop {
            // A mirror's device may have failed since the last batch: this tablet's own I/O
            // error fails it in the health view at once, and the core tells its tablets
            // (`device_failed`) only a moment later.
            if self.wal_rewrite.get() || self.mirror_failed_since_last_look() {
                self.rewrite_wal().await;
            }
            if self.ckpt.borrow().as_ref().is_some_and(|r| r.ready.is_some()) {
                let run = self.ckpt.borrow_mut().take();
                if let Some(run) = run {
                    self.install_checkpoint(run).await;
                }
            }
            let batch = std::mem::take(&mut *self.queue.borrow_mut());
            // The queue is empty again: whoever waits for room may queue now.
            for w in std::mem::take(&mut *self.queue_room.borrow_mut()) {
                let _ = w.send(());
            }
            if batch.is_empty() {
                break;
            }
            let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            let t = std::time::Instant::now();
            let result = self.write_batch(&batch, dirty).await;
            {
                let mut st = self.ctx.stats.borrow_mut();
                st.log_commits += 1;
                st.log_records += batch.len() as u64;
                st.log_commit_us += t.elapsed().as_micros() as u64;
            }
            let (gen, base) = {
                let w = self.wal.borrow();
                (w.gen, w.len)
            };
            match result {
                Ok(total) => {
                    self.wal.borrow_mut().len += total;
                    if let Some(run) = self.ckpt.borrow_mut().as_mut() {
                        // These frames follow the cut: the new generation gets them too.
                        for p in &batch {
                            frame_into(&mut run.after, run.gen, &p.payload);
                        }
                    }
                    let mut off = base;
                    let count = batch.len();
                    for p in batch {
                        let frame_len = (FRAME_HEADER_BYTES + p.payload.len()) as u32;
                        let mut rec = p.rec;
                        wal::set_inline_pos(&mut rec, gen, off, frame_len);
                        off += frame_len as u64;
                        {
                            let mut segs = self.segs.borrow_mut();
                            self.state.borrow_mut().apply(rec, &mut segs);
                        }
                        self.unpend(&p.key);
                        let _ = p.reply.send(Ok(()));
                    }
                    // The records were placed where `write_batch` framed them, one after another.
                    assert_eq!(off, base + total, "tablet {}: {count} records placed off their frames", self.id);
                    if let Err(e) = self.maybe_checkpoint().await {
                        tracing::error!("tablet {}: checkpoint failed: {e}", self.id);
                    }
                    self.maybe_compact();
                }
                Err(e) => {
                    tracing::error!("tablet {}: commit failed: {e}", self.id);
                    for p in batch {
                        self.unpend(&p.key);
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Whether device health changed since the leader last looked and a mirror of the current
    /// generation is now on a failed device (asked once per change, as `device_failed` is, so
    /// a rewrite that cannot find healthy mirrors is not retried before every batch).
    fn mirror_failed_since_last_look(&self) -> bool {
        let epoch = self.ctx.health_epoch.get();
        if self.log_health_epoch.replace(epoch) == epoch {
            return false;
        }
        let healthy = self.ctx.healthy.borrow();
        self.wal.borrow().files.iter().any(|(d, _)| !healthy.get(d.index()).copied().unwrap_or(false))
    }

    /// A queued record of `key` was applied or failed: one fewer pending (taken in `commit`).
    fn unpend(&self, key: &Option<(String, String)>) {
        if let Some(k) = key {
            let mut pk = self.pending_keys.borrow_mut();
            let n = pk.get_mut(k).expect("a key is pending from its commit until its record is applied");
            assert!(*n > 0, "tablet {}: pending count of a key underflows", self.id);
            *n -= 1;
            if *n == 0 {
                pk.remove(k);
            }
        }
    }

    async fn write_batch(&self, batch: &[Pending], mut dirty: Vec<(DeviceId, Rc<DevFile>)>) -> Result<u64> {
        dirty.sort_by_key(|(_, f)| Rc::as_ptr(f) as usize);
        dirty.dedup_by_key(|(_, f)| Rc::as_ptr(f) as usize);
        let syncs = join_all(dirty.iter().map(|(_, f)| f.sync_data())).await;
        // A failed flush leaves the page cache in an unknown state: the device fails.
        self.check_mirrors(&dirty, syncs.into_iter().map(|r| (r, true)))?;
        let gen = self.wal.borrow().gen;
        let mut buf = Vec::with_capacity(batch.iter().map(|p| p.payload.len() + FRAME_HEADER_BYTES).sum());
        for p in batch {
            frame_into(&mut buf, gen, &p.payload);
        }
        let total = buf.len() as u64;
        assert_eq!(
            total,
            batch.iter().map(|p| (FRAME_HEADER_BYTES + p.payload.len()) as u64).sum::<u64>(),
            "a batch is its frames, nothing between them"
        );
        self.append_frames(buf).await?;
        Ok(total)
    }

    /// Results of one I/O per file (with whether a failure counts as a failed flush): note
    /// every failure against its device and return the first.
    fn check_mirrors(
        &self,
        files: &[(DeviceId, Rc<DevFile>)],
        results: impl IntoIterator<Item = (Result<()>, bool)>,
    ) -> Result<()> {
        let mut first_err = None;
        for ((dev, _), (r, flush)) in files.iter().zip(results) {
            if let Err(e) = r {
                self.ctx.note_io_error(dev.0, &e, flush);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Append `frames` to the current generation's mirrors, durably (the caller advances
    /// `len` once it returns Ok).
    pub(super) async fn append_frames(&self, frames: Vec<u8>) -> Result<()> {
        let direct = self.wal.borrow().direct.clone();
        match direct {
            Some(direct) => self.append_direct(&frames, &direct).await,
            None => self.append_buffered(frames).await,
        }
    }

    /// Append `frames` to every mirror with one O_DIRECT|O_DSYNC write each: the log's last
    /// partial block again, the frames, zeros to the block boundary. Durable when it returns.
    async fn append_direct(&self, frames: &[u8], direct: &[Rc<DevFile>]) -> Result<()> {
        let (base, files) = {
            let w = self.wal.borrow();
            (w.len, w.files.clone())
        };
        let start = align_down(base);
        let mut block = {
            let w = self.wal.borrow();
            // Checked when the tail is kept and again here, before it is written back.
            assert_eq!(
                w.tail.len() as u64,
                base - start,
                "tablet {}: log tail does not end at the log's length",
                self.id
            );
            let end = (base + frames.len() as u64).div_ceil(LOG_BLOCK_BYTES) * LOG_BLOCK_BYTES;
            let mut b = AlignedBuf::alloc((end - start) as usize);
            b.extend_from(&w.tail);
            b
        };
        block.extend_from(frames);
        let new_len = base + frames.len() as u64;
        let cap = block.capacity();
        assert!(start <= base && new_len - start <= cap as u64, "the append fits its aligned block");
        assert!((cap as u64).is_multiple_of(LOG_BLOCK_BYTES), "an O_DIRECT append writes whole log blocks");
        block.resize_zeroed(cap);
        let keep = block.as_slice()[(align_down(new_len) - start) as usize..(new_len - start) as usize].to_vec();
        // One buffer for every mirror's write (a reference each, not a copy).
        let block = crate::buf::SharedBuf(Rc::new(block));
        let writes = join_all(direct.iter().map(|f| f.write_dsync_at(block.clone(), start))).await;
        self.check_mirrors(&files, writes)?;
        let mut w = self.wal.borrow_mut();
        debug_assert_eq!(w.len, base, "the log grew during an append (one commit leader per tablet)");
        w.tail = keep;
        Ok(())
    }

    /// Append `frames` through the page cache, then fdatasync every mirror.
    async fn append_buffered(&self, frames: Vec<u8>) -> Result<()> {
        let (base, files): (u64, Mirrors) = {
            let w = self.wal.borrow();
            (w.len, w.files.clone())
        };
        let new_len = base + frames.len() as u64;
        let keep_from = (align_down(new_len).max(base) - base) as usize;
        let keep = frames[keep_from..].to_vec();
        // One buffer shared by every mirror's write (a refcount, not a copy per mirror).
        let buf = Bytes::from(frames);
        let writes = join_all(files.iter().map(|(_, f)| f.write_buf_at(buf.clone(), base))).await;
        self.check_mirrors(&files, writes.into_iter().map(|r| (r, false)))?;
        let syncs = join_all(files.iter().map(|(_, f)| f.sync_data())).await;
        // A failed flush leaves the page cache in an unknown state: the device fails.
        self.check_mirrors(&files, syncs.into_iter().map(|r| (r, true)))?;
        // The tail is kept here too, so the two ways of appending stay interchangeable.
        let mut w = self.wal.borrow_mut();
        debug_assert_eq!(w.len, base, "the log grew during an append (one commit leader per tablet)");
        if align_down(new_len) > align_down(base) {
            w.tail = keep;
        } else {
            w.tail.extend_from_slice(&keep);
        }
        // The tail is the log's last partial block, whichever way it was appended.
        assert_eq!(w.tail.len() as u64, new_len - align_down(new_len), "tablet {}: log tail", self.id);
        Ok(())
    }
}
