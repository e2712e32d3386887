//! The per-tablet metadata write-ahead log: framing, mirrored generations, recovery.
//!
//! A frame is `[len: u32][crc32c(gen ++ len ++ payload): u32][payload]`: the checksum is
//! salted with the generation (`gen` as 8 little-endian bytes), so a frame is valid only in
//! the generation it was written for. That lets a retired generation's file be recycled as a
//! later one (its blocks are already allocated and written, so appends overwrite instead of
//! growing the file, and nothing is freed): the old frames left behind the new ones fail the
//! new salt and end the log there. Logs written before the salt (no `gen` in the checksum)
//! are still read, as "legacy" generations, and rewritten salted at the next start.
//!
//! A generation file starts with a checkpoint (a `Header`, the live state, `CheckpointEnd`)
//! and continues with appended records. Recovery takes the newest generation with a complete
//! checkpoint and, among its mirrors, the longest valid prefix; the first bad frame ends the
//! log (a torn tail).

use crate::blocking::Blocking;
use crate::error::{io_at, Error, Result, StorageError};
use crate::io::DevFile;
use crate::record::Record;
use crate::segment::tablet_dir;
use std::path::{Path, PathBuf};

pub const FRAME_HEADER_BYTES: usize = 8;
/// Each log generation is zero-filled to this size when written (see `write_generation`).
pub const WAL_PREALLOC_BYTES: u64 = 32 << 20;
/// A frame larger than this is treated as corruption (inline objects and multipart records
/// of 10,000 parts stay well below it).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Whether a record's encoded payload can be framed. Recovery reads a frame longer than
/// `MAX_RECORD_BYTES` as corruption and stops there, so a longer record must be refused before
/// it is committed: written and acknowledged, it would be cut from the log at the next start
/// together with everything after it. The one test used by the writer (`Tablet::commit`,
/// `frame_into`) and the reader (`read_frames_salted`).
pub fn record_fits(payload_len: usize) -> bool {
    payload_len <= MAX_RECORD_BYTES
}

pub fn wal_path(dev: &Path, tablet: u32, gen: u64) -> PathBuf {
    tablet_dir(dev, tablet).join(format!("wal-{gen:010}.log"))
}

/// How a generation's frames are checksummed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Salt {
    /// With the generation in the checksum (everything written now).
    Gen(u64),
    /// Without it (logs written before the salt; read only).
    Legacy,
}

fn frame_crc(salt: Salt, len: &[u8], payload: &[u8]) -> u32 {
    let crc = match salt {
        Salt::Gen(g) => crc32c::crc32c_append(crc32c::crc32c(&g.to_le_bytes()), len),
        Salt::Legacy => crc32c::crc32c(len),
    };
    crc32c::crc32c_append(crc, payload)
}

/// Append one frame of generation `gen` holding `payload`.
pub fn frame_into(out: &mut Vec<u8>, gen: u64, payload: &[u8]) {
    // Callers refuse a record that does not fit before it gets here (`Tablet::commit`); a
    // checkpoint re-frames only records that were committed. (So the length fits its u32.)
    assert!(record_fits(payload.len()), "a {}-byte record reached the log", payload.len());
    let len = u32::try_from(payload.len()).expect("a log record is shorter than 4 GiB").to_le_bytes();
    let start = out.len();
    let crc = frame_crc(Salt::Gen(gen), &len, payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    debug_assert_eq!(out.len() - start, FRAME_HEADER_BYTES + payload.len());
}

/// Parse generation `gen`'s frames from the start of `bytes`: every valid record with its
/// offset, and the length of the valid prefix.
pub fn read_frames(bytes: &[u8], gen: u64) -> (Vec<(u64, Record)>, u64) {
    read_frames_salted(bytes, gen, Salt::Gen(gen))
}

/// `read_frames` with the checksum salt given: `Salt::Legacy` reads a log from before the salt.
pub fn read_frames_salted(bytes: &[u8], gen: u64, salt: Salt) -> (Vec<(u64, Record)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER_BYTES {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let want = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
        if !record_fits(len) || bytes.len() - pos - FRAME_HEADER_BYTES < len {
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + len];
        let crc = frame_crc(salt, &bytes[pos..pos + 4], payload);
        if crc != want {
            break;
        }
        match Record::decode(payload, gen, pos as u64) {
            Ok(mut r) => {
                set_inline_pos(&mut r, gen, pos as u64, (FRAME_HEADER_BYTES + len) as u32);
                out.push((pos as u64, r))
            }
            Err(_) => break,
        }
        pos += FRAME_HEADER_BYTES + len;
    }
    // What was read from disk was checked above (a bad frame ends the log); these are ours.
    debug_assert!(pos <= bytes.len(), "the valid prefix lies inside what was read");
    debug_assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "frames are in log order");
    (out, pos as u64)
}

/// Point an inline object's location at where its frame sits in the log.
pub fn set_inline_pos(r: &mut Record, gen: u64, offset: u64, frame_len: u32) {
    if let Record::ObjectPut { meta, .. } = r {
        if let crate::record::DataLoc::Inline { gen: g, offset: o, len } = &mut meta.data {
            (*g, *o, *len) = (gen, offset, frame_len);
        }
    }
}

/// The inline bytes of the object whose whole frame is `frame` (as read back from a log of
/// checksum salt `salt`), checked against the frame's checksum and the expected size.
pub fn inline_bytes(frame: &[u8], salt: Salt, size: u64) -> Result<Vec<u8>> {
    let (mut recs, _) = read_frames_salted(frame, 0, salt);
    match recs.pop() {
        Some((_, Record::ObjectPut { inline, .. })) if inline.len() as u64 == size && recs.is_empty() => Ok(inline),
        _ => Err(StorageError::Corrupt(
            "inline object's log record fails its checksum or does not match its index entry".into(),
        )
        .into()),
    }
}

/// What recovery found for one tablet.
pub struct RecoveredLog {
    pub gen: u64,
    pub records: Vec<(u64, Record)>,
    /// Every mirror file of that generation (devices that had it), for reading inline data.
    pub files: Vec<(u16, PathBuf)>,
    /// How its frames are checksummed.
    pub salt: Salt,
}

/// Scan every device for this tablet's log generations and pick what to replay.
pub fn recover(devs: &[Option<PathBuf>], tablet: u32, set_id: u128) -> Result<Option<RecoveredLog>> {
    // (gen, record count, records, salt)
    type Candidate = (u64, usize, Vec<(u64, Record)>, Salt);
    let mut best: Option<Candidate> = None;
    let mut by_gen = generation_files(devs, tablet);
    // The mirrors whose header and `CheckpointEnd` check: only those are read later (another
    // file of the same number, abandoned by a crash, may hold other bytes at the same offsets).
    let mut complete_files: Vec<(u64, u16, PathBuf)> = Vec::new();
    by_gen.sort_by_key(|g| std::cmp::Reverse(g.0));
    for (gen, dev, path) in &by_gen {
        if best.as_ref().is_some_and(|b| b.0 > *gen) {
            break;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot read log {}: {e}", path.display());
                continue;
            }
        };
        let header_ok = |recs: &[(u64, Record)]| matches!(recs.first(), Some((_, Record::Header { tablet: t, gen: g, set_id: id })) if *t == tablet && *g == *gen && *id == set_id);
        // Salted first; a log from before the salt has a header that checks only unsalted.
        // (A recycled file not yet rewritten holds an older generation's header: neither.)
        let (mut recs, _) = read_frames(&bytes, *gen);
        let mut salt = Salt::Gen(*gen);
        if !header_ok(&recs) {
            (recs, _) = read_frames_salted(&bytes, *gen, Salt::Legacy);
            salt = Salt::Legacy;
        }
        let complete = recs.iter().any(|(_, r)| matches!(r, Record::CheckpointEnd));
        if !header_ok(&recs) || !complete {
            continue;
        }
        complete_files.push((*gen, *dev, path.clone()));
        let n = recs.len();
        if best.as_ref().is_none_or(|b| b.0 < *gen || b.1 < n) {
            best = Some((*gen, n, recs, salt));
        }
    }
    Ok(best.map(|(gen, _, records, salt)| {
        let files = complete_files.iter().filter(|(g, _, _)| *g == gen).map(|(_, d, p)| (*d, p.clone())).collect();
        RecoveredLog { gen, records, files, salt }
    }))
}

/// Every log generation file of this tablet on `devs`: (generation, device, path).
fn generation_files(devs: &[Option<PathBuf>], tablet: u32) -> Vec<(u64, u16, PathBuf)> {
    let mut out = Vec::new();
    for (i, dev) in devs.iter().enumerate() {
        let Some(dev) = dev else { continue };
        let Ok(rd) = std::fs::read_dir(tablet_dir(dev, tablet)) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(gen) =
                name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")).and_then(|s| s.parse::<u64>().ok())
            {
                out.push((gen, i as u16, e.path()));
            }
        }
    }
    out
}

/// The highest generation number of any log file of this tablet on `devs`, complete or not.
/// A start numbers its new generation above it: a checkpoint that a crash cut short may have
/// left a file one above the recovered generation on a device that is not a mirror now, and
/// reusing that number would leave two different files of one generation.
pub fn max_generation(devs: &[Option<PathBuf>], tablet: u32) -> u64 {
    generation_files(devs, tablet).iter().map(|(g, _, _)| *g).max().unwrap_or(0)
}

/// Write a whole new generation (checkpoint) to `mirrors` and make it durable; returns the
/// paths written. Older generations are removed afterwards by the caller. Blocking I/O: only
/// at start-up, before the core serves anything (at run time `write_generation_async`).
///
/// On failure the error names the device that failed, and the files of this generation
/// already written elsewhere are removed again: a complete newer generation left behind would
/// win over the old one at recovery, although the old one goes on taking appends.
pub fn write_generation(
    mirrors: &[(u16, PathBuf)],
    tablet: u32,
    gen: u64,
    bytes: &[u8],
) -> std::result::Result<Vec<(u16, PathBuf)>, (u16, Error)> {
    let mut out: Vec<(u16, PathBuf)> = Vec::new();
    for (dev, dir) in mirrors {
        if let Err(e) = write_one(dir, tablet, gen, bytes) {
            remove_generation(&out);
            return Err((*dev, e));
        }
        out.push((*dev, wal_path(dir, tablet, gen)));
    }
    Ok(out)
}

fn write_one(dir: &Path, tablet: u32, gen: u64, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let p = wal_path(dir, tablet, gen);
    // Never creates a missing device directory (a failed device must stay visibly failed).
    let sd = crate::segment::ensure_tablet_dir(dir, tablet)?;
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&p).map_err(|e| io_at(&p, e))?;
    f.write_all(bytes).map_err(|e| io_at(&p, e))?;
    // Zero-fill the space appends will use: overwriting written blocks lets fdatasync skip
    // the journal commit that growing a file (or converting unwritten extents) needs. The
    // zeros read back as an invalid frame, so recovery stops there.
    let zeros = vec![0u8; 1 << 20];
    let mut left = WAL_PREALLOC_BYTES.saturating_sub(bytes.len() as u64);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(|e| io_at(&p, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| io_at(&p, e))?;
    crate::io::drop_cached(&f);
    crate::superblock::sync_dir(&sd)
}

/// `write_generation` on the core's event loop (io_uring), the mirrors in parallel: the core
/// goes on serving other tablets and reads while a checkpoint is written. No zero-fill: on a
/// device in `spares` the tablet's spare file (a retired generation, see `Salt`) is renamed and
/// rewritten, so the appends that follow overwrite its blocks; elsewhere the appends grow the
/// file. Returns the files written and how many of them were recycled spares.
pub async fn write_generation_async(
    blocking: &Blocking,
    mirrors: &[(u16, PathBuf)],
    tablet: u32,
    gen: u64,
    bytes: bytes::Bytes,
    spares: &[(u16, PathBuf)],
) -> std::result::Result<(Vec<(u16, PathBuf)>, usize), (u16, Error)> {
    let writes = mirrors.iter().map(|(dev, dir)| {
        let bytes = bytes.clone();
        let spare = spares.iter().find(|(d, _)| d == dev).map(|(_, p)| p.as_path());
        async move { (*dev, write_one_async(blocking, dir, tablet, gen, bytes, spare).await) }
    });
    let results = futures::future::join_all(writes).await;
    let mut out = Vec::new();
    let mut recycled = 0;
    let mut first_err = None;
    for ((_, dir), (dev, r)) in mirrors.iter().zip(results) {
        match r {
            Ok(reused) => {
                recycled += reused as usize;
                out.push((dev, wal_path(dir, tablet, gen)));
            }
            Err(e) => {
                first_err.get_or_insert((dev, e));
            }
        }
    }
    if let Some(err) = first_err {
        remove_generation_off_core(blocking, out).await;
        return Err(err);
    }
    Ok((out, recycled))
}

/// Bytes of a new generation in one O_DIRECT write: small enough that a group commit's flush
/// on the same device never queues behind much of a checkpoint, large enough to stream.
pub const GENERATION_WRITE_BYTES: usize = 1 << 20;
// Each O_DIRECT write of a new generation starts where the previous one ended.
const _: () = assert!(GENERATION_WRITE_BYTES.is_multiple_of(crate::util::ALIGN_BYTES), "O_DIRECT writes stay aligned");

/// The file a tablet keeps on a device for its next generation there to reuse (see `Salt`):
/// recovery never reads it (its name holds no generation).
pub fn spare_path(dev: &Path, tablet: u32) -> PathBuf {
    tablet_dir(dev, tablet).join("wal-spare.log")
}

/// Write one mirror of a new generation, durably (file and directory entry). With `spare`,
/// that file is renamed to the generation's name and overwritten from the start, its size
/// kept (the bytes past the new content are older frames that fail this generation's salt).
/// Returns whether the spare was used.
async fn write_one_async(
    blocking: &Blocking,
    dir: &Path,
    tablet: u32,
    gen: u64,
    bytes: bytes::Bytes,
    spare: Option<&Path>,
) -> Result<bool> {
    let p = wal_path(dir, tablet, gen);
    let sd = crate::segment::tablet_dir(dir, tablet);
    // The directory check, the rename, the opens: blocking calls, on a helper thread. The
    // writes and the flushes go through the ring.
    let (direct, buffered, dirf, recycled) = {
        let (dir, p, spare) = (dir.to_path_buf(), p.clone(), spare.map(Path::to_path_buf));
        blocking
            .run(move || {
                let sd = crate::segment::ensure_tablet_dir(&dir, tablet)?;
                let recycled =
                    spare.is_some_and(|sp| sp.parent() == Some(sd.as_path()) && std::fs::rename(&sp, &p).is_ok());
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create(true).truncate(!recycled);
                let direct = {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut od = o.clone();
                    od.custom_flags(libc::O_DIRECT);
                    od.open(&p)
                };
                let buffered = match &direct {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Some(o.open(&p).map_err(|e| io_at(&p, e))?),
                    _ => None,
                };
                let dirf = std::fs::File::open(&sd).map_err(|e| io_at(&sd, e))?;
                Ok((direct, buffered, dirf, recycled))
            })
            .await?
    };
    match direct {
        Ok(f) => {
            // O_DIRECT, one bounded write at a time: no page-cache copy and no writeback
            // burst for the commits' flushes to wait behind, and nothing cached for the
            // appends to invalidate. The last block is padded with zeros, which read back as
            // the end of the log.
            let f = DevFile::from_std(f, &p, true)?;
            let mut buf = crate::buf::AlignedBuf::alloc(GENERATION_WRITE_BYTES);
            let mut pos = 0usize;
            while pos < bytes.len() {
                let n = (bytes.len() - pos).min(GENERATION_WRITE_BYTES);
                buf.clear();
                buf.extend_from(&bytes[pos..pos + n]);
                buf.resize_zeroed(n.div_ceil(crate::util::ALIGN_BYTES) * crate::util::ALIGN_BYTES);
                let (r, b) = f.write_at(buf, pos as u64).await;
                r?;
                buf = b;
                pos += n;
            }
            f.sync_data().await?;
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let f = buffered.ok_or_else(|| io_at(&p, e))?;
            let f = DevFile::from_std(f, &p, false)?;
            f.write_buf_at(bytes, 0).await?;
            f.sync_data().await?;
            f.drop_cached();
        }
        Err(e) => return Err(io_at(&p, e)),
    }
    DevFile::from_std(dirf, &sd, false)?.sync_all().await?;
    Ok(recycled)
}

/// `remove_generation` on a helper thread, awaited: callers go on only once the files are
/// gone (a complete generation left behind would win at recovery). Inline if the helpers
/// have stopped (the engine is shutting down), so the removal is never skipped.
pub async fn remove_generation_off_core(blocking: &Blocking, files: Vec<(u16, PathBuf)>) {
    if files.is_empty() {
        return;
    }
    let again = files.clone();
    if blocking
        .run(move || {
            remove_generation(&files);
            Ok(())
        })
        .await
        .is_err()
    {
        remove_generation(&again);
    }
}

/// Remove a generation's files durably (a complete generation left behind the log's back
/// would win over the one in use at recovery).
pub fn remove_generation(files: &[(u16, PathBuf)]) {
    for (_, p) in files {
        let _ = std::fs::remove_file(p);
        if let Some(d) = p.parent() {
            let _ = crate::superblock::sync_dir(d);
        }
    }
}

/// Remove every generation older than `keep` of this tablet on every device (not the spare
/// files: see `remove_spares`).
pub fn remove_older(devs: &[Option<PathBuf>], tablet: u32, keep: u64) {
    for (gen, _, path) in generation_files(devs, tablet) {
        if gen < keep {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Remove this tablet's spare files on every device (at start: a tablet begins with none).
pub fn remove_spares(devs: &[Option<PathBuf>], tablet: u32) {
    for dev in devs.iter().flatten() {
        let _ = std::fs::remove_file(spare_path(dev, tablet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut_at_the_first_bad_frame() {
        let mut log = Vec::new();
        for i in 0..5u64 {
            frame_into(&mut log, 1, &Record::BucketCreate { name: format!("b{i}"), created_ms: i }.encode());
        }
        let (all, len) = read_frames(&log, 1);
        assert_eq!(all.len(), 5);
        assert_eq!(len as usize, log.len());
        for cut in 0..log.len() {
            let (recs, valid) = read_frames(&log[..cut], 1);
            assert!(recs.len() < 5 && valid as usize <= cut);
        }
        let mut flipped = log.clone();
        let third = all[2].0 as usize + 10;
        flipped[third] ^= 1;
        assert_eq!(read_frames(&flipped, 1).0.len(), 2);
    }

    fn bucket(i: u64) -> Record {
        Record::BucketCreate { name: format!("b{i}"), created_ms: i }
    }

    /// A generation's file: header, `n` bucket records, CheckpointEnd, framed for `gen` (or
    /// the legacy way, without the salt).
    fn generation(gen: u64, n: u64, legacy: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |r: Record| {
            let payload = r.encode();
            if legacy {
                let len = (payload.len() as u32).to_le_bytes();
                out.extend_from_slice(&len);
                out.extend_from_slice(&frame_crc(Salt::Legacy, &len, &payload).to_le_bytes());
                out.extend_from_slice(&payload);
            } else {
                frame_into(&mut out, gen, &payload);
            }
        };
        push(Record::Header { tablet: 0, gen, set_id: 7 });
        for i in 0..n {
            push(bucket(i));
        }
        push(Record::CheckpointEnd);
        out
    }

    #[test]
    fn a_frame_is_valid_only_in_its_own_generation() {
        let mut log = Vec::new();
        frame_into(&mut log, 5, &bucket(1).encode());
        assert_eq!(read_frames(&log, 5).0.len(), 1);
        assert!(read_frames(&log, 6).0.is_empty(), "gen 5's frame read as gen 6's");
        assert!(read_frames(&log, 4).0.is_empty(), "gen 5's frame read as gen 4's");
        assert!(read_frames_salted(&log, 5, Salt::Legacy).0.is_empty(), "a salted frame read as legacy");
    }

    #[test]
    fn a_recycled_file_ends_where_its_own_generation_ends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tablet_dir(dir.path(), 0)).unwrap();
        // Generation 9 written over generation 7's longer file: 7's frames follow 9's.
        let mut bytes = generation(9, 2, false);
        let stale = generation(7, 50, false);
        bytes.extend_from_slice(&stale[bytes.len()..]);
        std::fs::write(wal_path(dir.path(), 0, 9), &bytes).unwrap();
        let got = recover(&[Some(dir.path().to_path_buf())], 0, 7).unwrap().expect("generation 9 recovers");
        assert_eq!((got.gen, got.salt), (9, Salt::Gen(9)));
        assert_eq!(got.records.len(), 4, "only generation 9's header, 2 records and end");
        // Renamed for reuse but not yet rewritten: a complete generation 7 under 9's name is
        // no generation 9 at all.
        std::fs::write(wal_path(dir.path(), 0, 9), &stale).unwrap();
        assert!(recover(&[Some(dir.path().to_path_buf())], 0, 7).unwrap().is_none());
    }

    #[test]
    fn an_abandoned_file_of_the_recovered_generation_is_never_read_and_never_renumbered_over() {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        for d in &dirs {
            std::fs::create_dir_all(tablet_dir(d.path(), 0)).unwrap();
        }
        // Device 0: generation 5 cut short by a crash (header and records, no end), its
        // inline bytes at the same offsets as device 1's complete generation 5.
        let complete = generation(5, 3, false);
        let end_frame = FRAME_HEADER_BYTES + Record::CheckpointEnd.encode().len();
        std::fs::write(wal_path(dirs[0].path(), 0, 5), &complete[..complete.len() - end_frame]).unwrap();
        std::fs::write(wal_path(dirs[1].path(), 0, 5), &complete).unwrap();
        // And a generation 6 that never got its end (a checkpoint a crash abandoned).
        std::fs::write(wal_path(dirs[0].path(), 0, 6), generation(6, 1, false).split_last().unwrap().1).unwrap();
        let devs: Vec<Option<PathBuf>> = dirs.iter().map(|d| Some(d.path().to_path_buf())).collect();
        let got = recover(&devs, 0, 7).unwrap().expect("generation 5 recovers");
        assert_eq!(got.gen, 5);
        assert_eq!(got.files, vec![(1, wal_path(dirs[1].path(), 0, 5))], "only the complete mirror is read");
        // The next generation is numbered above every file on disk, complete or not.
        assert_eq!(max_generation(&devs, 0), 6);
    }

    #[test]
    fn a_log_from_before_the_salt_still_recovers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tablet_dir(dir.path(), 0)).unwrap();
        let bytes = generation(3, 5, true);
        std::fs::write(wal_path(dir.path(), 0, 3), &bytes).unwrap();
        let got = recover(&[Some(dir.path().to_path_buf())], 0, 7).unwrap().expect("legacy generation recovers");
        assert_eq!((got.gen, got.salt, got.records.len()), (3, Salt::Legacy, 7));
        // Its inline frames are checked the same way.
        let (_, r) = &got.records[1];
        assert_eq!(r, &bucket(0));
        let frame = &bytes[got.records[1].0 as usize..got.records[2].0 as usize];
        assert_eq!(read_frames_salted(frame, 3, Salt::Legacy).0.len(), 1);
        assert!(read_frames(frame, 3).0.is_empty());
    }
}

#[cfg(test)]
mod record_size {
    use super::*;
    use crate::record::{DataLoc, ObjectMeta, PartLayout, ShardLoc};

    /// A multipart object's record with `parts` parts of `stripes` stripes each at 4+2.
    fn huge_object(parts: usize, stripes: usize) -> Record {
        let chunk = 64 << 10;
        let layout = PartLayout {
            size: stripes as u64 * 4 * chunk as u64,
            chunk_bytes: chunk,
            k: 4,
            m: 2,
            devices: (0..6).collect(),
            shards: (0..stripes * 6).map(|i| ShardLoc { seg: i as u32, block: 7, crc: 9 }).collect(),
            md5: [1; 16],
        };
        let meta = ObjectMeta {
            size: layout.size * parts as u64,
            md5: [2; 16],
            parts_count: parts as u32,
            mtime_ms: 1,
            headers: None,
            data: DataLoc::Parts(vec![layout; parts].into_boxed_slice()),
        };
        Record::ObjectPut { bucket: "b".into(), key: "k".into(), meta, inline: Vec::new(), completes: Some("u".into()) }
    }

    #[test]
    fn what_the_writer_accepts_the_reader_replays_and_what_it_cannot_it_refuses() {
        // About 36 MB (a 122 GiB object at 64 KiB chunks): more than a generation's
        // preallocation, within a frame's limit. It is framed, and replay returns it whole (the
        // reader's bound is the writer's).
        let big = huge_object(25, 20_000);
        let payload = big.encode();
        assert!(payload.len() > WAL_PREALLOC_BYTES as usize && record_fits(payload.len()), "{}", payload.len());
        let mut log = Vec::new();
        frame_into(&mut log, 3, &bucket_rec().encode());
        frame_into(&mut log, 3, &payload);
        frame_into(&mut log, 3, &bucket_rec().encode());
        let (recs, valid) = read_frames(&log, 3);
        assert_eq!(recs.len(), 3, "a record the writer framed must replay");
        assert_eq!(valid as usize, log.len());
        let Record::ObjectPut { meta, .. } = &recs[1].1 else { panic!("{:?}", recs[1].1) };
        let Record::ObjectPut { meta: want, .. } = &big else { unreachable!() };
        assert_eq!(meta.data, want.data);

        // About 72 MB (a 244 GiB object at 64 KiB chunks; the limit is near 227 GiB): it cannot be framed, so
        // `Tablet::commit` must refuse it before anything is queued or acknowledged.
        let too_big = huge_object(50, 20_000).encode();
        assert!(!record_fits(too_big.len()), "{}", too_big.len());
    }

    #[test]
    #[should_panic(expected = "reached the log")]
    fn framing_a_record_over_the_limit_is_a_programmer_error() {
        let mut log = Vec::new();
        frame_into(&mut log, 1, &vec![0u8; MAX_RECORD_BYTES + 1]);
    }

    fn bucket_rec() -> Record {
        Record::BucketCreate { name: "bkt".into(), created_ms: 5 }
    }
}
