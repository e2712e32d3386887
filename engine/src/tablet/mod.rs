//! A tablet: one slice of the key space with its own index, segments and write-ahead log,
//! driven by the core that owns it. Everything here runs on that core's thread: no locks.
//!
//! Write path: body chunks → aligned stripe buffers → parity → CRC32C per shard → all k+m
//! shard writes submitted at once (O_DIRECT) → group commit (fdatasync of the touched segment
//! files, then one append of many records to every log mirror and their fdatasync) → the
//! records are applied to the index in log order → replies.
//!
//! One module per job, each owning its part of the `Tablet`:
//! - `log`: the commit queue, the group-commit leader and the appends to the log mirrors;
//! - `checkpoint`: log rewrites (cut, snapshot, write, install), spare log files, and the
//!   generation encoder shared with recovery;
//! - `write`: bodies into stripes (placement, encoding, shard writes);
//! - `read`: GET, read plans, inline reads, stripe reads and degraded rebuilds;
//! - `objects`: preconditions, put/head/delete, listing, multipart uploads;
//! - `compact`, `repair`: background compaction, repair and scrub;
//! - `recovery`: building a tablet from its recovered log at start-up.

use crate::api::{MAX_KEY_BYTES, MAX_USER_METADATA_BYTES};
use crate::core::CoreCtx;
use crate::error::{Result, StorageError};
use crate::ids::{DeviceId, SegmentId};
use crate::index::TabletState;
use crate::io::DevFile;
use crate::segment::{Extent, NewSegment, Segments};
use crate::util::ALIGN_BYTES;
use crate::wal::{FRAME_HEADER_BYTES, MAX_RECORD_BYTES};
use checkpoint::{CkptRun, Spare};
use log::{Pending, WalState};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

mod checkpoint;
mod compact;
mod log;
mod objects;
mod read;
mod recovery;
mod repair;
mod write;

pub use checkpoint::CHECKPOINT_MIN_BYTES;
pub use compact::COMPACT_LIVE_PERCENT;
pub use objects::check_key;
pub(crate) use recovery::{recover_logs, start_tablet};

/// Objects up to this size live inside their log record, mirrored m+1 times, instead of being
/// erasure-coded (a 4 KiB object would otherwise cost k+m padded 4 KiB writes).
pub const INLINE_MAX_BYTES: u64 = 16 << 10;
// An inline object is one log frame holding its bytes, key and user metadata (and a few small
// fixed fields): recovery must accept that frame (it treats one above `MAX_RECORD_BYTES` as
// corrupt and ends the log there), so the limits leave most of the room to spare.
const _: () = assert!(
    INLINE_MAX_BYTES as usize + MAX_KEY_BYTES + MAX_USER_METADATA_BYTES + FRAME_HEADER_BYTES <= MAX_RECORD_BYTES / 16,
    "an inline object's record must stay far below the largest frame recovery accepts"
);
// What inline storage is for: an object of one block would otherwise cost k+m block writes.
const _: () = assert!(INLINE_MAX_BYTES >= ALIGN_BYTES as u64, "a one-block object is stored inline");

pub struct Tablet {
    id: u32,
    /// What the tablet may reach of the core that runs it (never the core itself).
    ctx: Rc<CoreCtx>,
    state: RefCell<TabletState>,
    segs: RefCell<Segments>,
    wal: RefCell<WalState>,
    queue: RefCell<Vec<Pending>>,
    flushing: Cell<bool>,
    /// Segment files written since the last batch, with their device.
    dirty: RefCell<Vec<(DeviceId, Rc<DevFile>)>>,
    /// A log mirror is on a failed device: rewrite the generation onto healthy mirrors
    /// before the next batch.
    wal_rewrite: Cell<bool>,
    /// The core's health epoch when the commit leader last checked the mirrors' devices.
    log_health_epoch: Cell<u64>,
    /// A checkpoint being written in the background (`start_checkpoint`).
    ckpt: RefCell<Option<CkptRun>>,
    /// The highest log generation number handed out (a new generation takes the next one,
    /// also after an abandoned checkpoint whose files may still be being written).
    last_gen: Cell<u64>,
    /// Keys with a record submitted but not yet applied: conditional writes on them conflict.
    pending_keys: RefCell<HashMap<(String, String), u32>>,
    /// Objects a read had to reconstruct: stripes waiting for repair.
    repair_queue: RefCell<HashSet<(String, String)>>,
    /// Objects whose repair needs room the healthy devices do not have (no zone-safe
    /// placement): they stay below redundancy and are retried when a device comes back or is
    /// replaced, not on every read or scrub that finds them.
    repair_waiting: RefCell<HashSet<(String, String)>>,
    /// Held by whoever moves data to new extents (the repair of one object, the compaction of
    /// one run) from the moment it copies the layout until its `Relocate` is applied. A
    /// `Relocate` only checks that the object is the same, not that the run still has the
    /// layout the copy was made from: without this, a repair and a compaction of the same run
    /// overwrite each other's layouts, or read one that the other has already replaced.
    relocating: futures::lock::Mutex<()>,
    /// A compaction pass is running (one at a time per tablet).
    compacting: Cell<bool>,
    /// Segments compaction failed to empty (unreadable data): not retried until a restart.
    compact_skip: RefCell<HashSet<(DeviceId, SegmentId)>>,
    /// Self-healing progress of this tablet (scrub position, passes).
    heal: RefCell<repair::HealState>,
    /// Retired log files kept for the next generation to reuse, at most one per device (see
    /// `wal::Salt`): appends to a reused file overwrite written blocks instead of growing the
    /// file, and retiring a generation frees nothing (freeing blocks makes the next journal
    /// commit, which a durable append waits for, slow, more so with online discard).
    spares: RefCell<Vec<Spare>>,
    /// One new segment file at a time per device (created on a helper thread): writers that
    /// find the active segment full wait for it instead of each making one.
    seg_create: Vec<futures::lock::Mutex<()>>,
    /// Writers waiting for room in `queue` (see `commit`), woken when the leader takes a batch.
    queue_room: RefCell<Vec<futures::channel::oneshot::Sender<()>>>,
    /// Objects left out of `repair_queue` when it was full: a rescan is due once it drains
    /// (see `Tablet::queue_repair`).
    repair_rescan: Cell<bool>,
}

/// Marks extents as pending while their object is in flight; releases them when dropped.
struct PendingExtents {
    tablet: Rc<Tablet>,
    extents: Vec<(DeviceId, SegmentId)>,
}

impl Drop for PendingExtents {
    fn drop(&mut self) {
        let mut segs = self.tablet.segs.borrow_mut();
        for &(d, s) in &self.extents {
            segs.release_pending(d.0, s.0);
        }
    }
}

impl Tablet {
    fn new(id: u32, ctx: Rc<CoreCtx>, state: TabletState, segs: Segments, wal: WalState) -> Rc<Tablet> {
        let wal_gen = wal.gen;
        let health_epoch = ctx.health_epoch.get();
        let mut segs = segs;
        // From here on the tablet runs on a serving core: dead segments are unlinked by a
        // helper thread. One the helper's full queue turns away stays on disk until the next
        // start's sweep (`Segments::sweep_dead`) removes it; nothing points into it.
        let shared = ctx.shared.clone();
        segs.set_unlinker(move |path| {
            if !shared.blocking.spawn(move || {
                let _ = std::fs::remove_file(path);
            }) {
                tracing::debug!("helper queue full: a dead segment stays until the next start");
            }
        });
        let seg_create = (0..ctx.shared.set.device_count()).map(|_| futures::lock::Mutex::new(())).collect();
        Rc::new(Tablet {
            id,
            ctx,
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
            log_health_epoch: Cell::new(health_epoch),
            ckpt: RefCell::new(None),
            last_gen: Cell::new(wal_gen),
            spares: RefCell::new(Vec::new()),
            heal: RefCell::new(Default::default()),
            seg_create,
            queue_room: RefCell::new(Vec::new()),
            repair_rescan: Cell::new(false),
        })
    }

    /// Every bucket attribute this tablet holds (tablet 0 holds them all), or one bucket's.
    pub fn bucket_attrs(&self, bucket: Option<&str>) -> Vec<(String, String, String)> {
        self.state
            .borrow()
            .bucket_attrs
            .iter()
            .filter(|((b, _), _)| bucket.is_none_or(|want| want == b))
            .map(|((b, a), v)| (b.clone(), a.clone(), v.clone()))
            .collect()
    }

    /// Every node-wide attribute (tablet 0 holds them) as (name, value), in name order.
    pub fn system_attrs(&self) -> Vec<(String, String)> {
        self.state.borrow().system_attrs.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// Reserve `len` bytes on device `dev` (see `Segments::alloc`), making a new segment file
    /// on a helper thread when the active one is full: the core goes on meanwhile.
    pub(super) async fn alloc_extent(&self, dev: u16, len: usize) -> Result<Extent> {
        loop {
            if let Some(ext) = self.segs.borrow_mut().alloc(dev, len)? {
                return Ok(ext);
            }
            let lock = self.seg_create.get(dev as usize).ok_or_else(|| StorageError::Io(format!("no device {dev}")))?;
            let _one_at_a_time = lock.lock().await;
            // Another writer may have made one while this one waited.
            if let Some(ext) = self.segs.borrow_mut().alloc(dev, len)? {
                return Ok(ext);
            }
            let new = self.segs.borrow_mut().reserve_segment(dev)?;
            let (path, dir, direct, bytes) = new.create_args();
            let f = self.ctx.shared.blocking.run(move || NewSegment::create(&path, &dir, direct, bytes)).await?;
            let file = Rc::new(DevFile::from_std(f, &new.path, new.direct)?);
            self.segs.borrow_mut().install_segment(&new, file)?;
        }
    }

    /// Segment files open on every device (introspection).
    pub fn segment_file_count(&self) -> usize {
        self.segs.borrow().file_count()
    }
}
