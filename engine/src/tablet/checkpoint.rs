//! Checkpoints: the log rewritten as a new generation holding only the live state. A cut
//! (between two batches) snapshots the state, a task writes the new generation from the
//! snapshot while commits go on in the old one, and the commit leader installs it (see
//! `CkptRun`). Also the log files recycled as spares, and the generation encoder and mirror
//! choice shared with start-up recovery.

use super::log::{Mirrors, WalState};
use super::Tablet;
use crate::error::{Error, Result, StorageError};
use crate::index::TabletState;
use crate::io::DevFile;
use crate::placement;
use crate::record::*;
use crate::wal::{self, frame_into, remove_generation_off_core, Salt, FRAME_HEADER_BYTES};
use bytes::Bytes;
use futures::StreamExt;
use std::path::PathBuf;
use std::rc::Rc;

/// The log is rewritten (checkpointed) once it is this large and mostly dead.
pub const CHECKPOINT_MIN_BYTES: u64 = 64 << 20;

/// A checkpoint in progress. The new generation is written by a task of its own from a
/// snapshot of the state taken at the cut, while commits go on appending to the old
/// generation; the commit leader then appends those later frames and the `CheckpointEnd` to
/// the new generation in one durable write and switches to it (`install_checkpoint`). Until
/// that write, the new generation has no `CheckpointEnd` and recovery ignores it, so a crash at
/// any point recovers from the old generation, which holds everything acknowledged.
pub(super) struct CkptRun {
    pub(super) gen: u64,
    old_gen: u64,
    /// The old generation's length at the cut.
    cut: u64,
    /// Frames appended to the old generation since the cut.
    pub(super) after: Vec<u8>,
    /// Set by the writer task.
    pub(super) ready: Option<Result<CkptWritten>>,
    started: std::time::Instant,
}

/// The live state as log records, with the (bucket, key) of each object record.
type Snapshot = Vec<(Record, Option<(String, String)>)>;

/// A new generation written up to (not including) its `CheckpointEnd`.
pub(super) struct CkptWritten {
    files: Vec<(u16, PathBuf)>,
    bytes: Bytes,
    /// Inline objects: (bucket, key, offset in the old generation, offset in the new, frame length).
    moved: Vec<(String, String, u64, u64, u32)>,
    /// Mirror devices that failed while it was written (failed once it is installed).
    failed: Vec<(u16, Error)>,
}

/// Inline objects a checkpoint reads at once.
const CHECKPOINT_READS_IN_FLIGHT: usize = 64;
const _: () = assert!(CHECKPOINT_READS_IN_FLIGHT > 0, "buffer_unordered(0) would never read an inline object");

/// A retired log generation's file on `dev`, renamed to `wal::spare_path`. `held` is its
/// handle from the generation's mirrors: while a reader that looked an inline object up
/// before the switch still holds a clone, the file is not reused.
pub(super) struct Spare {
    dev: u16,
    path: PathBuf,
    held: Rc<DevFile>,
}

impl Tablet {
    pub(super) async fn maybe_checkpoint(self: &Rc<Self>) -> Result<()> {
        let len = self.wal.borrow().len;
        let live = self.state.borrow().live_log_bytes;
        if len > self.ctx.shared.checkpoint_min_bytes && len > 4 * live && self.ckpt.borrow().is_none() {
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
        let tablet = self.clone();
        monoio::spawn(async move {
            let r = tablet.write_checkpoint_files(gen, recs).await;
            let current = tablet.ckpt.borrow().as_ref().is_some_and(|run| run.gen == gen);
            if !current {
                // Abandoned (a log rewrite replaced it): its files never got a CheckpointEnd;
                // remove them.
                if let Ok(w) = r {
                    remove_generation_off_core(&tablet.ctx.shared.blocking, w.files).await;
                }
                return;
            }
            if let Some(run) = tablet.ckpt.borrow_mut().as_mut() {
                run.ready = Some(r);
            }
            // The commit leader installs it before its next batch (started if none runs).
            tablet.lead_commits();
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
        let set = &self.ctx.shared.set;
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
            let mut healthy = self.ctx.healthy.borrow().clone();
            for (d, _) in &failed {
                healthy[*d as usize] = false;
            }
            let mirrors = choose_mirrors(set, &self.ctx.paths.borrow(), &healthy, self.id)?;
            let spares = self.take_spares(&mirrors);
            match wal::write_generation_async(&self.ctx.shared.blocking, &mirrors, self.id, gen, bytes.clone(), &spares)
                .await
            {
                Ok((w, recycled)) => {
                    self.ctx.stats.borrow_mut().log_files_recycled += recycled as u64;
                    break w;
                }
                Err((dev, e)) => {
                    tracing::warn!("tablet {}: log mirror on device {dev} failed ({e}); writing elsewhere", self.id);
                    failed.push((dev, e.clone()));
                    // Bounded: each attempt avoids one more device, and `choose_mirrors` fails
                    // once too few are left.
                    if failed.len() >= set.device_count() {
                        for (dev, e) in &failed {
                            self.ctx.note_io_error(*dev, e, true);
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
    /// The renames and removals run on a helper thread.
    async fn retire(&self, files: Mirrors) {
        // (device, file, where its spare would go): decided here, done by the helper.
        let plan: Vec<(u16, Rc<DevFile>, Option<PathBuf>)> = {
            let paths = self.ctx.paths.borrow();
            let spares = self.spares.borrow();
            let mut taken: Vec<u16> = spares.iter().map(|s| s.dev).collect();
            files
                .into_iter()
                .map(|(dev, f)| {
                    let dev = dev.0;
                    let spare = if taken.contains(&dev) {
                        None
                    } else {
                        taken.push(dev);
                        paths.get(dev as usize).cloned().flatten().map(|d| wal::spare_path(&d, self.id))
                    };
                    (dev, f, spare)
                })
                .collect()
        };
        let jobs: Vec<(PathBuf, Option<PathBuf>)> =
            plan.iter().map(|(_, f, sp)| (f.path().to_path_buf(), sp.clone())).collect();
        let kept = self
            .ctx
            .shared
            .blocking
            .run(move || {
                Ok(jobs
                    .into_iter()
                    .map(|(from, spare)| {
                        let kept = spare.is_some_and(|sp| std::fs::rename(&from, &sp).is_ok());
                        if !kept {
                            let _ = std::fs::remove_file(&from);
                        }
                        kept
                    })
                    .collect::<Vec<bool>>())
            })
            .await
            // The helpers stopped (shutting down): the files stay; the next start removes them.
            .unwrap_or_default();
        let mut spares = self.spares.borrow_mut();
        for ((dev, f, sp), kept) in plan.into_iter().zip(kept) {
            if let (Some(path), true) = (sp, kept) {
                spares.push(Spare { dev, path, held: f });
            }
        }
    }

    /// Switch to a checkpoint's new generation (inside the commit leader): append the frames
    /// committed since the cut and the `CheckpointEnd` in one durable write to every mirror,
    /// then point the inline objects at their new places and drop the older generations. If
    /// anything fails, the new generation is removed and the log stays where it was.
    pub(super) async fn install_checkpoint(&self, run: CkptRun) {
        let w = match run.ready {
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                tracing::error!("tablet {}: checkpoint failed: {e}", self.id);
                return;
            }
            None => return,
        };
        for (dev, e) in &w.failed {
            self.ctx.note_io_error(*dev, e, true);
        }
        let delay = self.ctx.shared.checkpoint_install_delay_ms;
        if delay > 0 {
            monoio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let base = w.bytes.len() as u64;
        let (cur_gen, cur_len) = {
            let cur = self.wal.borrow();
            (cur.gen, cur.len)
        };
        if cur_gen != run.old_gen {
            remove_generation_off_core(&self.ctx.shared.blocking, w.files).await;
            return;
        }
        // Every frame appended since the cut is in `after`: the two logs end at the same record.
        assert_eq!(cur_len - run.cut, run.after.len() as u64, "tablet {}: checkpoint missed frames", self.id);
        let mut tail = run.after;
        frame_into(&mut tail, run.gen, &Record::CheckpointEnd.encode());
        let tail_len = tail.len() as u64;
        let opened = {
            let (files, direct) = (w.files.clone(), self.ctx.shared.log_direct);
            self.ctx.shared.blocking.run(move || WalState::open_files(&files, direct)).await
        };
        let new = match opened.and_then(|o| WalState::from_files(run.gen, &w.bytes, &w.files, o)) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("tablet {}: checkpoint failed: {e}", self.id);
                remove_generation_off_core(&self.ctx.shared.blocking, w.files).await;
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
            tracing::error!("tablet {}: checkpoint failed: {e}", self.id);
            *self.wal.borrow_mut() = old;
            // Its CheckpointEnd may have reached some mirror: the new generation must go
            // before anything more is acknowledged in the old one (this is the commit leader:
            // no batch runs until it returns).
            remove_generation_off_core(&self.ctx.shared.blocking, w.files).await;
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
                        assert!(offset >= run.cut, "tablet {}: inline object at {offset} left behind", self.id);
                        m.data = DataLoc::Inline { gen: run.gen, offset: base + offset - run.cut, len };
                    }
                }
            }
        }
        self.wal.borrow_mut().prev = None;
        self.retire(old.files).await;
        let (paths, id, keep) = (self.ctx.paths.borrow().clone(), self.id, run.gen);
        if self
            .ctx
            .shared
            .blocking
            .run(move || {
                wal::remove_older(&paths, id, keep);
                Ok(())
            })
            .await
            .is_err()
        {
            tracing::debug!("tablet {}: older log generations stay until the next start", self.id);
        }
        self.ctx.stats.borrow_mut().checkpoints += 1;
        tracing::debug!(
            "tablet {}: checkpoint to generation {} ({} KiB) done {} ms after its cut; {} KiB committed meanwhile",
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
            remove_generation_off_core(&self.ctx.shared.blocking, files).await;
            Err(StorageError::Io(format!("tablet {}: the log could not be rewritten (see the errors above)", self.id))
                .into())
        }
    }
}

/// Open log mirror files for `read_inline_sync` (once per checkpoint, not per object).
pub(super) fn open_mirrors(files: &[PathBuf]) -> Vec<std::fs::File> {
    files.iter().filter_map(|p| std::fs::File::open(p).ok()).collect()
}

/// Read an inline object's bytes with blocking I/O (checkpoints run outside the event loop's
/// I/O and recovery happens before it starts).
pub(super) fn read_inline_sync(files: &[std::fs::File], salt: Salt, meta: &ObjectMeta) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let DataLoc::Inline { offset, len, .. } = meta.data else {
        unreachable!("`checkpoint_records` asks for the bytes of inline objects only");
    };
    let mut last = Error::Storage(StorageError::Unreadable("no log mirror holds the inline object".into()));
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

/// Serialize a tablet's live state as a log generation. Returns the bytes and the new location
/// of every inline object.
#[allow(clippy::type_complexity)]
pub(super) fn build_checkpoint(
    st: &TabletState,
    tablet: u32,
    gen: u64,
    set_id: u128,
    inline: impl FnMut(&ObjectMeta) -> Result<Vec<u8>>,
) -> Result<(Vec<u8>, Vec<(String, String, u64, u32)>)> {
    let mut g = GenerationBytes::new(tablet, gen, set_id);
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
    fn new(tablet: u32, gen: u64, set_id: u128) -> GenerationBytes {
        let mut g = GenerationBytes { gen, bytes: Vec::new() };
        g.push(&Record::Header { tablet, gen, set_id });
        g
    }

    /// Frame `rec`. For an inline object: where its frame starts in the generation, and its
    /// length (where the object's bytes now live).
    fn push(&mut self, rec: &Record) -> Option<(u64, u32)> {
        let off = self.bytes.len() as u64;
        let payload = rec.encode();
        frame_into(&mut self.bytes, self.gen, &payload);
        assert_eq!(self.bytes.len() as u64, off + (FRAME_HEADER_BYTES + payload.len()) as u64);
        matches!(rec, Record::ObjectPut { meta: ObjectMeta { data: DataLoc::Inline { .. }, .. }, .. })
            .then_some((off, (FRAME_HEADER_BYTES + payload.len()) as u32))
    }
}

/// The devices that mirror a tablet's log: m+1 healthy devices, at most m per zone, at their
/// current paths.
pub(super) fn choose_mirrors(
    set: &crate::superblock::DeviceSet,
    paths: &[Option<PathBuf>],
    healthy: &[bool],
    tablet: u32,
) -> Result<Vec<(u16, PathBuf)>> {
    let devs = placement::choose(&set.zones, healthy, set.m + 1, set.m, tablet as usize).ok_or_else(|| {
        Error::Storage(StorageError::InsufficientDevices(format!(
            "cannot mirror the log of tablet {tablet} on {} healthy devices in 2+ zones",
            set.m + 1
        )))
    })?;
    devs.into_iter()
        .map(|d| {
            paths
                .get(d as usize)
                .and_then(|p| p.clone())
                .map(|p| (d, p))
                .ok_or_else(|| Error::Storage(StorageError::InsufficientDevices(format!("device {d} has no path"))))
        })
        .collect()
}
