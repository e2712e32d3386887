//! The raw baseline: O_DIRECT sequential writes then reads of plain files in the same device
//! directories the engine uses, 1 MiB aligned buffers, all devices in parallel. What the disk
//! gives with no engine in the way, so engine rates can be read as a fraction of it.

use engine::buf::AlignedBuf;
use serde::Serialize;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bytes per write or read call.
pub const RAW_IO_BYTES: usize = 1 << 20;
const RAW_FILE_PREFIX: &str = "raw-bench-";

#[derive(Debug, Clone, Serialize)]
pub struct RawResult {
    pub devices: usize,
    /// Files written and read at once per device (sequential each, one I/O in flight each).
    pub streams_per_device: usize,
    pub bytes_per_device: u64,
    pub write_secs: f64,
    pub read_secs: f64,
    /// Aggregate over all devices, MB = 10^6 bytes.
    pub write_mb_per_s: f64,
    pub read_mb_per_s: f64,
    /// Whether O_DIRECT was honoured (false: buffered I/O, numbers are page cache rates).
    pub direct: bool,
}

fn open(path: &Path, write: bool, direct: bool) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    if write {
        o.write(true).create(true).truncate(true);
    }
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn fallocate(f: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn direct_works(dir: &Path) -> bool {
    let p = dir.join(format!("{RAW_FILE_PREFIX}probe"));
    let ok = open(&p, true, true).is_ok();
    let _ = std::fs::remove_file(&p);
    ok
}

fn write_stream(path: &Path, bytes: u64, direct: bool, seed: u64) -> io::Result<()> {
    let f = open(path, true, direct)?;
    // Preallocated like the engine's segments, so both pay the same extent conversion.
    fallocate(&f, bytes)?;
    let mut buf = AlignedBuf::alloc(RAW_IO_BYTES);
    buf.resize_zeroed(RAW_IO_BYTES);
    // Incompressible, non-zero content (a virtual disk may special-case zero pages).
    let mut x = seed | 1;
    for w in buf.as_mut_slice().chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    let mut pos = 0;
    while pos < bytes {
        f.write_all_at(buf.as_slice(), pos)?;
        pos += RAW_IO_BYTES as u64;
    }
    f.sync_data()
}

fn read_stream(path: &Path, bytes: u64, direct: bool) -> io::Result<()> {
    let f = open(path, false, direct)?;
    let mut buf = AlignedBuf::alloc(RAW_IO_BYTES);
    buf.resize_zeroed(RAW_IO_BYTES);
    let mut pos = 0;
    while pos < bytes {
        f.read_exact_at(buf.as_mut_slice(), pos)?;
        pos += RAW_IO_BYTES as u64;
    }
    if !direct {
        // Buffered fallback: at least drop what we read so a rerun does not hit the cache.
        use std::os::fd::AsRawFd;
        // SAFETY: advisory syscall on an fd we own.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

/// Run `f(stream_path, index)` for every stream of every device at once; the elapsed seconds
/// until the last finishes.
fn parallel(paths: &[PathBuf], f: impl Fn(&Path, usize) -> io::Result<()> + Sync) -> io::Result<f64> {
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let f = &f;
                s.spawn(move || f(p, i))
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| io::Error::other("a raw I/O thread panicked"))??;
        }
        Ok(t0.elapsed().as_secs_f64())
    })
}

/// Write then read `bytes_per_device` on each of `dirs` (rounded up to whole 1 MiB I/Os),
/// split over `streams` files per device; the files are removed afterwards.
pub fn run(dirs: &[PathBuf], bytes_per_device: u64, streams: usize) -> io::Result<RawResult> {
    let streams = streams.max(1);
    let per_stream = (bytes_per_device / streams as u64).div_ceil(RAW_IO_BYTES as u64).max(1) * RAW_IO_BYTES as u64;
    let direct = dirs.iter().all(|d| direct_works(d));
    if !direct {
        eprintln!("warning: O_DIRECT refused in a device directory; raw figures are buffered I/O");
    }
    let paths: Vec<PathBuf> =
        dirs.iter().flat_map(|d| (0..streams).map(move |s| d.join(format!("{RAW_FILE_PREFIX}{s}.dat")))).collect();
    let result = (|| {
        let write_secs =
            parallel(&paths, |p, i| write_stream(p, per_stream, direct, 0x9e37_79b9_7f4a_7c15 ^ i as u64))?;
        let read_secs = parallel(&paths, |p, _| read_stream(p, per_stream, direct))?;
        let total = per_stream as f64 * paths.len() as f64;
        Ok(RawResult {
            devices: dirs.len(),
            streams_per_device: streams,
            bytes_per_device: per_stream * streams as u64,
            write_secs,
            read_secs,
            write_mb_per_s: total / 1e6 / write_secs,
            read_mb_per_s: total / 1e6 / read_secs,
            direct,
        })
    })();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    result
}
