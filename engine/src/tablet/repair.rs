//! Self-healing of a tablet's data: the repair task and the scrubber.
//!
//! **Repair** takes objects from `repair_queue` (filled by reads that had to reconstruct, by
//! the scrubber, and by a device failure) and checks every stripe of every part by reading all
//! k+m shards and their CRC32Cs. A part whose devices are all healthy is mended in place: each
//! bad stripe's data is reconstructed from the survivors, its parity re-encoded, and only the
//! bad shards are written again, to new extents on their own devices. The rebuilt shard must
//! match the CRC32C recorded when it was first written, so a rebuild can never bless wrong
//! bytes. A part with shards on a failed device is re-placed whole through the normal write
//! path (zone-safe placement over the healthy devices). Either way a `Relocate` record commits
//! the new layout; it applies only if the object is unchanged since it was read.
//!
//! **Scrub** walks every object's every stripe at a bounded rate, reads all k+m shards,
//! verifies them, and queues anything bad for repair.
//!
//! Both yield to foreground work through the core's I/O scheduler (`sched.rs`).

use super::read::SegmentFiles;
use super::{PendingExtents, Tablet};
use crate::buf::AlignedBuf;
use crate::error::{Error, Result, StorageError};
use crate::ids::DeviceId;
use crate::record::{DataLoc, ObjectMeta, PartLayout, Record, RelocTarget, ShardLoc};
use crate::sched::IoClass;
use crate::stripe::crc;
use std::collections::HashSet;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Objects repaired per wake of the repair task before it yields a full poll period.
pub const REPAIR_OBJECTS_PER_ROUND: usize = 64;
/// The scrubber sleeps off its rate debt in steps of at least this long.
pub const SCRUB_SLEEP_MIN_MS: u64 = 10;
/// Pause between two scrub passes when the data set is empty or tiny.
pub const SCRUB_IDLE_MS: u64 = 1_000;
const _: () = assert!(REPAIR_OBJECTS_PER_ROUND > 0, "a repair round that takes no object never drains the queue");
// Between passes the scrubber always sleeps (at least `SCRUB_SLEEP_MIN_MS`) so the repair task
// gets the event loop; idle waits are the longer of the two.
const _: () = assert!(SCRUB_SLEEP_MIN_MS > 0 && SCRUB_IDLE_MS >= SCRUB_SLEEP_MIN_MS);

#[derive(Default)]
pub struct HealState {
    /// The scrubber's position: the last (bucket, key) it finished.
    pub scrub_cursor: Option<(String, String)>,
    pub scrub_passes: u64,
}

/// How one part looked when all its shards were read.
enum PartCheck {
    Clean,
    /// Stripes with bad shards (indices), all on healthy devices.
    Bad(Vec<(usize, Vec<usize>)>),
}

impl Tablet {
    /// Start this tablet's background tasks (called once the core is up).
    pub fn start_background(self: &Rc<Self>) {
        let cfg = &self.ctx.shared.heal;
        if cfg.repair {
            // What is below redundancy already at start (a device missing at open, shards lost
            // with a replaced device whose rebuild a restart interrupted) is queued now, not
            // left for the scrubber to find.
            self.queue_below_redundancy();
            let weak = Rc::downgrade(self);
            let poll = Duration::from_millis(cfg.repair_poll_ms.max(1));
            monoio::spawn(repair_loop(weak, poll));
        }
        if cfg.scrub {
            monoio::spawn(scrub_loop(Rc::downgrade(self)));
        }
        // Garbage left by overwrites and deletes before a restart is compacted now, not only
        // once new writes start passes.
        self.maybe_compact();
    }

    /// Device `dev` is back (or in service again) at `path`: its segments are used again.
    pub fn attach_device(&self, dev: u16, path: &std::path::Path, direct: bool) {
        self.segs.borrow_mut().attach(dev, path, direct);
    }

    /// Stop using device `dev` (step one of its replacement). Returns the next segment id this
    /// tablet would have used there.
    pub fn detach_device(&self, dev: u16) -> u32 {
        self.segs.borrow_mut().detach(dev)
    }

    /// `path` is device `dev` from now on, a fresh device whose segment ids start at `base`
    /// (step two of a replacement).
    pub fn attach_replacement(&self, dev: u16, path: &std::path::Path, direct: bool, base: u32) {
        self.segs.borrow_mut().attach_replacement(dev, path, direct, base);
    }

    /// Device `dev` failed: move the log off it and queue every object with a shard there.
    pub fn device_failed(self: &Rc<Self>, dev: u16) {
        // A spare there is never reused (no mirror goes to a failed device): let its file go.
        self.drop_spares_on(dev);
        if self.wal.borrow().files.iter().any(|(d, _)| *d == DeviceId(dev)) {
            // The commit leader rewrites the log before its next batch; with no leader
            // running, a task becomes the leader for it.
            self.wal_rewrite.set(true);
            self.lead_commits();
        }
        self.queue_objects_on(dev);
    }

    /// Queue an object for repair if the queue has room for it (`repair_queue_depth_max`).
    /// One that does not fit is not forgotten: it is below redundancy (a failed or replaced
    /// device), which the rescan finds once the queue has drained (`repair_rescan`), or it has
    /// a bad shard on a healthy device, which the scrubber's next pass (or the next read that
    /// meets it) finds again. Returns whether the object is queued.
    pub(super) fn queue_repair(&self, q: &mut HashSet<(String, String)>, obj: (String, String)) -> bool {
        if q.len() < self.ctx.shared.repair_queue_depth_max || q.contains(&obj) {
            q.insert(obj);
            return true;
        }
        self.repair_rescan.set(true);
        self.ctx.stats.borrow_mut().repair_queue_overflows += 1;
        false
    }

    /// Queue every object with a shard on `dev` (a failed device's, or a replaced one's: their
    /// shards are rebuilt), as many as the queue holds (the rest are below redundancy: the
    /// rescan finds them).
    pub fn queue_objects_on(&self, dev: u16) {
        let st = self.state.borrow();
        let mut q = self.repair_queue.borrow_mut();
        for (b, objects) in &st.objects {
            for (k, m) in objects {
                if let DataLoc::Parts(parts) = &m.data {
                    if parts.iter().any(|p| p.devices.contains(&dev))
                        && !self.queue_repair(&mut q, (b.clone(), k.clone()))
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Queue every object with a shard on a failed device or in a segment lost with a
    /// replaced device, as many as the queue holds, but not those known to wait for room
    /// (`repair_waiting`: a device coming back or replaced queues them).
    pub fn queue_below_redundancy(&self) {
        let healthy = self.ctx.healthy.borrow();
        let segs = self.segs.borrow();
        let st = self.state.borrow();
        let waiting = self.repair_waiting.borrow();
        let mut q = self.repair_queue.borrow_mut();
        for (b, objects) in &st.objects {
            for (k, m) in objects {
                if let DataLoc::Parts(parts) = &m.data {
                    let obj = (b.clone(), k.clone());
                    if parts.iter().any(|p| part_below_redundancy(p, &healthy, &segs))
                        && !waiting.contains(&obj)
                        && !self.queue_repair(&mut q, obj)
                    {
                        return;
                    }
                }
            }
        }
    }

    /// A device came back or was replaced: the objects waiting for room are tried again.
    pub fn retry_waiting(&self) {
        let waiting = std::mem::take(&mut *self.repair_waiting.borrow_mut());
        if !waiting.is_empty() {
            tracing::info!(
                "tablet {}: retrying the repair of {} object(s) that were waiting for room",
                self.id,
                waiting.len()
            );
            let mut q = self.repair_queue.borrow_mut();
            for obj in waiting {
                if !self.queue_repair(&mut q, obj) {
                    // Still below redundancy: the rescan finds the rest.
                    break;
                }
            }
        }
    }

    /// Rewrite the log generation (a checkpoint) onto healthy, zone-safe mirrors. Only called
    /// when no batch is in flight.
    pub(super) async fn rewrite_wal(&self) {
        self.wal_rewrite.set(false);
        let healthy = self.ctx.healthy.borrow().clone();
        if self.wal.borrow().files.iter().all(|(d, _)| healthy[d.index()]) {
            return;
        }
        match self.checkpoint().await {
            Ok(()) => tracing::warn!("tablet {}: log moved to healthy mirrors", self.id),
            Err(e) => tracing::error!("tablet {}: cannot move the log off a failed device: {e}", self.id),
        }
    }

    /// Erasure-coded objects of this tablet with a shard on a failed device, or in a segment
    /// lost with a replaced device (not yet rebuilt).
    pub fn objects_below_redundancy(&self) -> u64 {
        let healthy = self.ctx.healthy.borrow();
        let segs = self.segs.borrow();
        let st = self.state.borrow();
        let mut n = 0;
        for objects in st.objects.values() {
            for m in objects.values() {
                if let DataLoc::Parts(parts) = &m.data {
                    if parts.iter().any(|p| part_below_redundancy(p, &healthy, &segs)) {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Objects waiting in the repair queue.
    pub fn repairs_queued(&self) -> usize {
        self.repair_queue.borrow().len()
    }

    /// Objects whose repair waits for room (see `repair_waiting`).
    pub fn repairs_waiting(&self) -> usize {
        self.repair_waiting.borrow().len()
    }

    pub fn scrub_passes(&self) -> u64 {
        self.heal.borrow().scrub_passes
    }

    /// Open every segment a part refers to.
    fn part_plan(&self, p: &PartLayout) -> SegmentFiles {
        let meta = ObjectMeta {
            size: p.size,
            md5: p.md5,
            parts_count: 0,
            mtime_ms: 0,
            headers: Default::default(),
            data: DataLoc::Parts(Box::new([p.clone()])),
        };
        if p.size == 0 {
            return SegmentFiles::new();
        }
        self.read_plan_for(&meta, crate::api::ByteRange { start: 0, end: p.size }, false)
    }

    /// Read all k+m shards of stripe `s`; returns them and the indices that are bad.
    async fn check_stripe(
        &self,
        p: &PartLayout,
        s: usize,
        plan: &SegmentFiles,
    ) -> (Vec<Option<AlignedBuf>>, Vec<usize>) {
        let w = p.width();
        let sl = p.shard_len(s);
        let mut shards: Vec<Option<AlignedBuf>> = (0..w).map(|_| None).collect();
        self.read_shards(p, s, sl, 0..=w - 1, plan, &mut shards).await;
        let bad = (0..w).filter(|i| shards[*i].is_none()).collect();
        (shards, bad)
    }

    /// Check every stripe of a part (bytes read are counted against `class`).
    async fn check_part(&self, p: &PartLayout, class: IoClass) -> PartCheck {
        let plan = self.part_plan(p);
        let mut bad = Vec::new();
        for s in 0..p.stripe_count() {
            let bytes = (p.shard_len(s) * p.width()) as u64;
            self.ctx.throttle(class, bytes).await;
            let (_, b) = self.check_stripe(p, s, &plan).await;
            let mut st = self.ctx.stats.borrow_mut();
            if class == IoClass::Scrub {
                st.scrubbed_bytes += bytes;
            }
            if !b.is_empty() {
                bad.push((s, b));
            }
        }
        if bad.is_empty() {
            PartCheck::Clean
        } else {
            PartCheck::Bad(bad)
        }
    }

    /// Check and, where needed, rebuild one object. Returns the parts rewritten.
    pub(super) async fn repair_object(self: &Rc<Self>, bucket: &str, key: &str) -> Result<u32> {
        // The copy of the metadata is taken under the relocation lock and the lock is held until
        // every `Relocate` of this object is applied, so no compaction moves a part meanwhile.
        let _relocating = self.relocating.lock().await;
        let Some(meta) = self.state.borrow().get(bucket, key).cloned() else { return Ok(0) };
        let DataLoc::Parts(parts) = &meta.data else { return Ok(0) }; // inline: in the log
        let mut fixed = 0;
        for (index, p) in parts.iter().enumerate() {
            let target = RelocTarget::Object {
                bucket: bucket.to_string(),
                key: key.to_string(),
                md5: meta.md5,
                parts_count: meta.parts_count,
                mtime_ms: meta.mtime_ms,
                index: index as u32,
            };
            let healthy = self.ctx.healthy.borrow().clone();
            if p.devices.iter().any(|d| !healthy[*d as usize]) {
                // Re-place the whole part on healthy devices through the write path, paced
                // chunk by chunk by the scheduler.
                let rotate = super::write::rotate_for(bucket, key).wrapping_add(index);
                self.relocate(target, p, rotate, IoClass::Repair).await?;
                let mut st = self.ctx.stats.borrow_mut();
                st.repaired_stripes += p.stripe_count() as u64;
                st.repaired_bytes += p.size;
                fixed += 1;
                continue;
            }
            let PartCheck::Bad(stripes) = self.check_part(p, IoClass::Repair).await else { continue };
            let n = stripes.len() as u64;
            let bytes: u64 = stripes.iter().map(|(s, _)| (p.shard_len(*s) * p.k as usize) as u64).sum();
            self.mend_in_place(target, p, stripes).await?;
            let mut st = self.ctx.stats.borrow_mut();
            st.repaired_stripes += n;
            st.repaired_bytes += bytes.min(p.size);
            fixed += 1;
        }
        Ok(fixed)
    }

    /// Rebuild the bad shards of `stripes` onto new extents of their own devices and commit
    /// the new layout.
    async fn mend_in_place(
        self: &Rc<Self>,
        target: RelocTarget,
        p: &PartLayout,
        stripes: Vec<(usize, Vec<usize>)>,
    ) -> Result<()> {
        let (k, m, w) = (p.k as usize, p.m as usize, p.width());
        let plan = self.part_plan(p);
        let mut new = p.clone();
        let mut pending = PendingExtents { tablet: self.clone(), extents: Vec::new() };
        for (s, _) in stripes {
            // Read again: the bad set may have changed since the check.
            let (mut shards, bad) = self.check_stripe(p, s, &plan).await;
            if bad.is_empty() {
                continue;
            }
            let sl = p.shard_len(s);
            let pool = self.ctx.pool.clone();
            self.ctx.codec.borrow_mut().reconstruct(k, m, sl, &mut shards, || pool.get_for(sl)).map_err(|e| {
                Error::Storage(StorageError::Unreadable(format!(
                    "tablet {}: stripe {s} of a part cannot be rebuilt: {e}",
                    self.id
                )))
            })?;
            // `reconstruct` returned Ok: every data shard is there (its contract).
            let data: Vec<AlignedBuf> =
                shards[..k].iter_mut().map(|b| b.take().expect("data shard present after a rebuild")).collect();
            let mut parity: Vec<AlignedBuf> = (0..m).map(|_| self.ctx.pool.get_for(sl)).collect();
            self.ctx.codec.borrow_mut().encode(&data, &mut parity)?;
            let mut writes = Vec::new();
            for &i in &bad {
                let b = if i < k { &data[i] } else { &parity[i - k] };
                let old = p.loc(s, i);
                let c = crc(b.as_slice());
                if c != old.crc {
                    return Err(StorageError::Corrupt(format!(
                        "tablet {}: rebuilt shard {i} of stripe {s} has crc {c:08x}, the record says {:08x}",
                        self.id, old.crc
                    ))
                    .into());
                }
                let dev = p.devices[i];
                let ext = match self.alloc_extent(dev, sl).await {
                    Ok(ext) => ext,
                    Err(e) => {
                        if e.is_io() {
                            self.ctx.note_io_error(dev, &e, false);
                        }
                        return Err(e);
                    }
                };
                pending.extents.push((DeviceId(dev), ext.seg));
                new.shards[s * w + i] = ShardLoc { seg: ext.seg.0, block: ext.block.0, crc: c };
                let mut copy = self.ctx.pool.get_for(sl);
                copy.clear();
                copy.extend_from(b.as_slice());
                writes.push((dev, ext.file, copy, ext.block.offset_bytes()));
            }
            let results = futures::future::join_all(writes.into_iter().map(|(dev, f, b, pos)| async move {
                let (r, _) = f.write_at(b, pos).await;
                (dev, f, r)
            }))
            .await;
            for (dev, f, r) in results {
                if let Err(e) = r {
                    self.ctx.note_io_error(dev, &e, false);
                    return Err(e);
                }
                self.dirty.borrow_mut().push((DeviceId(dev), f));
            }
        }
        // Only shard locations changed: the layout keeps its geometry.
        assert_eq!((new.size, new.shards.len(), &new.devices), (p.size, p.shards.len(), &p.devices));
        new.assert_consistent();
        self.commit(Record::Relocate { target, layout: new }, None).await?;
        drop(pending);
        Ok(())
    }
}

/// Whether a part has a shard on a failed device or in a segment lost with a replaced one.
fn part_below_redundancy(p: &PartLayout, healthy: &[bool], segs: &crate::segment::Segments) -> bool {
    p.devices.iter().any(|d| !healthy.get(*d as usize).copied().unwrap_or(false))
        || (0..p.stripe_count()).any(|s| (0..p.width()).any(|i| segs.is_lost(p.devices[i], p.loc(s, i).seg)))
}

async fn repair_loop(weak: Weak<Tablet>, poll: Duration) {
    loop {
        monoio::time::sleep(poll).await;
        let Some(tablet) = weak.upgrade() else { return };
        if tablet.ctx.stopping() {
            return; // the core is stopping
        }
        if tablet.repair_rescan.get() && tablet.repair_queue.borrow().is_empty() {
            // The queue overflowed and has drained since: look for what it left out (a rescan
            // that overflows again sets the flag again, so the walk repeats until all fit).
            tablet.repair_rescan.set(false);
            tablet.ctx.stats.borrow_mut().repair_rescans += 1;
            tablet.queue_below_redundancy();
        }
        for _ in 0..REPAIR_OBJECTS_PER_ROUND {
            // The object stays queued while it is repaired, so the scrubber skips it.
            let next = tablet.repair_queue.borrow().iter().next().cloned();
            let Some(obj) = next else { break };
            if tablet.repair_waiting.borrow().contains(&obj) {
                // Known to need room that does not exist yet: a read or the scrubber found it
                // again. It is retried when a device comes back or is replaced.
                tablet.repair_queue.borrow_mut().remove(&obj);
                continue;
            }
            let (bucket, key) = &obj;
            let epoch = tablet.ctx.health_epoch.get();
            let r = tablet.repair_object(bucket, key).await;
            if let Ok(n) = &r {
                tablet.ctx.stats.borrow_mut().repaired_parts += *n as u64;
            }
            if tablet.ctx.health_epoch.get() != epoch {
                // A device failed, came back or was replaced meanwhile: whatever the repair
                // concluded came from the state before. The object stays queued (a failure
                // queued it again, and that must not be lost) and is judged afresh.
                if let Err(e) = &r {
                    tracing::debug!("tablet {}: {bucket}/{key}: {e}; device health changed, retrying", tablet.id);
                }
                continue;
            }
            // Reads done by the repair itself may have queued the object again.
            tablet.repair_queue.borrow_mut().remove(&obj);
            match r {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!("tablet {}: repaired {n} part(s) of {bucket}/{key}", tablet.id);
                    }
                }
                Err(Error::Storage(StorageError::InsufficientDevices(why))) => {
                    // No zone-safe room: the object stays below redundancy (the status counts
                    // it) and waits. Said once per change from "none waiting" to "some
                    // waiting", not once per object or per retry.
                    let first = {
                        let mut w = tablet.repair_waiting.borrow_mut();
                        let first = w.is_empty();
                        w.insert(obj.clone());
                        first
                    };
                    if first {
                        tracing::error!(
                            "tablet {}: cannot restore full redundancy ({why}); objects stay readable below full \
                             redundancy and wait until a device comes back or is replaced ('tessera device replace')",
                            tablet.id
                        );
                    } else {
                        tracing::debug!("tablet {}: {bucket}/{key} waits for room to be repaired", tablet.id);
                    }
                }
                Err(e) => {
                    tablet.ctx.stats.borrow_mut().repair_failures += 1;
                    tracing::error!("tablet {}: repair of {bucket}/{key} failed: {e}", tablet.id);
                }
            }
        }
    }
}

/// The next object after `cursor` in (bucket, key) order, with its metadata.
fn next_object(tablet: &Tablet, cursor: &Option<(String, String)>) -> Option<(String, String, ObjectMeta)> {
    let st = tablet.state.borrow();
    let mut buckets: Vec<&String> = st.objects.keys().collect();
    buckets.sort();
    for b in buckets {
        if cursor.as_ref().is_some_and(|(cb, _)| b < cb) {
            continue;
        }
        let map = &st.objects[b];
        let it: Box<dyn Iterator<Item = (&String, &ObjectMeta)>> = match cursor {
            Some((cb, ck)) if cb == b => {
                Box::new(map.range::<String, _>((std::ops::Bound::Excluded(ck.clone()), std::ops::Bound::Unbounded)))
            }
            _ => Box::new(map.iter()),
        };
        for (k, m) in it {
            if matches!(m.data, DataLoc::Parts(_)) {
                return Some((b.clone(), k.clone(), m.clone()));
            }
        }
    }
    None
}

/// Bytes/s this tablet's scrubber may read.
fn scrub_rate(tablet: &Tablet) -> u64 {
    let cfg = &tablet.ctx.shared.heal;
    if cfg.scrub_bytes_per_sec > 0 {
        return cfg.scrub_bytes_per_sec;
    }
    let (k, m) = (tablet.ctx.shared.set.k as u64, tablet.ctx.shared.set.m as u64);
    let data: u64 = tablet.state.borrow().objects.values().flat_map(|o| o.values()).map(|m| m.size).sum();
    let stored = data / k.max(1) * (k + m);
    (stored / cfg.scrub_period_secs.max(1)).max(crate::heal::SCRUB_MIN_BYTES_PER_SEC)
}

async fn scrub_loop(weak: Weak<Tablet>) {
    let mut rate = 0u64;
    let mut window = Instant::now();
    let mut read_in_window = 0u64;
    loop {
        let Some(tablet) = weak.upgrade() else { return };
        if tablet.ctx.stopping() {
            return;
        }
        let cursor = tablet.heal.borrow().scrub_cursor.clone();
        if cursor.is_none() {
            rate = scrub_rate(&tablet);
        }
        let Some((bucket, key, meta)) = next_object(&tablet, &cursor) else {
            let restart = cursor.is_some();
            {
                let mut h = tablet.heal.borrow_mut();
                h.scrub_cursor = None;
                if restart {
                    h.scrub_passes += 1;
                }
            }
            drop(tablet);
            if restart {
                // Always give the event loop a turn between passes: a pass that only skipped
                // objects (all queued for repair) awaited nothing, and looping straight into
                // the next one would starve the repair task that drains that queue.
                sleep_ms(SCRUB_SLEEP_MIN_MS).await;
            } else {
                // Nothing to scrub yet.
                sleep_ms(SCRUB_IDLE_MS).await;
            }
            continue;
        };
        let DataLoc::Parts(parts) = &meta.data else { continue };
        if tablet.repair_queue.borrow().contains(&(bucket.clone(), key.clone())) {
            // Already known bad and about to be repaired: do not count it twice.
            tablet.heal.borrow_mut().scrub_cursor = Some((bucket, key));
            continue;
        }
        let mut bad_shards = 0u64;
        let mut bytes = 0u64;
        for p in parts {
            bytes += p.stripe_count() as u64 * p.width() as u64 * p.shard_len(0) as u64;
            if let PartCheck::Bad(stripes) = tablet.check_part(p, IoClass::Scrub).await {
                bad_shards += stripes.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
            }
        }
        let mut bad = bad_shards > 0;
        // An object overwritten, deleted or relocated (repaired, compacted) meanwhile may have
        // lost its old segments, and its new extents are checked next pass: not rot.
        let same = tablet
            .state
            .borrow()
            .get(&bucket, &key)
            .is_some_and(|m| m.md5 == meta.md5 && m.mtime_ms == meta.mtime_ms && m.data == meta.data);
        if bad && !same {
            bad = false;
        }
        if bad {
            tablet.ctx.stats.borrow_mut().scrub_errors += bad_shards;
            tracing::warn!("tablet {}: scrub found bad shards in {bucket}/{key}; queued for repair", tablet.id);
            let mut q = tablet.repair_queue.borrow_mut();
            // Left out of a full queue, it is found again by the next pass.
            tablet.queue_repair(&mut q, (bucket.clone(), key.clone()));
        }
        tablet.heal.borrow_mut().scrub_cursor = Some((bucket, key));
        drop(tablet);
        // Pace to `rate`: sleep off what was read beyond it in this window.
        read_in_window += bytes;
        let due_ms = read_in_window.saturating_mul(1000) / rate.max(1);
        let spent_ms = window.elapsed().as_millis() as u64;
        if due_ms > spent_ms + SCRUB_SLEEP_MIN_MS {
            sleep_ms(due_ms - spent_ms).await;
        }
        if window.elapsed() > Duration::from_secs(10) {
            window = Instant::now();
            read_in_window = 0;
        }
    }
}

async fn sleep_ms(ms: u64) {
    monoio::time::sleep(Duration::from_millis(ms)).await;
}
