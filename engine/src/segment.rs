//! Log-structured segment files: each tablet appends to its own preallocated segment on every
//! device. Live bytes per segment are tracked from the index; a sealed segment with no live
//! and no pending bytes is deleted, and compaction empties mostly-dead ones.

use crate::error::{io_at, OsError, Result, StorageError};
use crate::ids::{BlockIndex, SegmentId};
use crate::io::{fallocate, DevFile};
use crate::superblock::sync_dir;
use crate::util::ALIGN_BYTES;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A tablet's directory on a device. The on-disk name is kept from before the rename of
/// "shard" (the key-space unit) to "tablet": `shard-NNNN`, as every formatted device has it.
pub fn tablet_dir(dev: &Path, tablet: u32) -> PathBuf {
    dev.join(format!("shard-{tablet:04}"))
}

pub fn seg_path(dev: &Path, tablet: u32, seg: u32) -> PathBuf {
    tablet_dir(dev, tablet).join(format!("seg-{seg:010}.dat"))
}

/// The tablet's directory on a device, created if missing, but only inside a formatted device:
/// a device directory that is gone (or an empty mount point) is a failed device, and creating
/// it again would hide the failure. Only `format` and `format_replacement` create devices.
pub fn ensure_tablet_dir(dev: &Path, tablet: u32) -> Result<PathBuf> {
    let sd = tablet_dir(dev, tablet);
    if sd.is_dir() {
        return Ok(sd);
    }
    let sb = dev.join(crate::superblock::SUPERBLOCK_FILE);
    if !sb.is_file() {
        return Err(StorageError::Os(OsError::with_errno(
            &sb,
            libc::ENOENT,
            "device has no superblock (missing or unmounted; not re-created)",
        ))
        .into());
    }
    match std::fs::create_dir(&sd) {
        Ok(()) => {
            sync_dir(dev)?;
            Ok(sd)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(sd),
        Err(e) => Err(io_at(&sd, e)),
    }
}

#[derive(Default)]
pub struct SegInfo {
    /// Bytes referenced by committed records.
    pub live: u64,
    /// Writes allocated here whose records are not yet committed (or aborted).
    pub pending: u32,
    /// Bytes appended so far (the write pointer); for a segment found at open, its file's length.
    pub used: u64,
    /// The end of the furthest extent any record replayed or applied in this run pointed at
    /// (a high-water mark: deletes do not lower it). Past it, a sealed segment holds nothing a
    /// record can reach, so `trim_sealed` may cut it off.
    pub referenced_end: u64,
    pub sealed: bool,
    pub file: Option<Rc<DevFile>>,
}

struct DevSegs {
    dir: Option<PathBuf>,
    direct: bool,
    active: Option<u32>,
    next_id: u32,
    /// Segment ids below this were lost with a replaced device (see `Superblock::seg_base`):
    /// the index may still point at them; reads treat their shards as missing (rebuilt from
    /// parity, queued for repair) without counting an error against the device.
    lost_below: u32,
    segs: HashMap<u32, SegInfo>,
    /// Bumped whenever the device's directory changes (detach, attachment, replacement): a
    /// segment created for the old one is not installed (`install_segment`).
    epoch: u64,
}

pub struct Segments {
    tablet: u32,
    seg_bytes: u64,
    devs: Vec<DevSegs>,
    /// Set while the log is replayed: a segment's live bytes may fall to zero in the middle of
    /// the replay and rise again when a later record points into it, so nothing is deleted
    /// until `sweep_dead` runs on the final state.
    replaying: bool,
    /// Unlinks dead segment files (set once the tablet runs: a helper thread does it then); on
    /// the calling thread when unset (start-up, tests).
    unlinker: Option<Box<dyn Fn(PathBuf)>>,
}

/// One allocated extent: where to write a shard.
pub struct Extent {
    pub seg: SegmentId,
    pub block: BlockIndex,
    pub file: Rc<DevFile>,
}

/// A segment id reserved by `Segments::reserve_segment`, and what creating its file needs.
pub struct NewSegment {
    pub dev: u16,
    pub id: u32,
    /// The device's `DevSegs::epoch` at the reservation.
    epoch: u64,
    pub path: PathBuf,
    /// The tablet's directory on the device.
    dir: PathBuf,
    pub direct: bool,
    bytes: u64,
}

impl NewSegment {
    /// Create the segment's file, preallocated, with its name durable: blocking system calls
    /// (open, fallocate, a directory fsync), for a helper thread (`Blocking::run`).
    pub fn create(path: &Path, dir: &Path, direct: bool, bytes: u64) -> Result<std::fs::File> {
        let f = DevFile::open_std(path, true, direct)?;
        if let Err(e) = fallocate(&f, bytes) {
            // Typically ENOSPC: leave no empty file behind for each refused attempt.
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(io_at(path, e));
        }
        // The new name must be durable before any record points into the file.
        sync_dir(dir)?;
        Ok(f)
    }

    /// What `create` needs, owned (to move to a helper thread).
    pub fn create_args(&self) -> (PathBuf, PathBuf, bool, u64) {
        (self.path.clone(), self.dir.clone(), self.direct, self.bytes)
    }
}

impl Segments {
    /// Scan the devices for this tablet's segment files. Existing segments are sealed: new
    /// writes always go to fresh segments after a restart.
    pub fn open(tablet: u32, seg_bytes: u64, devs: &[(Option<PathBuf>, bool)]) -> Result<Segments> {
        assert!(
            seg_bytes.is_multiple_of(ALIGN_BYTES as u64) && seg_bytes >= 1 << 20,
            "segment size must be >= 1 MiB, 4 KiB aligned"
        );
        let mut out = Vec::new();
        for (dir, direct) in devs {
            let mut d = DevSegs {
                dir: dir.clone(),
                direct: *direct,
                active: None,
                next_id: 1,
                lost_below: 0,
                segs: HashMap::new(),
                epoch: 0,
            };
            if let Some(dir) = dir {
                let sd = ensure_tablet_dir(dir, tablet)?;
                for e in std::fs::read_dir(&sd).map_err(|e| io_at(&sd, e))?.flatten() {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if let Some(id) = name
                        .strip_prefix("seg-")
                        .and_then(|s| s.strip_suffix(".dat"))
                        .and_then(|s| s.parse::<u32>().ok())
                    {
                        d.next_id = d.next_id.max(id + 1);
                        // A segment trimmed by an earlier start is shorter than `seg_bytes`.
                        let len = e.metadata().map_err(|err| io_at(&e.path(), err))?.len();
                        let used = len.min(seg_bytes) / ALIGN_BYTES as u64 * ALIGN_BYTES as u64;
                        d.segs.insert(id, SegInfo { sealed: true, used, ..Default::default() });
                    }
                }
            }
            out.push(d);
        }
        Ok(Segments { tablet, seg_bytes, devs: out, replaying: true, unlinker: None })
    }

    pub fn seg_bytes(&self) -> u64 {
        self.seg_bytes
    }

    /// Segment ids below `base` on `dev` were lost with the device it replaced (call right
    /// after `open`, before replay, with the device's `Superblock::seg_base`).
    pub fn set_seg_base(&mut self, dev: u16, base: u32) {
        if let Some(d) = self.devs.get_mut(dev as usize) {
            d.lost_below = d.lost_below.max(base);
            d.next_id = d.next_id.max(base);
            // Files below the base cannot belong here; never read them.
            d.segs.retain(|id, _| *id >= base);
        }
    }

    /// Whether `seg` on `dev` was lost with a replaced device.
    pub fn is_lost(&self, dev: u16, seg: u32) -> bool {
        self.devs.get(dev as usize).is_some_and(|d| seg < d.lost_below)
    }

    /// The next segment id `dev` would use (a replacement's `seg_base` must not be below it).
    pub fn next_id(&self, dev: u16) -> u32 {
        self.devs.get(dev as usize).map_or(0, |d| d.next_id)
    }

    /// Stop using `dev` (it is being replaced): no new extents there and its files are closed
    /// (readers holding a handle finish with it). Returns the next segment id it would use.
    pub fn detach(&mut self, dev: u16) -> u32 {
        let Some(d) = self.devs.get_mut(dev as usize) else { return 0 };
        d.dir = None;
        d.epoch += 1;
        if let Some(a) = d.active.take() {
            if let Some(s) = d.segs.get_mut(&a) {
                s.sealed = true;
            }
        }
        for s in d.segs.values_mut() {
            s.file = None;
        }
        d.next_id
    }

    /// Use `dir` as device `dev` from now on: a freshly formatted replacement whose segment
    /// ids start at `base`; every segment below it is lost. The live-byte accounting of the
    /// lost segments stays until the objects pointing there are rebuilt.
    pub fn attach_replacement(&mut self, dev: u16, dir: &Path, direct: bool, base: u32) {
        let Some(d) = self.devs.get_mut(dev as usize) else { return };
        assert!(base >= d.next_id, "replacement seg_base {base} below the next segment id {}", d.next_id);
        d.dir = Some(dir.to_path_buf());
        d.direct = direct;
        d.epoch += 1;
        if let Some(a) = d.active.take() {
            if let Some(s) = d.segs.get_mut(&a) {
                s.sealed = true;
            }
        }
        d.next_id = base;
        d.lost_below = base;
        for s in d.segs.values_mut() {
            s.file = None;
            s.sealed = true;
        }
    }

    /// Reserve `len` bytes (4 KiB multiple) on device `dev`. The extent is pending until
    /// `commit_pending` or `abort_pending`. `None` when the device's active segment has no room
    /// (or there is none): the caller makes a new one off the core's thread (`reserve_segment`,
    /// `NewSegment::create` on a helper thread, `install_segment`) and asks again.
    pub fn alloc(&mut self, dev: u16, len: usize) -> Result<Option<Extent>> {
        debug_assert!(len.is_multiple_of(ALIGN_BYTES) && len > 0);
        let seg_bytes = self.seg_bytes;
        let d = self.devs.get_mut(dev as usize).ok_or_else(|| StorageError::Io(format!("no device {dev}")))?;
        if d.dir.is_none() {
            return Err(StorageError::InsufficientDevices(format!("device {dev} is unavailable")).into());
        }
        // A fresh segment takes its first extent whatever its size (a shard of an object
        // written with a larger chunk than this segment size).
        let fits = |s: &SegInfo| s.used == 0 || s.used + len as u64 <= seg_bytes;
        let Some(id) = d.active.filter(|a| d.segs.get(a).is_some_and(fits)) else { return Ok(None) };
        let s = d.segs.get_mut(&id).expect("active segment info");
        let block = BlockIndex::at_offset(s.used);
        s.used += len as u64;
        s.pending += 1;
        let file = s.file.clone().expect("active segment is open");
        Ok(Some(Extent { seg: SegmentId(id), block, file }))
    }

    /// Take the next segment id on `dev` for a new segment, to be created off the core's thread.
    pub fn reserve_segment(&mut self, dev: u16) -> Result<NewSegment> {
        let tablet = self.tablet;
        let d = self.devs.get_mut(dev as usize).ok_or_else(|| StorageError::Io(format!("no device {dev}")))?;
        let dir =
            d.dir.clone().ok_or_else(|| StorageError::InsufficientDevices(format!("device {dev} is unavailable")))?;
        let id = d.next_id;
        d.next_id += 1;
        Ok(NewSegment {
            dev,
            id,
            epoch: d.epoch,
            path: seg_path(&dir, tablet, id),
            dir: tablet_dir(&dir, tablet),
            direct: d.direct,
            bytes: self.seg_bytes,
        })
    }

    /// Make a segment created by `NewSegment::create` the device's active one; the one it
    /// replaces is sealed. Refused if the device was detached, replaced or re-attached since
    /// the id was reserved (the file is then left unused; the next start removes it).
    pub fn install_segment(&mut self, new: &NewSegment, file: Rc<DevFile>) -> Result<()> {
        let tablet = self.tablet;
        let d =
            self.devs.get_mut(new.dev as usize).ok_or_else(|| StorageError::Io(format!("no device {}", new.dev)))?;
        let Some(dir) = d.dir.clone().filter(|_| d.epoch == new.epoch) else {
            return Err(StorageError::InsufficientDevices(format!(
                "device {} changed while segment {} was being created",
                new.dev, new.id
            ))
            .into());
        };
        if let Some(a) = d.active.take() {
            if let Some(s) = d.segs.get_mut(&a) {
                s.sealed = true;
            }
            Self::maybe_delete(&dir, tablet, a, &mut d.segs, &self.unlinker);
        }
        d.segs.insert(new.id, SegInfo { file: Some(file), ..Default::default() });
        d.active = Some(new.id);
        Ok(())
    }

    /// Unlink dead segment files through `f` from now on (a helper thread: see `blocking`)
    /// instead of on the calling thread.
    pub fn set_unlinker(&mut self, f: impl Fn(PathBuf) + 'static) {
        self.unlinker = Some(Box::new(f));
    }

    /// An open handle on a segment for reading (opened lazily for sealed segments).
    pub fn file(&mut self, dev: u16, seg: u32) -> Result<Rc<DevFile>> {
        let tablet = self.tablet;
        let d = self.devs.get_mut(dev as usize).ok_or_else(|| StorageError::Io(format!("no device {dev}")))?;
        let dir = d.dir.clone().ok_or_else(|| StorageError::Io(format!("device {dev} is unavailable")))?;
        if seg < d.lost_below {
            return Err(StorageError::Unreadable(format!(
                "segment {seg} on device {dev} was lost with the device it replaced"
            ))
            .into());
        }
        let s = d.segs.entry(seg).or_insert_with(|| SegInfo { sealed: true, ..Default::default() });
        if let Some(f) = &s.file {
            return Ok(f.clone());
        }
        let f = Rc::new(DevFile::open(&seg_path(&dir, tablet, seg), false, d.direct)?);
        s.file = Some(f.clone());
        Ok(f)
    }

    /// A device that was unavailable at open came back: use it from now on (`direct`: whether
    /// O_DIRECT works there, probed off the core's thread).
    pub fn attach(&mut self, dev: u16, dir: &Path, direct: bool) {
        if let Some(d) = self.devs.get_mut(dev as usize) {
            if d.dir.is_none() {
                d.direct = direct;
                d.dir = Some(dir.to_path_buf());
                d.epoch += 1;
            }
        }
    }

    /// The writes of one object are done (committed or abandoned): drop their pending marks.
    pub fn release_pending(&mut self, dev: u16, seg: u32) {
        let tablet = self.tablet;
        let replaying = self.replaying;
        if let Some(d) = self.devs.get_mut(dev as usize) {
            if let Some(s) = d.segs.get_mut(&seg) {
                assert!(s.pending > 0, "segment {seg} on device {dev}: an extent released twice");
                s.pending -= 1;
            }
            if let Some(dir) = d.dir.clone().filter(|_| !replaying) {
                Self::maybe_delete(&dir, tablet, seg, &mut d.segs, &self.unlinker);
            }
        }
    }

    /// A record points at `bytes` from `block` of `seg` on `dev`.
    pub fn add_live(&mut self, dev: u16, seg: u32, block: u32, bytes: u64) {
        if let Some(d) = self.devs.get_mut(dev as usize) {
            // A device absent at open has no files to scan: what the index points at there
            // still decides which ids are taken (a replacement's `seg_base` builds on it).
            d.next_id = d.next_id.max(seg.saturating_add(1));
            let s = d.segs.entry(seg).or_insert_with(|| SegInfo { sealed: true, ..Default::default() });
            s.live += bytes;
            let end = BlockIndex(block).offset_bytes() + bytes.next_multiple_of(ALIGN_BYTES as u64);
            s.referenced_end = s.referenced_end.max(end);
        }
    }

    pub fn sub_live(&mut self, dev: u16, seg: u32, bytes: u64) {
        let tablet = self.tablet;
        let replaying = self.replaying;
        if let Some(d) = self.devs.get_mut(dev as usize) {
            if let Some(s) = d.segs.get_mut(&seg) {
                debug_assert!(s.live >= bytes, "live bytes of segment {seg} would go negative");
                s.live = s.live.saturating_sub(bytes);
            }
            if let Some(dir) = d.dir.clone().filter(|_| !replaying) {
                Self::maybe_delete(&dir, tablet, seg, &mut d.segs, &self.unlinker);
            }
        }
    }

    fn maybe_delete(
        dir: &Path,
        tablet: u32,
        seg: u32,
        segs: &mut HashMap<u32, SegInfo>,
        unlinker: &Option<Box<dyn Fn(PathBuf)>>,
    ) {
        let dead = segs.get(&seg).is_some_and(|s| s.sealed && s.live == 0 && s.pending == 0);
        if dead {
            segs.remove(&seg);
            // Readers that still hold the handle keep reading the unlinked file.
            let path = seg_path(dir, tablet, seg);
            match unlinker {
                Some(unlink) => unlink(path),
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// After recovery: delete sealed segments nothing refers to, trim the rest to what records
    /// reach (`trim_sealed`), and from now on delete a segment as soon as it dies.
    pub fn sweep_dead(&mut self) {
        self.replaying = false;
        let tablet = self.tablet;
        for d in &mut self.devs {
            let Some(dir) = d.dir.clone() else { continue };
            let ids: Vec<u32> = d.segs.keys().copied().collect();
            for id in ids {
                Self::maybe_delete(&dir, tablet, id, &mut d.segs, &self.unlinker);
            }
        }
        self.trim_sealed();
    }

    /// Give back the space a sealed segment holds past the last extent any record points at.
    /// Start-up only (from `sweep_dead`, before the core serves anything): it truncates and
    /// fsyncs files on the calling thread.
    ///
    /// Every segment found at open is sealed (new writes go to fresh segments), and one that
    /// was being filled when the process died keeps its whole preallocation: without this, each
    /// crash would strand up to `seg_bytes` per device and tablet, and a crash loop fills the
    /// disk. Run only after the whole log is replayed, so `referenced_end` covers every extent
    /// a durable record names; what lies past it was written for requests never acknowledged
    /// (or for objects since deleted) and no record can reach it. Sealed segments are never
    /// appended to again, so a shorter file is never written past its end. A trim lost in a
    /// crash costs only the space it would have freed. Returns the bytes given back.
    pub fn trim_sealed(&mut self) -> u64 {
        assert!(!self.replaying, "segments are trimmed only after the whole log is replayed");
        let tablet = self.tablet;
        let mut freed = 0;
        for (dev, d) in self.devs.iter_mut().enumerate() {
            let Some(dir) = d.dir.clone() else { continue };
            for (&id, s) in d.segs.iter_mut() {
                if !s.sealed || s.pending > 0 || s.referenced_end >= s.used || id < d.lost_below {
                    continue;
                }
                assert!(s.referenced_end.is_multiple_of(ALIGN_BYTES as u64), "extent ends are block-aligned");
                let path = seg_path(&dir, tablet, id);
                let trimmed = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(s.referenced_end).and_then(|()| f.sync_all()));
                match trimmed {
                    Ok(()) => {
                        freed += s.used - s.referenced_end;
                        s.used = s.referenced_end;
                        // A handle opened before the trim would see the old length; reopen lazily.
                        s.file = None;
                    }
                    Err(e) => tracing::warn!("device {dev}: cannot trim {}: {e}", path.display()),
                }
            }
        }
        if freed > 0 {
            tracing::info!("tablet {tablet}: trimmed {} MiB of unused segment space", freed >> 20);
        }
        freed
    }

    /// (device, segment, live bytes, used bytes) of every sealed segment, for compaction.
    pub fn sealed_usage(&self) -> Vec<(u16, u32, u64, u64)> {
        let mut v = Vec::new();
        for (i, d) in self.devs.iter().enumerate() {
            for (&id, s) in &d.segs {
                if s.sealed && s.pending == 0 {
                    v.push((i as u16, id, s.live, s.used));
                }
            }
        }
        v
    }

    /// Total bytes of segment files on disk (allocated size), for space accounting.
    pub fn file_count(&self) -> usize {
        self.devs.iter().map(|d| d.segs.len()).sum()
    }
}
