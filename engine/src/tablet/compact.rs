//! Compaction: empty sealed segments that are mostly garbage so they can be deleted.
//!
//! A pass picks the sealed segments whose live bytes are below `COMPACT_LIVE_PERCENT` of their
//! used bytes, finds the runs of data (object parts and upload parts) with extents there, reads
//! each through the normal read path (checksums verified, rebuilt from parity if needed) and
//! writes it again through the normal write path into the active segments. A `Relocate` record
//! commits each move; it applies only if the object or part is unchanged since it was read
//! (same ETag and mtime), so a concurrent overwrite or delete always wins and the copy becomes
//! garbage. Once nothing live is left in an old segment, the segment is deleted.
//!
//! Passes are bounded (runs, bytes, segments) and yield between runs, so foreground requests
//! keep going; the next commit starts the next pass.

use super::read::ReadFiles;
use super::write::{rotate_for, Written};
use super::Tablet;
use crate::api::{body_channel, BodyItem, ByteRange, MAX_OBJECT_BYTES};
use crate::error::{Result, StorageError};
use crate::ids::{DeviceId, SegmentId};
use crate::record::{DataLoc, ObjectMeta, PartLayout, Record, RelocTarget};
use crate::sched::IoClass;
use std::collections::HashSet;
use std::rc::Rc;

/// A sealed segment is compacted once less than this share of its used bytes is live.
pub const COMPACT_LIVE_PERCENT: u64 = 50;
/// Segments emptied per pass (the emptiest first).
pub const COMPACT_SEGMENTS_PER_PASS: usize = 4;
/// Runs of data (object or upload parts) moved per pass.
pub const COMPACT_RUNS_PER_PASS: usize = 16;
/// Pause between two passes of one compaction run (each pass is paced by the I/O scheduler's
/// compaction share already; this leaves the event loop to the foreground between them).
pub const COMPACT_PAUSE_BETWEEN_PASSES_MS: u64 = 20;
/// Data bytes moved per pass.
pub const COMPACT_BYTES_PER_PASS: u64 = 64 << 20;
const _: () = assert!(COMPACT_LIVE_PERCENT > 0 && COMPACT_LIVE_PERCENT <= 100, "a share of a segment's used bytes");
const _: () = assert!(
    COMPACT_SEGMENTS_PER_PASS > 0 && COMPACT_RUNS_PER_PASS > 0 && COMPACT_BYTES_PER_PASS > 0,
    "a pass that may move nothing never empties a segment"
);

/// Give the event loop one turn so queued foreground work runs between compaction steps.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

fn touches(p: &PartLayout, segs: &HashSet<(DeviceId, SegmentId)>) -> bool {
    (0..p.stripe_count())
        .any(|s| (0..p.width()).any(|i| segs.contains(&(DeviceId(p.devices[i]), SegmentId(p.loc(s, i).seg)))))
}

impl Tablet {
    /// Start a compaction pass in the background if one is worth doing and none is running.
    pub(super) fn maybe_compact(self: &Rc<Self>) {
        if self.compacting.get() {
            return;
        }
        let victims = self.compaction_victims();
        if victims.is_empty() {
            return;
        }
        self.compacting.set(true);
        let me = self.clone();
        monoio::spawn(async move {
            // Pass after pass until nothing is worth compacting: a node that stops writing (or
            // restarts often, as in a crash loop) must still give back what overwrites and
            // deletes left, not wait for later commits to start one pass each.
            let mut victims = victims;
            loop {
                if let Err(e) = me.compact(victims.clone()).await {
                    tracing::warn!("tablet {}: compaction pass failed: {e}", me.id);
                    break;
                }
                let next = me.compaction_victims();
                if next.is_empty() || next == victims {
                    break;
                }
                victims = next;
                monoio::time::sleep(std::time::Duration::from_millis(COMPACT_PAUSE_BETWEEN_PASSES_MS)).await;
            }
            me.compacting.set(false);
        });
    }

    fn compaction_victims(&self) -> HashSet<(DeviceId, SegmentId)> {
        let skip = self.compact_skip.borrow();
        let mut v: Vec<(u16, u32, u64, u64)> = self
            .segs
            .borrow()
            .sealed_usage()
            .into_iter()
            .filter(|&(d, s, live, used)| {
                live > 0 && live * 100 < used * COMPACT_LIVE_PERCENT && !skip.contains(&(DeviceId(d), SegmentId(s)))
            })
            .collect();
        v.sort_by_key(|&(_, _, live, _)| live);
        v.into_iter().take(COMPACT_SEGMENTS_PER_PASS).map(|(d, s, _, _)| (DeviceId(d), SegmentId(s))).collect()
    }

    async fn compact(self: &Rc<Self>, victims: HashSet<(DeviceId, SegmentId)>) -> Result<()> {
        let mut work: Vec<(RelocTarget, PartLayout, usize)> = Vec::new();
        {
            let st = self.state.borrow();
            for (bucket, objects) in &st.objects {
                for (key, m) in objects {
                    let DataLoc::Parts(parts) = &m.data else { continue };
                    for (i, p) in parts.iter().enumerate().filter(|(_, p)| touches(p, &victims)) {
                        let target = RelocTarget::Object {
                            bucket: bucket.clone(),
                            key: key.clone(),
                            md5: m.md5,
                            parts_count: m.parts_count,
                            mtime_ms: m.mtime_ms,
                            index: i as u32,
                        };
                        work.push((target, p.clone(), rotate_for(bucket, key).wrapping_add(i)));
                    }
                }
            }
            for (id, u) in &st.uploads {
                for p in u.parts.values().filter(|p| touches(&p.layout, &victims)) {
                    let target = RelocTarget::Part { upload_id: id.clone(), number: p.number, mtime_ms: p.mtime_ms };
                    let rotate = rotate_for(&u.bucket, &u.key).wrapping_add(p.number as usize);
                    work.push((target, p.layout.clone(), rotate));
                }
            }
        }
        let mut moved = 0u64;
        for (target, old, rotate) in work.into_iter().take(COMPACT_RUNS_PER_PASS) {
            if moved >= COMPACT_BYTES_PER_PASS {
                break;
            }
            moved += old.size;
            YieldNow(false).await;
            let _relocating = self.relocating.lock().await;
            // The work list was built at the start of the pass: a run repaired or moved since
            // has other extents (a later pass picks it up if it still needs moving).
            if self.state.borrow().run(&target) != Some(&old) {
                continue;
            }
            if let Err(e) = self.relocate(target, &old, rotate, IoClass::Compaction).await {
                // Do not retry these segments on every commit; a restart or a repair clears it.
                let mut skip = self.compact_skip.borrow_mut();
                skip.extend(victims.iter().copied());
                return Err(e);
            }
            self.ctx.stats.borrow_mut().compacted_bytes += old.size;
        }
        Ok(())
    }

    /// Copy one run of data to new extents and commit the move (if its target is unchanged).
    /// Each chunk waits for the I/O scheduler's leave for `class` (`CoreCtx::copy_bytes` of the chunk).
    pub(super) async fn relocate(
        self: &Rc<Self>,
        target: RelocTarget,
        old: &PartLayout,
        rotate: usize,
        class: IoClass,
    ) -> Result<()> {
        let (bucket, key) = match &target {
            RelocTarget::Object { bucket, key, .. } => (bucket.clone(), key.clone()),
            RelocTarget::Part { upload_id, number, .. } => (String::new(), format!("upload {upload_id} part {number}")),
        };
        let meta = ObjectMeta {
            size: old.size,
            md5: old.md5,
            parts_count: 0,
            mtime_ms: 0,
            headers: Default::default(),
            data: DataLoc::Parts(Box::new([old.clone()])),
        };
        let r = ByteRange { start: 0, end: old.size };
        // The layout was copied before an await: its segments may be gone (not a device fault).
        let plan = self.read_plan_for(&meta, r, false);
        let (tx, rx) = flume::bounded(2);
        let (btx, body) = body_channel();
        let read = async {
            let res = if old.size > 0 {
                self.stream(&bucket, &key, &meta, r, ReadFiles::Segments(plan), &tx).await
            } else {
                Ok(())
            };
            drop(tx);
            res
        };
        let ctx = self.ctx.clone();
        let pump = async move {
            while let Ok(chunk) = rx.recv_async().await {
                let item = match chunk {
                    Ok(b) => {
                        // Paced chunk by chunk, so a copy's disk work is spread out, not a burst.
                        ctx.throttle(class, ctx.copy_bytes(b.len() as u64)).await;
                        BodyItem::Data(b)
                    }
                    Err(e) => BodyItem::Abort(format!("compaction read failed: {e}")),
                };
                let stop = matches!(item, BodyItem::Abort(_));
                if btx.send_async(item).await.is_err() || stop {
                    return;
                }
            }
            let _ = btx.send_async(BodyItem::End { checksum: None }).await;
        };
        let (read, (), written) = futures::join!(read, pump, self.write_body(body, false, rotate, MAX_OBJECT_BYTES));
        read?;
        let w = written?;
        let Written::Part(layout) = w.data else { unreachable!("a run is written with allow_inline = false") };
        if layout.md5 != old.md5 || layout.size != old.size {
            return Err(
                StorageError::Corrupt(format!("compaction copy of {bucket}/{key} differs from the original")).into()
            );
        }
        self.commit(Record::Relocate { target, layout }, None).await
        // `w` (its pending extents) is released here, after the commit applied.
    }
}
