//! A shard: one slice of the key space with its own index, segments and write-ahead log,
//! driven by the core that owns it. Everything here runs on that core's thread: no locks.
//!
//! Write path: body chunks → aligned stripe buffers → parity → CRC32C per shard → all k+m
//! shard writes submitted at once (O_DIRECT) → group commit (fdatasync of the touched segment
//! files, then one append of many records to every log mirror and their fdatasync) → the
//! records are applied to the index in log order → replies.

use crate::api::*;
use crate::buf::AlignedBuf;
use crate::core::Core;
use crate::error::{Error, Result};
use crate::index::ShardState;
use crate::io::DevFile;
use crate::placement;
use crate::record::*;
use crate::segment::Segments;
use crate::stripe::{crc, shard_len_for};
use crate::util::unix_ms;
use crate::wal::{self, frame_into, remove_generation, Salt, FRAME_HEADER_BYTES};
use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use futures::StreamExt;
use md5::{Digest, Md5};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;

/// Objects up to this size live inside their log record, mirrored m+1 times, instead of being
/// erasure-coded (a 4 KiB object would otherwise cost k+m padded 4 KiB writes).
pub const INLINE_MAX_BYTES: u64 = 16 << 10;
/// The log is rewritten (checkpointed) once it is this large and mostly dead.
pub const CHECKPOINT_MIN_BYTES: u64 = 64 << 20;

#[path = "compact.rs"]
mod compact;
pub use compact::COMPACT_LIVE_PERCENT;
#[path = "repair.rs"]
mod repair;

struct Pending {
    payload: Vec<u8>,
    rec: Record,
    key: Option<(String, String)>,
    reply: futures::channel::oneshot::Sender<Result<()>>,
}

/// A log generation's mirror files: (device, file).
pub type Mirrors = Vec<(u16, Rc<DevFile>)>;

/// Where an inline object's frame is: its generation's mirror files (open, so a checkpoint
/// that retires the generation meanwhile cannot take them away), the frame's offset and length.
struct InlineFiles {
    files: Vec<Rc<DevFile>>,
    gen: u64,
    offset: u64,
    len: u32,
}

/// The files a read needs, opened when the object is looked up: an inline object's log
/// mirrors, or the segment files of its stripes (see `read_plan`).
enum ReadFiles {
    Inline(InlineFiles),
    Segments(HashMap<(u16, u32), Rc<DevFile>>),
}

pub struct WalState {
    pub gen: u64,
    pub len: u64,
    /// The mirrors, opened through the page cache (reads of inline objects).
    pub files: Mirrors,
    /// The same files opened O_DIRECT|O_DSYNC, in `files` order, for appends; `None` where the
    /// filesystem refuses O_DIRECT (or `EngineConfig::log_direct` is off): appends then go
    /// through the page cache and each mirror is fdatasync'd.
    pub direct: Option<Vec<Rc<DevFile>>>,
    /// The log's bytes from the 4 KiB boundary at or below `len` up to `len`: an O_DIRECT
    /// append rewrites that block (the same bytes, so a torn write cannot change committed
    /// frames) followed by the new frames, zero-padded to the next boundary.
    pub tail: Vec<u8>,
    /// The previous generation's mirrors during a switch, between the new generation taking
    /// over and the inline objects being re-pointed at it (`install_checkpoint`): a read that
    /// looks an object up in that window finds it at its old place. `None` otherwise, so the
    /// retired files are not held once no reader needs them.
    pub prev: Option<(u64, Mirrors)>,
}

impl WalState {
    /// The state of a generation just written: `bytes` is its whole content, `written` its
    /// mirror files.
    pub fn open(gen: u64, bytes: &[u8], written: &[(u16, PathBuf)], direct: bool) -> Result<WalState> {
        let files = written
            .iter()
            .map(|(d, p)| Ok((*d, Rc::new(DevFile::open(p, false, false)?))))
            .collect::<Result<Vec<_>>>()?;
        let direct = if direct {
            let mut v = Vec::with_capacity(written.len());
            for (_, p) in written {
                match DevFile::open_dsync(p)? {
                    Some(f) => v.push(Rc::new(f)),
                    None => break,
                }
            }
            (v.len() == written.len()).then_some(v)
        } else {
            None
        };
        let len = bytes.len() as u64;
        let tail = bytes[align_down(len) as usize..].to_vec();
        Ok(WalState { gen, len, files, direct, tail, prev: None })
    }
}

/// A checkpoint in progress. The new generation is written by a task of its own from a
/// snapshot of the state taken at the cut, while commits go on appending to the old
/// generation; the commit leader then appends those later frames and the `CheckpointEnd` to
/// the new generation in one durable write and switches to it (`install_checkpoint`). Until
/// that write, the new generation has no `CheckpointEnd` and recovery ignores it, so a crash at
/// any point recovers from the old generation, which holds everything acknowledged.
struct CkptRun {
    gen: u64,
    old_gen: u64,
    /// The old generation's length at the cut.
    cut: u64,
    /// Frames appended to the old generation since the cut.
    after: Vec<u8>,
    /// Set by the writer task.
    ready: Option<Result<CkptWritten>>,
    started: std::time::Instant,
}

/// The live state as log records, with the (bucket, key) of each object record.
type Snapshot = Vec<(Record, Option<(String, String)>)>;

/// A new generation written up to (not including) its `CheckpointEnd`.
struct CkptWritten {
    files: Vec<(u16, PathBuf)>,
    bytes: Bytes,
    /// Inline objects: (bucket, key, offset in the old generation, offset in the new, frame length).
    moved: Vec<(String, String, u64, u64, u32)>,
    /// Mirror devices that failed while it was written (failed once it is installed).
    failed: Vec<(u16, Error)>,
}

/// Inline objects a checkpoint reads at once.
const CHECKPOINT_READS_IN_FLIGHT: usize = 64;

/// O_DIRECT I/O granularity of the log appends (a multiple of every device's logical block).
pub const LOG_BLOCK_BYTES: u64 = 4096;

fn align_down(x: u64) -> u64 {
    x & !(LOG_BLOCK_BYTES - 1)
}

pub struct Shard {
    pub id: u32,
    pub core: Rc<Core>,
    pub state: RefCell<ShardState>,
    pub segs: RefCell<Segments>,
    pub wal: RefCell<WalState>,
    queue: RefCell<Vec<Pending>>,
    flushing: Cell<bool>,
    /// Segment files written since the last batch, with their device.
    dirty: RefCell<Vec<(u16, Rc<DevFile>)>>,
    /// A log mirror is on a failed device: rewrite the generation onto healthy mirrors
    /// before the next batch.
    wal_rewrite: Cell<bool>,
    /// A checkpoint being written in the background (`start_checkpoint`).
    ckpt: RefCell<Option<CkptRun>>,
    /// The highest log generation number handed out (a new generation takes the next one,
    /// also after an abandoned checkpoint whose files may still be being written).
    last_gen: Cell<u64>,
    /// Keys with a record submitted but not yet applied: conditional writes on them conflict.
    pending_keys: RefCell<HashMap<(String, String), u32>>,
    /// Objects a read had to reconstruct: stripes waiting for repair.
    pub repair_queue: RefCell<HashSet<(String, String)>>,
    /// Objects whose repair needs room the healthy devices do not have (no zone-safe
    /// placement): they stay below redundancy and are retried when a device comes back or is
    /// replaced, not on every read or scrub that finds them.
    pub repair_waiting: RefCell<HashSet<(String, String)>>,
    /// Held by whoever moves data to new extents (the repair of one object, the compaction of
    /// one run) from the moment it copies the layout until its `Relocate` is applied. A
    /// `Relocate` only checks that the object is the same, not that the run still has the
    /// layout the copy was made from: without this, a repair and a compaction of the same run
    /// overwrite each other's layouts, or read one that the other has already replaced.
    relocating: futures::lock::Mutex<()>,
    /// A compaction pass is running (one at a time per shard).
    compacting: Cell<bool>,
    /// Segments compaction failed to empty (unreadable data): not retried until a restart.
    compact_skip: RefCell<HashSet<(u16, u32)>>,
    /// Self-healing progress of this shard (scrub position, passes).
    heal: RefCell<repair::HealState>,
    /// Retired log files kept for the next generation to reuse, at most one per device (see
    /// `wal::Salt`): appends to a reused file overwrite written blocks instead of growing the
    /// file, and retiring a generation frees nothing (freeing blocks makes the next journal
    /// commit, which a durable append waits for, slow, more so with online discard).
    spares: RefCell<Vec<Spare>>,
}

/// A retired log generation's file on `dev`, renamed to `wal::spare_path`. `held` is its
/// handle from the generation's mirrors: while a reader that looked an inline object up
/// before the switch still holds a clone, the file is not reused.
struct Spare {
    dev: u16,
    path: PathBuf,
    held: Rc<DevFile>,
}

/// Marks extents as pending while their object is in flight; releases them when dropped.
struct PendingExtents {
    shard: Rc<Shard>,
    extents: Vec<(u16, u32)>,
}

impl Drop for PendingExtents {
    fn drop(&mut self) {
        let mut segs = self.shard.segs.borrow_mut();
        for &(d, s) in &self.extents {
            segs.release_pending(d, s);
        }
    }
}

enum Written {
    Inline(Vec<u8>),
    Part(PartLayout),
}

struct WriteResult {
    size: u64,
    md5: [u8; 16],
    data: Written,
    checksum: Option<StoredChecksum>,
    _pending: PendingExtents,
}

pub fn rotate_for(bucket: &str, key: &str) -> usize {
    let h = xxhash_rust::xxh3::xxh3_64(bucket.as_bytes()) ^ xxhash_rust::xxh3::xxh3_64(key.as_bytes()).rotate_left(17);
    h as usize
}

impl Shard {
    pub fn new(id: u32, core: Rc<Core>, state: ShardState, segs: Segments, wal: WalState) -> Rc<Shard> {
        let wal_gen = wal.gen;
        Rc::new(Shard {
            id,
            core,
            state: RefCell::new(state),
            segs: RefCell::new(segs),
            wal: RefCell::new(wal),
            queue: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            dirty: RefCell::new(Vec::new()),
            pending_keys: RefCell::new(HashMap::new()),
            repair_queue: RefCell::new(HashSet::new()),
            repair_waiting: RefCell::new(HashSet::new()),
            relocating: futures::lock::Mutex::new(()),
            compacting: Cell::new(false),
            compact_skip: RefCell::new(HashSet::new()),
            wal_rewrite: Cell::new(false),
            ckpt: RefCell::new(None),
            last_gen: Cell::new(wal_gen),
            spares: RefCell::new(Vec::new()),
            heal: RefCell::new(Default::default()),
        })
    }

    // ---------------------------------------------------------------- group commit

    /// Commit a record that no key-level precondition guards (bucket records).
    pub async fn commit_public(self: Rc<Self>, rec: Record) -> Result<()> {
        self.commit(rec, None).await
    }

    /// Make `rec` durable (together with every data write already done) and apply it.
    async fn commit(self: &Rc<Self>, rec: Record, key: Option<(String, String)>) -> Result<()> {
        let (tx, rx) = futures::channel::oneshot::channel();
        if let Some(k) = &key {
            *self.pending_keys.borrow_mut().entry(k.clone()).or_insert(0) += 1;
        }
        let payload = rec.encode();
        self.queue.borrow_mut().push(Pending { payload, rec, key, reply: tx });
        self.lead_commits();
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Start a commit leader unless one is running: a task of its own that writes batches
    /// until the queue is empty. (Not the committing request's task: under steady load the
    /// leader loops for long, and the request whose commit started it would wait for all of
    /// that instead of for its own batch.)
    fn lead_commits(self: &Rc<Self>) {
        if self.flushing.get() {
            return;
        }
        self.flushing.set(true);
        let sh = self.clone();
        monoio::spawn(async move {
            sh.flush_batches().await;
            sh.flushing.set(false);
        });
    }

    async fn flush_batches(self: &Rc<Self>) {
        loop {
            if self.wal_rewrite.get() {
                self.rewrite_wal().await;
            }
            if self.ckpt.borrow().as_ref().is_some_and(|r| r.ready.is_some()) {
                let run = self.ckpt.borrow_mut().take();
                if let Some(run) = run {
                    self.install_checkpoint(run).await;
                }
            }
            let batch = std::mem::take(&mut *self.queue.borrow_mut());
            if batch.is_empty() {
                break;
            }
            let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            let t = std::time::Instant::now();
            let result = self.write_batch(&batch, dirty).await;
            {
                let mut st = self.core.stats.borrow_mut();
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
                    if let Err(e) = self.maybe_checkpoint().await {
                        tracing::error!("shard {}: checkpoint failed: {e}", self.id);
                    }
                    self.maybe_compact();
                }
                Err(e) => {
                    tracing::error!("shard {}: commit failed: {e}", self.id);
                    for p in batch {
                        self.unpend(&p.key);
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn unpend(&self, key: &Option<(String, String)>) {
        if let Some(k) = key {
            let mut pk = self.pending_keys.borrow_mut();
            if let Some(n) = pk.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    pk.remove(k);
                }
            }
        }
    }

    async fn write_batch(&self, batch: &[Pending], mut dirty: Vec<(u16, Rc<DevFile>)>) -> Result<u64> {
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
        self.append_frames(buf).await?;
        Ok(total)
    }

    /// Results of one I/O per file (with whether a failure counts as a failed flush): note
    /// every failure against its device and return the first.
    fn check_mirrors(
        &self,
        files: &[(u16, Rc<DevFile>)],
        results: impl IntoIterator<Item = (Result<()>, bool)>,
    ) -> Result<()> {
        let mut first_err = None;
        for ((dev, _), (r, flush)) in files.iter().zip(results) {
            if let Err(e) = r {
                self.core.note_io_error(*dev, &e, flush);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Append `frames` to the current generation's mirrors, durably (the caller advances
    /// `len` once it returns Ok).
    async fn append_frames(&self, frames: Vec<u8>) -> Result<()> {
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
                "shard {}: log tail does not end at the log's length",
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
        block.resize_zeroed(cap);
        let keep = block.as_slice()[(align_down(new_len) - start) as usize..(new_len - start) as usize].to_vec();
        // One buffer for every mirror's write (a reference each, not a copy).
        let block = crate::buf::SharedBuf(Rc::new(block));
        let writes = join_all(direct.iter().map(|f| f.write_dsync_at(block.clone(), start))).await;
        self.check_mirrors(&files, writes)?;
        let mut w = self.wal.borrow_mut();
        debug_assert_eq!(w.len, base, "the log grew during an append (one commit leader per shard)");
        w.tail = keep;
        Ok(())
    }

    /// Append `frames` through the page cache, then fdatasync every mirror.
    async fn append_buffered(&self, frames: Vec<u8>) -> Result<()> {
        let (base, files): (u64, Vec<(u16, Rc<DevFile>)>) = {
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
        if align_down(new_len) > align_down(base) {
            w.tail = keep;
        } else {
            w.tail.extend_from_slice(&keep);
        }
        Ok(())
    }

    async fn maybe_checkpoint(self: &Rc<Self>) -> Result<()> {
        let len = self.wal.borrow().len;
        let live = self.state.borrow().live_log_bytes;
        if len > self.core.shared.checkpoint_min_bytes && len > 4 * live && self.ckpt.borrow().is_none() {
            self.start_checkpoint()?;
        }
        Ok(())
    }

    /// Cut: snapshot the state (inside the commit leader, so between two batches) and start a
    /// task writing the new generation from it; commits go on meanwhile (see `CkptRun`).
    fn start_checkpoint(self: &Rc<Self>) -> Result<()> {
        let (run, recs) = self.cut_checkpoint()?;
        let gen = run.gen;
        *self.ckpt.borrow_mut() = Some(run);
        let sh = self.clone();
        monoio::spawn(async move {
            let r = sh.write_checkpoint_files(gen, recs).await;
            let current = sh.ckpt.borrow().as_ref().is_some_and(|run| run.gen == gen);
            if !current {
                // Abandoned (a log rewrite replaced it): its files never got a CheckpointEnd;
                // remove them.
                if let Ok(w) = r {
                    remove_generation(&w.files);
                }
                return;
            }
            if let Some(run) = sh.ckpt.borrow_mut().as_mut() {
                run.ready = Some(r);
            }
            // The commit leader installs it before its next batch (started if none runs).
            sh.lead_commits();
        });
        Ok(())
    }

    /// A new generation number, the cut (the log's current end) and a snapshot of the live
    /// state there.
    fn cut_checkpoint(&self) -> Result<(CkptRun, Snapshot)> {
        let gen = self.last_gen.get() + 1;
        self.last_gen.set(gen);
        let recs = self.checkpoint_snapshot()?;
        let w = self.wal.borrow();
        let started = std::time::Instant::now();
        Ok((CkptRun { gen, old_gen: w.gen, cut: w.len, after: Vec::new(), ready: None, started }, recs))
    }

    /// The live state as log records (inline objects without their bytes yet).
    fn checkpoint_snapshot(&self) -> Result<Snapshot> {
        let mut recs = Vec::new();
        self.state.borrow().checkpoint_records(
            |_| Ok(Vec::new()),
            |rec, key| {
                recs.push((rec.clone(), key.map(|(b, k)| (b.to_string(), k.to_string()))));
                Ok(())
            },
        )?;
        Ok(recs)
    }

    /// Write generation `gen` from a snapshot: the inline objects' bytes are read (on the
    /// ring, many at once: most were appended O_DIRECT and are not cached), then the header
    /// and the records go to m+1 healthy mirrors, without the `CheckpointEnd`. A mirror
    /// device that fails is avoided and the generation written again elsewhere.
    async fn write_checkpoint_files(&self, gen: u64, mut recs: Snapshot) -> Result<CkptWritten> {
        let set = &self.core.shared.set;
        let mut reads = futures::stream::iter(recs.iter().enumerate().filter_map(|(i, (r, _))| match r {
            Record::ObjectPut { meta, .. } if matches!(meta.data, DataLoc::Inline { .. }) => Some(async move {
                let r = match self.inline_files(meta) {
                    Ok(at) => self.read_inline(&at, meta.size).await,
                    Err(e) => Err(e),
                };
                (i, r)
            }),
            _ => None,
        }))
        .buffer_unordered(CHECKPOINT_READS_IN_FLIGHT);
        let mut data: Vec<(usize, Vec<u8>)> = Vec::new();
        while let Some((i, r)) = reads.next().await {
            data.push((i, r?));
        }
        drop(reads);
        for (i, d) in data {
            if let Record::ObjectPut { inline, .. } = &mut recs[i].0 {
                *inline = d;
            }
        }
        let mut g = GenerationBytes::new(self.id, gen, set.set_id);
        let mut moved = Vec::new();
        for (rec, key) in &recs {
            if let (Some((b, k)), Some((off, len))) = (key, g.push(rec)) {
                if let Record::ObjectPut {
                    meta: ObjectMeta { data: DataLoc::Inline { offset: old, .. }, .. }, ..
                } = rec
                {
                    moved.push((b.clone(), k.clone(), *old, off, len));
                }
            }
        }
        let bytes = Bytes::from(g.bytes);
        let mut failed: Vec<(u16, Error)> = Vec::new();
        let files = loop {
            let mut healthy = self.core.healthy.borrow().clone();
            for (d, _) in &failed {
                healthy[*d as usize] = false;
            }
            let mirrors = choose_mirrors(set, &self.core.paths.borrow(), &healthy, self.id)?;
            let spares = self.take_spares(&mirrors);
            match wal::write_generation_async(&mirrors, self.id, gen, bytes.clone(), &spares).await {
                Ok((w, recycled)) => {
                    self.core.stats.borrow_mut().log_files_recycled += recycled as u64;
                    break w;
                }
                Err((dev, e)) => {
                    tracing::warn!("shard {}: log mirror on device {dev} failed ({e}); writing elsewhere", self.id);
                    failed.push((dev, e.clone()));
                    // Bounded: each attempt avoids one more device, and `choose_mirrors` fails
                    // once too few are left.
                    if failed.len() >= set.device_count() {
                        for (dev, e) in &failed {
                            self.core.note_io_error(*dev, e, true);
                        }
                        return Err(e);
                    }
                }
            }
        };
        Ok(CkptWritten { files, bytes, moved, failed })
    }

    /// The spares usable for a new generation on `mirrors`: one per mirror device whose spare
    /// no reader holds any more. They leave the list (a spare is used once).
    fn take_spares(&self, mirrors: &[(u16, PathBuf)]) -> Vec<(u16, PathBuf)> {
        let mut spares = self.spares.borrow_mut();
        let mut out = Vec::new();
        for (dev, _) in mirrors {
            if let Some(i) = spares.iter().position(|s| s.dev == *dev && Rc::strong_count(&s.held) == 1) {
                let s = spares.swap_remove(i);
                out.push((s.dev, s.path));
            }
        }
        out
    }

    /// Forget the spare on `dev` (its file stays; the next start removes it).
    pub(crate) fn drop_spares_on(&self, dev: u16) {
        self.spares.borrow_mut().retain(|s| s.dev != dev);
    }

    /// Retire a replaced generation's mirror files: each becomes its device's spare if the
    /// device has none, else it is removed. (A rename that does not reach the disk before a
    /// crash leaves an older complete generation, which recovery passes over for the newer.)
    fn retire(&self, files: Mirrors) {
        let paths = self.core.paths.borrow();
        let mut spares = self.spares.borrow_mut();
        for (dev, f) in files {
            let spare = paths.get(dev as usize).cloned().flatten().map(|d| wal::spare_path(&d, self.id));
            let kept = match spare {
                Some(sp) if !spares.iter().any(|s| s.dev == dev) && std::fs::rename(f.path(), &sp).is_ok() => {
                    spares.push(Spare { dev, path: sp, held: f.clone() });
                    true
                }
                _ => false,
            };
            if !kept {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }

    /// Switch to a checkpoint's new generation (inside the commit leader): append the frames
    /// committed since the cut and the `CheckpointEnd` in one durable write to every mirror,
    /// then point the inline objects at their new places and drop the older generations. If
    /// anything fails, the new generation is removed and the log stays where it was.
    async fn install_checkpoint(&self, run: CkptRun) {
        let w = match run.ready {
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                tracing::error!("shard {}: checkpoint failed: {e}", self.id);
                return;
            }
            None => return,
        };
        for (dev, e) in &w.failed {
            self.core.note_io_error(*dev, e, true);
        }
        let delay = self.core.shared.checkpoint_install_delay_ms;
        if delay > 0 {
            monoio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let base = w.bytes.len() as u64;
        let (cur_gen, cur_len) = {
            let cur = self.wal.borrow();
            (cur.gen, cur.len)
        };
        if cur_gen != run.old_gen {
            remove_generation(&w.files);
            return;
        }
        // Every frame appended since the cut is in `after`: the two logs end at the same record.
        assert_eq!(cur_len - run.cut, run.after.len() as u64, "shard {}: checkpoint missed frames", self.id);
        let mut tail = run.after;
        frame_into(&mut tail, run.gen, &Record::CheckpointEnd.encode());
        let tail_len = tail.len() as u64;
        let new = match WalState::open(run.gen, &w.bytes, &w.files, self.core.shared.log_direct) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("shard {}: checkpoint failed: {e}", self.id);
                remove_generation(&w.files);
                return;
            }
        };
        // A read that looked an inline object up before the switch has its old generation's
        // files open already (`inline_files`, at lookup). One that looks it up until the
        // objects are re-pointed below finds the old generation through `prev`.
        let mut new = new;
        new.prev = Some((run.old_gen, self.wal.borrow().files.clone()));
        let old = std::mem::replace(&mut *self.wal.borrow_mut(), new);
        if let Err(e) = self.append_frames(tail).await {
            tracing::error!("shard {}: checkpoint failed: {e}", self.id);
            *self.wal.borrow_mut() = old;
            // Its CheckpointEnd may have reached some mirror: the new generation must go
            // before anything more is acknowledged in the old one.
            remove_generation(&w.files);
            return;
        }
        self.wal.borrow_mut().len += tail_len;
        {
            let mut st = self.state.borrow_mut();
            for (b, k, old_off, new_off, len) in w.moved {
                if let Some(m) = st.objects.get_mut(&b).and_then(|m| m.get_mut(&k)) {
                    if matches!(m.data, DataLoc::Inline { gen, offset, .. } if gen == run.old_gen && offset == old_off)
                    {
                        m.data = DataLoc::Inline { gen: run.gen, offset: new_off, len };
                    }
                }
            }
            for m in st.objects.values_mut().flat_map(|m| m.values_mut()) {
                if let DataLoc::Inline { gen, offset, len } = m.data {
                    if gen == run.old_gen {
                        // Written after the cut: only those are left in the old generation.
                        assert!(offset >= run.cut, "shard {}: inline object at {offset} left behind", self.id);
                        m.data = DataLoc::Inline { gen: run.gen, offset: base + offset - run.cut, len };
                    }
                }
            }
        }
        self.wal.borrow_mut().prev = None;
        self.retire(old.files);
        wal::remove_older(&self.core.paths.borrow(), self.id, run.gen);
        self.core.stats.borrow_mut().checkpoints += 1;
        tracing::debug!(
            "shard {}: checkpoint to generation {} ({} KiB) done {} ms after its cut; {} KiB committed meanwhile",
            self.id,
            run.gen,
            base >> 10,
            run.started.elapsed().as_millis(),
            tail_len >> 10
        );
    }

    /// Rewrite the log at once as a new generation holding only the live state (to move it
    /// off a failed mirror), inside the commit leader: no batch is in flight, and a checkpoint
    /// in progress is abandoned.
    pub async fn checkpoint(&self) -> Result<()> {
        self.ckpt.borrow_mut().take();
        let (mut run, recs) = self.cut_checkpoint()?;
        let gen = run.gen;
        let w = self.write_checkpoint_files(gen, recs).await?;
        let files = w.files.clone();
        run.ready = Some(Ok(w));
        self.install_checkpoint(run).await;
        if self.wal.borrow().gen == gen {
            Ok(())
        } else {
            remove_generation(&files);
            Err(Error::Io(format!("shard {}: the log could not be rewritten (see the errors above)", self.id)))
        }
    }

    // ---------------------------------------------------------------- write path

    async fn write_body(self: &Rc<Self>, body: PutBody, allow_inline: bool, rotate: usize) -> Result<WriteResult> {
        let core = &self.core;
        let set = &core.shared.set;
        let k = set.k;
        let chunk = core.shared.chunk_bytes;
        // Stripe buffers are taken from the pool only once the body outgrows the inline limit:
        // a small object (most of a small-PUT load) never holds k pool buffers, and many of
        // them in flight never drain the pool into fresh allocations.
        let mut bufs: Vec<AlignedBuf> = Vec::new();
        let mut small: Vec<u8> = Vec::new();
        let mut cur = 0usize;
        // The ETag's MD5, hashed together with the other PUTs of this core (`md5batch`).
        let mut md5 = core.md5.stream();
        let mut size = 0u64;
        let mut layout: Option<PartLayout> = None;
        let mut pending = PendingExtents { shard: self.clone(), extents: Vec::new() };
        let mut inflight: std::collections::VecDeque<monoio::task::JoinHandle<Result<()>>> =
            std::collections::VecDeque::new();
        let checksum;
        loop {
            match body.recv_async().await {
                Err(_) => return Err(Error::BodyAborted("the request body ended before it was complete".into())),
                Ok(BodyItem::Abort(why)) => return Err(Error::BodyAborted(why)),
                Ok(BodyItem::End { checksum: c }) => {
                    checksum = c;
                    break;
                }
                Ok(BodyItem::Data(bytes)) => {
                    md5.update(bytes.clone()).await;
                    size += bytes.len() as u64;
                    if size > MAX_OBJECT_BYTES {
                        return Err(Error::EntityTooLarge(size));
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
                                bufs = (0..k).map(|_| core.pool.get()).collect();
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
                                    if inflight.len() >= core.shared.stripes_in_flight {
                                        if let Some(h) = inflight.pop_front() {
                                            h.await?;
                                        }
                                    }
                                    inflight.push_back(self.start_stripe(l, full, chunk * k, &mut pending)?);
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
            let mut even: Vec<AlignedBuf> = (0..k).map(|_| core.pool.get()).collect();
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
            inflight.push_back(self.start_stripe(&mut l, even, tail, &mut pending)?);
        }
        // Every stripe must be on disk (and its files marked for the group commit's flush)
        // before the record can be committed.
        while let Some(h) = inflight.pop_front() {
            h.await?;
        }
        l.size = size;
        l.md5 = md5;
        l.check()?;
        Ok(WriteResult { size, md5, data: Written::Part(l), checksum, _pending: pending })
    }

    fn place(&self, rotate: usize) -> Result<Vec<u16>> {
        let set = &self.core.shared.set;
        let healthy = self.core.healthy.borrow();
        placement::choose(&set.zones, &healthy, set.k + set.m, set.m, rotate).ok_or_else(|| {
            Error::InsufficientDevices(format!(
                "cannot place {}+{} shards with at most {} per zone on the healthy devices",
                set.k, set.m, set.m
            ))
        })
    }

    /// Encode one stripe of `data_len` bytes held in `data` (k buffers), place its k+m shards
    /// (recording their locations and CRCs in `l`) and start writing them all at once. The
    /// returned task finishes when every shard write has completed.
    fn start_stripe(
        self: &Rc<Self>,
        l: &mut PartLayout,
        mut data: Vec<AlignedBuf>,
        data_len: usize,
        pending: &mut PendingExtents,
    ) -> Result<monoio::task::JoinHandle<Result<()>>> {
        let core = &self.core;
        let (k, m) = (l.k as usize, l.m as usize);
        let sl = shard_len_for(data_len, k, l.chunk_bytes as usize);
        for b in &mut data {
            b.resize_zeroed(sl);
        }
        let mut parity: Vec<AlignedBuf> = (0..m).map(|_| core.pool.get_for(sl)).collect();
        core.codec.borrow_mut().encode(&data, &mut parity)?;
        let mut all: Vec<AlignedBuf> = data;
        all.extend(parity);
        let mut writes = Vec::with_capacity(k + m);
        let devs = l.devices.clone();
        let failed = {
            let mut segs = self.segs.borrow_mut();
            let mut failed = None;
            for (i, b) in all.into_iter().enumerate() {
                let ext = match segs.alloc(l.devices[i], sl) {
                    Ok(ext) => ext,
                    Err(e) => {
                        failed = Some((l.devices[i], e));
                        break;
                    }
                };
                pending.extents.push((l.devices[i], ext.seg));
                l.shards.push(ShardLoc { seg: ext.seg, block: ext.block, crc: crc(b.as_slice()) });
                writes.push((ext.file, b, ext.block as u64 * 4096));
            }
            failed
        };
        if let Some((dev, e)) = failed {
            // A new segment file that cannot be created (its device directory is gone: ENOENT)
            // counts against the device like any I/O error, so the next write avoids it.
            if e.is_io() {
                self.core.note_io_error(dev, &e, false);
            }
            return Err(e);
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
                    Ok(()) => me.core.note_io_ok(devs[i]),
                    Err(e) => {
                        me.core.note_io_error(devs[i], &e, false);
                        err.get_or_insert(e);
                    }
                }
                me.dirty.borrow_mut().push((devs[i], f));
            }
            match err {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }))
    }

    // ---------------------------------------------------------------- operations

    fn check_preconditions(
        &self,
        bucket: &str,
        key: &str,
        if_none_match_any: bool,
        if_match: Option<&str>,
    ) -> Result<()> {
        if !(if_none_match_any || if_match.is_some()) {
            return Ok(());
        }
        if self.pending_keys.borrow().contains_key(&(bucket.to_string(), key.to_string())) {
            return Err(Error::PreconditionFailed);
        }
        let st = self.state.borrow();
        let cur = st.get(bucket, key);
        if if_none_match_any && cur.is_some() {
            return Err(Error::PreconditionFailed);
        }
        if let Some(want) = if_match {
            match cur {
                None => return Err(Error::NoSuchKey { bucket: bucket.into(), key: key.into() }),
                Some(m) if !etag_matches(&m.etag(), want) => return Err(Error::PreconditionFailed),
                _ => {}
            }
        }
        Ok(())
    }

    pub async fn put_object(
        self: Rc<Self>,
        bucket: String,
        key: String,
        opts: PutOptions,
        body: PutBody,
    ) -> Result<ObjectInfo> {
        check_key(&key)?;
        check_headers(&opts.headers)?;
        let _inflight = self.core.inflight(&bucket)?;
        let _busy = self.core.foreground_guard();
        self.check_preconditions(&bucket, &key, opts.if_none_match_any, opts.if_match.as_deref())?;
        let w = self.write_body(body, true, rotate_for(&bucket, &key)).await?;
        self.core.foreground_io(self.core.ec_write_bytes(w.size));
        if let Some(want) = opts.content_md5 {
            if want != w.md5 {
                return Err(Error::BadDigest);
            }
        }
        self.core.bucket_exists(&bucket)?;
        self.check_preconditions(&bucket, &key, opts.if_none_match_any, opts.if_match.as_deref())?;
        let mut headers = opts.headers;
        if w.checksum.is_some() {
            headers.checksum = w.checksum.clone();
        }
        let (data, inline) = match w.data {
            Written::Inline(v) => (DataLoc::Inline { gen: 0, offset: 0, len: 0 }, v),
            Written::Part(p) => (DataLoc::Parts(Box::new([p])), Vec::new()),
        };
        let meta = ObjectMeta {
            size: w.size,
            md5: w.md5,
            parts_count: 0,
            mtime_ms: unix_ms(),
            headers: ObjectMeta::pack_headers(headers),
            data,
        };
        let info = ObjectInfo::from_meta(&bucket, &key, &meta);
        let rec = Record::ObjectPut { bucket: bucket.clone(), key: key.clone(), meta, inline, completes: None };
        self.commit(rec, Some((bucket, key))).await?;
        Ok(info)
    }

    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        self.core.bucket_exists(bucket)?;
        let st = self.state.borrow();
        let m = st.get(bucket, key).ok_or_else(|| Error::NoSuchKey { bucket: bucket.into(), key: key.into() })?;
        Ok(ObjectInfo::from_meta(bucket, key, m))
    }

    pub async fn delete_object(self: Rc<Self>, bucket: String, key: String, if_match: Option<String>) -> Result<()> {
        check_key(&key)?;
        self.core.bucket_exists(&bucket)?;
        self.check_preconditions(&bucket, &key, false, if_match.as_deref())?;
        if self.state.borrow().get(&bucket, &key).is_none() {
            return Ok(());
        }
        self.commit(Record::ObjectDelete { bucket: bucket.clone(), key: key.clone() }, Some((bucket, key))).await
    }

    /// Start streaming `range` of an object. The body arrives on the returned channel.
    pub fn get_object(
        self: Rc<Self>,
        bucket: String,
        key: String,
        range: Option<RangeSpec>,
    ) -> Result<(ObjectInfo, ByteRange, GetBody)> {
        self.core.bucket_exists(&bucket)?;
        let meta = {
            let st = self.state.borrow();
            st.get(&bucket, &key)
                .cloned()
                .ok_or_else(|| Error::NoSuchKey { bucket: bucket.clone(), key: key.clone() })?
        };
        let info = ObjectInfo::from_meta(&bucket, &key, &meta);
        let r = match range {
            Some(r) => r.resolve(meta.size)?,
            None => ByteRange { start: 0, end: meta.size },
        };
        self.core.foreground_io(r.end - r.start);
        let busy = self.core.foreground_guard();
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
                    return Ok((info, r, rx));
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
        Ok((info, r, rx))
    }

    fn read_plan(&self, meta: &ObjectMeta, r: ByteRange) -> HashMap<(u16, u32), Rc<DevFile>> {
        self.read_plan_for(meta, r, true)
    }

    /// `report`: a segment that cannot be opened counts against its device. Background tasks
    /// read from a copy of the metadata taken earlier, whose segments may have been deleted
    /// since (the object was overwritten): they pass false.
    fn read_plan_for(&self, meta: &ObjectMeta, r: ByteRange, report: bool) -> HashMap<(u16, u32), Rc<DevFile>> {
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
                        if let std::collections::hash_map::Entry::Vacant(v) = plan.entry((dev, loc.seg)) {
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
            if self.core.healthy.borrow().get(dev as usize).copied().unwrap_or(false) {
                tracing::warn!("shard {}: cannot open a segment on device {dev}: {e}", self.id);
                self.core.note_io_error(dev, &e, false);
            }
        }
        plan
    }

    async fn stream(
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
            _ => Err(Error::Corrupt("an object read with the files of another kind of object".into())),
        }
    }

    /// The log mirrors holding an inline object, and where in them it is.
    fn inline_files(&self, meta: &ObjectMeta) -> Result<InlineFiles> {
        let DataLoc::Inline { gen, offset, len } = meta.data else {
            return Err(Error::Corrupt("not an inline object".into()));
        };
        let w = self.wal.borrow();
        let files = match &w.prev {
            _ if w.gen == gen => &w.files,
            Some((g, files)) if *g == gen => files,
            _ => {
                return Err(Error::Corrupt(format!(
                    "inline object points to log generation {gen}, current is {}",
                    w.gen
                )))
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
    async fn read_inline(&self, at: &InlineFiles, size: u64) -> Result<Vec<u8>> {
        let mut last = Error::Unreadable("no log mirror is readable".into());
        for f in &at.files {
            match f
                .read_vec_at(at.len as usize, at.offset)
                .await
                .and_then(|fr| wal::inline_bytes(&fr, Salt::Gen(at.gen), size))
            {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!("shard {}: inline read from {} failed: {e}", self.id, f.path().display());
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
        plan: &HashMap<(u16, u32), Rc<DevFile>>,
    ) -> Result<Bytes> {
        let (k, m) = (p.k as usize, p.m as usize);
        let sl = p.shard_len(s);
        debug_assert!(a < b && b <= sl * k);
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
            self.core.stats.borrow_mut().degraded_reads += 1;
            self.repair_queue.borrow_mut().insert((bucket.to_string(), key.to_string()));
            let pool = self.core.pool.clone();
            self.core.codec.borrow_mut().reconstruct(k, m, sl, &mut shards, || pool.get_for(sl)).map_err(
                |e| match e {
                    Error::Unreadable(why) => Error::Unreadable(format!("{bucket}/{key} stripe {s}: {why}")),
                    e => e,
                },
            )?;
        }
        let mut out = BytesMut::with_capacity(b - a);
        for (i, sh) in shards.iter().enumerate().take(last + 1).skip(first) {
            let sh = sh
                .as_ref()
                .ok_or_else(|| Error::Unreadable(format!("{bucket}/{key}: shard {i} missing after rebuild")))?;
            let lo = a.max(i * sl) - i * sl;
            let hi = b.min((i + 1) * sl) - i * sl;
            out.extend_from_slice(&sh.as_slice()[lo..hi]);
        }
        Ok(out.freeze())
    }

    /// Read and verify shards `idx` of stripe `s` into `out`; false if any failed.
    async fn read_shards(
        &self,
        p: &PartLayout,
        s: usize,
        sl: usize,
        idx: std::ops::RangeInclusive<usize>,
        plan: &HashMap<(u16, u32), Rc<DevFile>>,
        out: &mut [Option<AlignedBuf>],
    ) -> bool {
        let healthy = self.core.healthy.borrow().clone();
        let reads = idx.clone().map(|i| {
            let loc = p.loc(s, i);
            let dev = p.devices[i];
            // A failed device is not read (it may hang or return garbage): rebuild instead.
            let f = plan.get(&(dev, loc.seg)).cloned().filter(|_| healthy.get(dev as usize).copied().unwrap_or(false));
            let buf = self.core.pool.get_for(sl);
            async move {
                let f = f?;
                let (r, b) = f.read_at(buf, loc.block as u64 * 4096, sl).await;
                if let Err(e) = &r {
                    self.core.note_io_error(dev, e, false);
                } else {
                    self.core.note_io_ok(dev);
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

    // ---------------------------------------------------------------- listing

    /// Up to `max_keys + 1` items in key order, each object with its MD5 and parts count; the
    /// ETag string is left empty for the caller to format only for the items it keeps (a merge
    /// over n shards drops most of them).
    pub fn list(&self, bucket: &str, q: &ListQuery) -> Vec<(ListItem, [u8; 16], u32)> {
        use std::ops::Bound;
        let st = self.state.borrow();
        let Some(map) = st.objects.get(bucket) else { return Vec::new() };
        let limit = q.max_keys.saturating_add(1);
        let mut out = Vec::new();
        let mut lower: Bound<String> = match &q.start_after {
            Some(s) if s.as_str() >= q.prefix.as_str() => Bound::Excluded(s.clone()),
            _ => Bound::Included(q.prefix.clone()),
        };
        'outer: while out.len() < limit {
            let mut next_lower = None;
            for (k, meta) in map.range::<String, _>((lower.clone(), Bound::Unbounded)) {
                if !k.starts_with(&q.prefix) {
                    break 'outer;
                }
                if let Some(d) = q.delimiter.as_deref().filter(|d| !d.is_empty()) {
                    if let Some(pos) = k[q.prefix.len()..].find(d) {
                        let cp = &k[..q.prefix.len() + pos + d.len()];
                        let skip = q.start_after.as_deref().is_some_and(|sa| sa.starts_with(cp) || sa >= cp);
                        if !skip {
                            out.push((ListItem::CommonPrefix(cp.to_string()), [0; 16], 0));
                        }
                        // Jump past every key under this common prefix.
                        next_lower = Some(format!("{cp}{}", char::MAX));
                        break;
                    }
                }
                out.push((
                    ListItem::Object(ListEntry {
                        key: k.clone(),
                        size: meta.size,
                        etag: String::new(),
                        mtime_ms: meta.mtime_ms,
                    }),
                    meta.md5,
                    meta.parts_count,
                ));
                if out.len() >= limit {
                    break 'outer;
                }
            }
            match next_lower {
                Some(n) => lower = Bound::Excluded(n),
                None => break,
            }
        }
        out
    }

    // ---------------------------------------------------------------- multipart

    pub async fn create_upload(self: Rc<Self>, bucket: String, key: String, headers: ObjectHeaders) -> Result<String> {
        check_key(&key)?;
        check_headers(&headers)?;
        self.core.bucket_exists(&bucket)?;
        let upload_id = format!("{:032x}", rand::random::<u128>());
        let rec = Record::UploadCreate { bucket, key, upload_id: upload_id.clone(), headers, initiated_ms: unix_ms() };
        self.commit(rec, None).await?;
        Ok(upload_id)
    }

    fn upload_of(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let st = self.state.borrow();
        match st.uploads.get(upload_id) {
            Some(u) if u.bucket == bucket && u.key == key => Ok(()),
            _ => Err(Error::NoSuchUpload(upload_id.to_string())),
        }
    }

    pub async fn upload_part(
        self: Rc<Self>,
        bucket: String,
        key: String,
        upload_id: String,
        number: u32,
        content_md5: Option<[u8; 16]>,
        body: PutBody,
    ) -> Result<PartInfo> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(Error::InvalidPart(format!("part number {number} is outside 1..=10000")));
        }
        self.core.bucket_exists(&bucket)?;
        self.upload_of(&bucket, &key, &upload_id)?;
        let _inflight = self.core.inflight(&bucket)?;
        let _busy = self.core.foreground_guard();
        let w = self.write_body(body, false, rotate_for(&bucket, &key).wrapping_add(number as usize)).await?;
        self.core.foreground_io(self.core.ec_write_bytes(w.size));
        if content_md5.is_some_and(|m| m != w.md5) {
            return Err(Error::BadDigest);
        }
        self.upload_of(&bucket, &key, &upload_id)?;
        let Written::Part(layout) = w.data else {
            return Err(Error::Corrupt("a part was written inline".into()));
        };
        let part = PartRecord { number, mtime_ms: unix_ms(), layout, checksum: w.checksum };
        let info = PartInfo {
            number,
            etag: format!("\"{}\"", hex::encode(w.md5)),
            size: w.size,
            mtime_ms: part.mtime_ms,
            checksum: part.checksum.clone(),
        };
        self.commit(Record::PartPut { upload_id, part }, None).await?;
        Ok(info)
    }

    pub async fn complete_upload(
        self: Rc<Self>,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String)>,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        self.core.bucket_exists(&bucket)?;
        self.upload_of(&bucket, &key, &upload_id)?;
        self.check_preconditions(&bucket, &key, opts.if_none_match_any, opts.if_match.as_deref())?;
        if parts.is_empty() {
            return Err(Error::InvalidPart("a multipart upload needs at least one part".into()));
        }
        // The order of the whole list is checked before any part, as S3 does: a list out of
        // order is InvalidPartOrder even if a part in it is also too small or unknown.
        if parts.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(Error::InvalidPartOrder);
        }
        let (layouts, md5, headers) = {
            let st = self.state.borrow();
            let u = st.uploads.get(&upload_id).ok_or_else(|| Error::NoSuchUpload(upload_id.clone()))?;
            let mut layouts = Vec::with_capacity(parts.len());
            let mut md5s = Md5::new();
            for (i, (n, etag)) in parts.iter().enumerate() {
                let p = u.parts.get(n).ok_or_else(|| Error::InvalidPart(format!("part {n} was not uploaded")))?;
                let have = format!("\"{}\"", hex::encode(p.layout.md5));
                if !etag_matches(&have, etag) {
                    return Err(Error::InvalidPart(format!("part {n} has ETag {have}, not {etag}")));
                }
                if i + 1 < parts.len() && p.layout.size < MIN_PART_BYTES {
                    return Err(Error::EntityTooSmall { part_number: *n, size: p.layout.size });
                }
                md5s.update(p.layout.md5);
                layouts.push(p.layout.clone());
            }
            let md5: [u8; 16] = md5s.finalize().into();
            (layouts, md5, u.headers.clone())
        };
        let size = layouts.iter().map(|l| l.size).sum();
        let meta = ObjectMeta {
            size,
            md5,
            parts_count: parts.len() as u32,
            mtime_ms: unix_ms(),
            headers: ObjectMeta::pack_headers(headers),
            data: DataLoc::Parts(layouts.into_boxed_slice()),
        };
        let info = ObjectInfo::from_meta(&bucket, &key, &meta);
        let rec = Record::ObjectPut {
            bucket: bucket.clone(),
            key: key.clone(),
            meta,
            inline: Vec::new(),
            completes: Some(upload_id),
        };
        self.commit(rec, Some((bucket, key))).await?;
        Ok(info)
    }

    pub async fn abort_upload(self: Rc<Self>, bucket: String, key: String, upload_id: String) -> Result<()> {
        self.core.bucket_exists(&bucket)?;
        self.upload_of(&bucket, &key, &upload_id)?;
        self.commit(Record::UploadEnd { upload_id, aborted: true }, None).await
    }

    pub fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(ObjectHeaders, Vec<PartInfo>)> {
        self.core.bucket_exists(bucket)?;
        self.upload_of(bucket, key, upload_id)?;
        let st = self.state.borrow();
        let u = st.uploads.get(upload_id).ok_or_else(|| Error::NoSuchUpload(upload_id.into()))?;
        let parts = u
            .parts
            .values()
            .map(|p| PartInfo {
                number: p.number,
                etag: format!("\"{}\"", hex::encode(p.layout.md5)),
                size: p.layout.size,
                mtime_ms: p.mtime_ms,
                checksum: p.checksum.clone(),
            })
            .collect();
        Ok((u.headers.clone(), parts))
    }

    pub fn list_uploads(&self, bucket: &str, q: &UploadListQuery) -> Vec<UploadInfo> {
        let st = self.state.borrow();
        let mut v: Vec<UploadInfo> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == bucket && u.key.starts_with(&q.prefix))
            .map(|(id, u)| UploadInfo {
                bucket: u.bucket.clone(),
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated_ms: u.initiated_ms,
            })
            .filter(|u| upload_after(u, q))
            .collect();
        v.sort_by(|a, b| (&a.key, a.initiated_ms, &a.upload_id).cmp(&(&b.key, b.initiated_ms, &b.upload_id)));
        v.truncate(q.max_uploads.saturating_add(1));
        v
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

pub fn upload_after(u: &UploadInfo, q: &UploadListQuery) -> bool {
    match (&q.key_marker, &q.upload_id_marker) {
        (None, _) => true,
        (Some(km), None) => u.key.as_str() > km.as_str(),
        (Some(km), Some(um)) => u.key.as_str() > km.as_str() || (u.key == *km && u.upload_id.as_str() > um.as_str()),
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

/// Compare ETags, ignoring quotes and accepting `*`.
pub fn etag_matches(have: &str, want: &str) -> bool {
    let t = |s: &str| s.trim().trim_start_matches("W/").trim_matches('"').to_string();
    want.trim() == "*" || want.split(',').any(|w| t(w) == t(have))
}

pub fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLong(key.len()));
    }
    if key.is_empty() {
        return Err(Error::NoSuchKey { bucket: String::new(), key: String::new() });
    }
    Ok(())
}

fn check_headers(h: &ObjectHeaders) -> Result<()> {
    let n: usize = h.user.iter().map(|(k, v)| k.len() + v.len()).sum();
    if n > MAX_USER_METADATA_BYTES {
        return Err(Error::MetadataTooLarge(n));
    }
    Ok(())
}

/// Open log mirror files for `read_inline_sync` (once per checkpoint, not per object).
pub fn open_mirrors(files: &[PathBuf]) -> Vec<std::fs::File> {
    files.iter().filter_map(|p| std::fs::File::open(p).ok()).collect()
}

/// Read an inline object's bytes with blocking I/O (checkpoints run outside the event loop's
/// I/O and recovery happens before it starts).
pub fn read_inline_sync(files: &[std::fs::File], salt: Salt, meta: &ObjectMeta) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let DataLoc::Inline { offset, len, .. } = meta.data else {
        return Err(Error::Corrupt("not an inline object".into()));
    };
    let mut last = Error::Unreadable("no log mirror holds the inline object".into());
    for f in files {
        let mut v = vec![0u8; len as usize];
        let r =
            f.read_exact_at(&mut v, offset).map_err(Error::from).and_then(|()| wal::inline_bytes(&v, salt, meta.size));
        match r {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serialize a shard's live state as a log generation. Returns the bytes and the new location
/// of every inline object.
#[allow(clippy::type_complexity)]
pub fn build_checkpoint(
    st: &ShardState,
    shard: u32,
    gen: u64,
    set_id: u128,
    inline: impl FnMut(&ObjectMeta) -> Result<Vec<u8>>,
) -> Result<(Vec<u8>, Vec<(String, String, u64, u32)>)> {
    let mut g = GenerationBytes::new(shard, gen, set_id);
    let mut moved = Vec::new();
    st.checkpoint_records(inline, |rec, key| {
        if let (Some((b, k)), Some((off, len))) = (key, g.push(rec)) {
            moved.push((b.to_string(), k.to_string(), off, len));
        }
        Ok(())
    })?;
    g.push(&Record::CheckpointEnd);
    Ok((g.bytes, moved))
}

/// A new log generation's bytes as they are built: its header, then the records pushed.
struct GenerationBytes {
    gen: u64,
    bytes: Vec<u8>,
}

impl GenerationBytes {
    fn new(shard: u32, gen: u64, set_id: u128) -> GenerationBytes {
        let mut g = GenerationBytes { gen, bytes: Vec::new() };
        g.push(&Record::Header { shard, gen, set_id });
        g
    }

    /// Frame `rec`. For an inline object: where its frame starts in the generation, and its
    /// length (where the object's bytes now live).
    fn push(&mut self, rec: &Record) -> Option<(u64, u32)> {
        let off = self.bytes.len() as u64;
        let payload = rec.encode();
        frame_into(&mut self.bytes, self.gen, &payload);
        matches!(rec, Record::ObjectPut { meta: ObjectMeta { data: DataLoc::Inline { .. }, .. }, .. })
            .then_some((off, (FRAME_HEADER_BYTES + payload.len()) as u32))
    }
}

/// The devices that mirror a shard's log: m+1 healthy devices, at most m per zone, at their
/// current paths.
pub fn choose_mirrors(
    set: &crate::superblock::DeviceSet,
    paths: &[Option<PathBuf>],
    healthy: &[bool],
    shard: u32,
) -> Result<Vec<(u16, PathBuf)>> {
    let devs = placement::choose(&set.zones, healthy, set.m + 1, set.m, shard as usize).ok_or_else(|| {
        Error::InsufficientDevices(format!(
            "cannot mirror the log of shard {shard} on {} healthy devices in 2+ zones",
            set.m + 1
        ))
    })?;
    devs.into_iter()
        .map(|d| {
            paths
                .get(d as usize)
                .and_then(|p| p.clone())
                .map(|p| (d, p))
                .ok_or_else(|| Error::InsufficientDevices(format!("device {d} has no path")))
        })
        .collect()
}
