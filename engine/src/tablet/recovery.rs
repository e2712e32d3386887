//! Start-up recovery: every tablet's log is recovered from the healthy devices (`wal::recover`
//! picks the newest complete generation and its longest valid prefix), the bucket table is
//! replayed from tablet 0's log, and each core builds its tablets from their logs
//! (`start_tablet`), writing a fresh generation for each.

use super::checkpoint::{build_checkpoint, choose_mirrors, open_mirrors, read_inline_sync};
use super::log::WalState;
use super::Tablet;
use crate::core::CoreCtx;
use crate::error::{Error, Result, StorageError};
use crate::index::TabletState;
use crate::record::Record;
use crate::segment::Segments;
use crate::superblock::DeviceSet;
use crate::wal::{self, RecoveredLog};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

/// Recover every tablet's log from the devices at `healthy_paths` (`None` for a device that is
/// not), in tablet order, and the bucket table from tablet 0's.
#[allow(clippy::type_complexity)]
pub(crate) fn recover_logs(
    set: &DeviceSet,
    healthy_paths: &[Option<PathBuf>],
) -> Result<(Vec<Option<RecoveredLog>>, BTreeMap<String, u64>)> {
    let mut logs = Vec::with_capacity(set.tablets as usize);
    for t in 0..set.tablets {
        logs.push(wal::recover(healthy_paths, t, set.set_id)?);
    }
    // The bucket table is tablet 0's; replay just its bucket records for every core.
    let mut buckets = BTreeMap::new();
    if let Some(l) = &logs[0] {
        for (_, r) in &l.records {
            match r {
                Record::BucketCreate { name, created_ms } => {
                    buckets.insert(name.clone(), *created_ms);
                }
                Record::BucketDelete { name } => {
                    buckets.remove(name);
                }
                _ => {}
            }
        }
    }
    Ok((logs, buckets))
}

/// Build a tablet from its recovered log and write a fresh generation (checkpoint), which also
/// reconciles mirrors that diverged in a crash and cuts any torn tail.
///
/// Blocking I/O on the core's thread (the directory scans, the segment trim, the generation's
/// zero-fill and fsyncs): this runs before the core answers its first message and before
/// `Engine::open` returns, so there is nothing else for the thread to serve yet. Everything
/// after start goes through the ring or the helper threads (`blocking`).
pub(crate) fn start_tablet(ctx: &Rc<CoreCtx>, id: u32, log: Option<RecoveredLog>) -> Result<Rc<Tablet>> {
    let shared = &ctx.shared;
    let healthy = ctx.healthy.borrow().clone();
    let devs: Vec<(Option<PathBuf>, bool)> = shared
        .set
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone().filter(|_| healthy[i]), shared.direct[i]))
        .collect();
    let mut segs = Segments::open(id, shared.segment_bytes, &devs)?;
    for (dev, base) in shared.set.seg_base.iter().enumerate() {
        if *base > 0 {
            segs.set_seg_base(dev as u16, *base);
        }
    }
    let mut state = TabletState::default();
    let (old_gen, old_files, salt) = match log {
        Some(l) => {
            for (_, r) in l.records {
                state.apply(r, &mut segs);
            }
            (l.gen, l.files.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), l.salt)
        }
        None => (0, Vec::new(), wal::Salt::Gen(0)),
    };
    segs.sweep_dead();
    let healthy_paths: Vec<Option<PathBuf>> = devs.iter().map(|(p, _)| p.clone()).collect();
    let new_gen = old_gen.max(wal::max_generation(&healthy_paths, id)) + 1;
    let old = open_mirrors(&old_files);
    let (bytes, moved) = build_checkpoint(&state, id, new_gen, shared.set.set_id, |m| read_inline_sync(&old, salt, m))?;
    let mirrors = choose_mirrors(&shared.set, &shared.set.paths, &healthy, id)?;
    // Spare files (retired generations kept for the next checkpoint to write over) hold no
    // record anyone needs: gone before the new generation is written, so that a start on a
    // nearly full device has their room for it.
    wal::remove_spares(&healthy_paths, id);
    let written = wal::write_generation(&mirrors, id, new_gen, &bytes).map_err(|(dev, e)| {
        Error::Storage(StorageError::Io(format!(
            "tablet {id}: cannot write its log on device {dev}: {e} (start without that device)"
        )))
    })?;
    for (b, k, off, len) in moved {
        if let Some(m) = state.objects.get_mut(&b).and_then(|m| m.get_mut(&k)) {
            m.data = crate::record::DataLoc::Inline { gen: new_gen, offset: off, len };
        }
    }
    wal::remove_older(&healthy_paths, id, new_gen);
    let wal = WalState::open(new_gen, &bytes, &written, shared.log_direct)?;
    Ok(Tablet::new(id, ctx.clone(), state, segs, wal))
}
