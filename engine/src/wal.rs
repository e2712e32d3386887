//! The per-shard metadata write-ahead log: framing, mirrored generations, recovery.
//!
//! A frame is `[len: u32][crc32c(len ++ payload): u32][payload]`. A generation file starts with
//! a checkpoint (a `Header`, the live state, `CheckpointEnd`) and continues with appended
//! records. Recovery takes the newest generation with a complete checkpoint and, among its
//! mirrors, the longest valid prefix; the first bad frame ends the log (a torn tail).

use crate::error::{io_at, Error, Result};
use crate::io::DevFile;
use crate::record::Record;
use crate::segment::shard_dir;
use std::path::{Path, PathBuf};

pub const FRAME_HEADER_BYTES: usize = 8;
/// Each log generation is zero-filled to this size when written (see `write_generation`).
pub const WAL_PREALLOC_BYTES: u64 = 32 << 20;
/// A frame larger than this is treated as corruption (inline objects and multipart records
/// of 10,000 parts stay well below it).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

pub fn wal_path(dev: &Path, shard: u32, gen: u64) -> PathBuf {
    shard_dir(dev, shard).join(format!("wal-{gen:010}.log"))
}

pub fn frame_into(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parse frames from the start of `bytes`: every valid record with its offset, and the length
/// of the valid prefix.
pub fn read_frames(bytes: &[u8], gen: u64) -> (Vec<(u64, Record)>, u64) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEADER_BYTES {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let want = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
        if len > MAX_RECORD_BYTES || bytes.len() - pos - FRAME_HEADER_BYTES < len {
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + len];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[pos..pos + 4]), payload);
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

/// The inline bytes of the object whose whole frame is `frame` (as read back from the log),
/// checked against the frame's checksum and the expected size.
pub fn inline_bytes(frame: &[u8], size: u64) -> Result<Vec<u8>> {
    let (mut recs, _) = read_frames(frame, 0);
    match recs.pop() {
        Some((_, Record::ObjectPut { inline, .. })) if inline.len() as u64 == size && recs.is_empty() => Ok(inline),
        _ => Err(Error::Corrupt(
            "inline object's log record fails its checksum or does not match its index entry".into(),
        )),
    }
}

/// What recovery found for one shard.
pub struct RecoveredLog {
    pub gen: u64,
    pub records: Vec<(u64, Record)>,
    /// Every mirror file of that generation (devices that had it), for reading inline data.
    pub files: Vec<(u16, PathBuf)>,
}

/// Scan every device for this shard's log generations and pick what to replay.
pub fn recover(devs: &[Option<PathBuf>], shard: u32, set_id: u128) -> Result<Option<RecoveredLog>> {
    // (gen, dev, path, records)
    type Candidate = (u64, usize, Vec<(u64, Record)>);
    let mut best: Option<Candidate> = None;
    let mut by_gen: Vec<(u64, u16, PathBuf)> = Vec::new();
    for (i, dev) in devs.iter().enumerate() {
        let Some(dev) = dev else { continue };
        let dir = shard_dir(dev, shard);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Some(gen) =
                name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")).and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            by_gen.push((gen, i as u16, e.path()));
        }
    }
    by_gen.sort_by_key(|g| std::cmp::Reverse(g.0));
    for (gen, _dev, path) in &by_gen {
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
        let (recs, _) = read_frames(&bytes, *gen);
        let header_ok = matches!(recs.first(), Some((_, Record::Header { shard: s, gen: g, set_id: id })) if *s == shard && *g == *gen && *id == set_id);
        let complete = recs.iter().any(|(_, r)| matches!(r, Record::CheckpointEnd));
        if !header_ok || !complete {
            continue;
        }
        let n = recs.len();
        if best.as_ref().is_none_or(|b| b.0 < *gen || b.1 < n) {
            best = Some((*gen, n, recs));
        }
    }
    Ok(best.map(|(gen, _, records)| {
        let files = by_gen.iter().filter(|(g, _, _)| *g == gen).map(|(_, d, p)| (*d, p.clone())).collect();
        RecoveredLog { gen, records, files }
    }))
}

/// Write a whole new generation (checkpoint) to `mirrors` and make it durable; returns the
/// paths written. Older generations are removed afterwards by the caller.
///
/// On failure the error names the device that failed, and the files of this generation
/// already written elsewhere are removed again: a complete newer generation left behind would
/// win over the old one at recovery, although the old one goes on taking appends.
pub fn write_generation(
    mirrors: &[(u16, PathBuf)],
    shard: u32,
    gen: u64,
    bytes: &[u8],
) -> std::result::Result<Vec<(u16, PathBuf)>, (u16, Error)> {
    let mut out: Vec<(u16, PathBuf)> = Vec::new();
    for (dev, dir) in mirrors {
        if let Err(e) = write_one(dir, shard, gen, bytes) {
            for (_, p) in &out {
                let _ = std::fs::remove_file(p);
                if let Some(d) = p.parent() {
                    let _ = crate::superblock::sync_dir(d);
                }
            }
            return Err((*dev, e));
        }
        out.push((*dev, wal_path(dir, shard, gen)));
    }
    Ok(out)
}

fn write_one(dir: &Path, shard: u32, gen: u64, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let p = wal_path(dir, shard, gen);
    // Never creates a missing device directory (a failed device must stay visibly failed).
    let sd = crate::segment::ensure_shard_dir(dir, shard)?;
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
/// goes on serving other shards and reads while a checkpoint is written. No zero-fill: the
/// appends that follow grow the file (on a machine whose disk bandwidth is the limit, writing
/// zeros ahead cost more than the journal commits of growing writes save; measured in
/// docs/BENCHMARKS.md).
pub async fn write_generation_async(
    mirrors: &[(u16, PathBuf)],
    shard: u32,
    gen: u64,
    bytes: bytes::Bytes,
) -> std::result::Result<Vec<(u16, PathBuf)>, (u16, Error)> {
    let writes = mirrors.iter().map(|(dev, dir)| {
        let bytes = bytes.clone();
        async move { (*dev, write_one_async(dir, shard, gen, bytes).await) }
    });
    let results = futures::future::join_all(writes).await;
    let mut out = Vec::new();
    let mut first_err = None;
    for ((_, dir), (dev, r)) in mirrors.iter().zip(results) {
        match r {
            Ok(()) => out.push((dev, wal_path(dir, shard, gen))),
            Err(e) => {
                first_err.get_or_insert((dev, e));
            }
        }
    }
    if let Some(err) = first_err {
        // A complete newer generation left behind would win over the old one at recovery.
        for (_, p) in &out {
            let _ = std::fs::remove_file(p);
            if let Some(d) = p.parent() {
                let _ = crate::superblock::sync_dir(d);
            }
        }
        return Err(err);
    }
    Ok(out)
}

async fn write_one_async(dir: &Path, shard: u32, gen: u64, bytes: bytes::Bytes) -> Result<()> {
    let p = wal_path(dir, shard, gen);
    let sd = crate::segment::ensure_shard_dir(dir, shard)?;
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&p).map_err(|e| io_at(&p, e))?;
    let f = DevFile::from_std(f, &p, false)?;
    f.write_buf_at(bytes, 0).await?;
    f.sync_data().await?;
    f.drop_cached();
    let d = std::fs::File::open(&sd).map_err(|e| io_at(&sd, e))?;
    DevFile::from_std(d, &sd, false)?.sync_all().await
}

/// Remove every generation older than `keep` of this shard on every device.
pub fn remove_older(devs: &[Option<PathBuf>], shard: u32, keep: u64) {
    for dev in devs.iter().flatten() {
        let dir = shard_dir(dev, shard);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(gen) =
                name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")).and_then(|s| s.parse::<u64>().ok())
            {
                if gen < keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut_at_the_first_bad_frame() {
        let mut log = Vec::new();
        for i in 0..5u64 {
            frame_into(&mut log, &Record::BucketCreate { name: format!("b{i}"), created_ms: i }.encode());
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
}
