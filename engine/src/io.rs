//! The engine's disk I/O boundary: every read, write and flush of device files goes through
//! `DevFile`, which takes our own buffers. Today it drives monoio (io_uring, or its epoll
//! fallback); keeping the surface this small lets the hot path move to raw io_uring later, and
//! gives fault injection one place to hook in.

use crate::buf::AlignedBuf;
use crate::error::{io_at, Result, StorageError};
use monoio::buf::IoBufMut;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use failpoints::{FailOp, Fault};

/// Fault injection for tests: failpoints keyed by a path prefix (a device directory), compiled
/// in always and off by default. When none is set, a check is one relaxed atomic load.
pub mod failpoints {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    /// The I/O a failpoint applies to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FailOp {
        Read,
        Write,
        Sync,
    }

    /// What happens to a matching I/O.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// The call fails with EIO and touches nothing.
        Error,
        /// Half of the buffer is written, then the call fails with EIO (writes only).
        ShortWrite,
        /// The call succeeds after this many milliseconds.
        LatencyMs(u64),
    }

    struct Point {
        prefix: PathBuf,
        op: FailOp,
        fault: Fault,
        /// Matching calls left before the point turns itself off (`None`: forever).
        remaining: Option<u64>,
    }

    static ANY: AtomicBool = AtomicBool::new(false);
    static POINTS: Mutex<Vec<Point>> = Mutex::new(Vec::new());

    /// Make every `op` on a file under `prefix` suffer `fault` (`times` calls, or forever).
    pub fn set(prefix: &Path, op: FailOp, fault: Fault, times: Option<u64>) {
        let mut p = POINTS.lock().unwrap_or_else(|e| e.into_inner());
        p.push(Point { prefix: prefix.to_path_buf(), op, fault, remaining: times });
        ANY.store(true, Ordering::Release);
    }

    /// Remove the failpoints under `prefix`.
    pub fn clear(prefix: &Path) {
        let mut p = POINTS.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|pt| !pt.prefix.starts_with(prefix) && !prefix.starts_with(&pt.prefix));
        ANY.store(!p.is_empty(), Ordering::Release);
    }

    /// Whether any failpoint is set (then every I/O goes through `hit`).
    pub(crate) fn armed() -> bool {
        ANY.load(Ordering::Acquire)
    }

    pub fn clear_all() {
        POINTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
        ANY.store(false, Ordering::Release);
    }

    pub(crate) fn eio() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EIO)
    }

    fn find(path: &Path, op: FailOp) -> Option<Fault> {
        if !ANY.load(Ordering::Acquire) {
            return None;
        }
        let mut p = POINTS.lock().unwrap_or_else(|e| e.into_inner());
        let i = p.iter().position(|pt| pt.op == op && path.starts_with(&pt.prefix))?;
        let fault = p[i].fault;
        if let Some(n) = p[i].remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.remove(i);
            }
        }
        Some(fault)
    }

    /// The fault for this call, if any. Latency is served here (the call then proceeds), so
    /// callers only see `Error` and `ShortWrite`.
    pub(crate) async fn hit(path: &Path, op: FailOp) -> Option<Fault> {
        match find(path, op)? {
            Fault::LatencyMs(ms) => {
                monoio::time::sleep(std::time::Duration::from_millis(ms)).await;
                None
            }
            f => Some(f),
        }
    }
}

pub struct DevFile {
    file: monoio::fs::File,
    path: PathBuf,
    direct: bool,
}

impl DevFile {
    /// Open (or create) a file; with `direct` it is opened O_DIRECT.
    pub fn open_std(path: &Path, create: bool, direct: bool) -> Result<std::fs::File> {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create(create);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(path).map_err(|e| io_at(path, e))
    }

    pub fn from_std(f: std::fs::File, path: &Path, direct: bool) -> Result<DevFile> {
        let file = monoio::fs::File::from_std(f).map_err(|e| io_at(path, e))?;
        Ok(DevFile { file, path: path.to_path_buf(), direct })
    }

    pub fn open(path: &Path, create: bool, direct: bool) -> Result<DevFile> {
        Self::from_std(Self::open_std(path, create, direct)?, path, direct)
    }

    /// Open an existing file O_DIRECT|O_DSYNC (every write is durable when it completes:
    /// with a volatile write cache the kernel follows it with a flush, or writes it FUA).
    /// `None` if the filesystem refuses O_DIRECT.
    pub fn open_dsync(path: &Path) -> Result<Option<DevFile>> {
        match Self::open_dsync_std(path)? {
            Some(f) => Self::from_std(f, path, true).map(Some),
            None => Ok(None),
        }
    }

    /// The open of `open_dsync` alone (a blocking call, for a helper thread at run time).
    pub fn open_dsync_std(path: &Path) -> Result<Option<std::fs::File>> {
        let f =
            std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC).open(path);
        match f {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(io_at(path, e)),
        }
    }

    /// Write and make durable in one I/O (a file from `open_dsync`). The second value says
    /// whether the failure counts as a failed flush (the sync failpoints apply here too, since
    /// this write is also the flush).
    pub async fn write_dsync_at(&self, buf: crate::buf::SharedBuf, pos: u64) -> (Result<()>, bool) {
        if failpoints::hit(&self.path, FailOp::Sync).await.is_some() {
            return (Err(io_at(&self.path, failpoints::eio())), true);
        }
        (self.write_at(buf, pos).await.0, false)
    }

    /// See [`drop_cached`].
    pub fn drop_cached(&self) {
        drop_cached(&self.file);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Write the whole buffer at `pos` (4 KiB-aligned position and length under O_DIRECT).
    pub async fn write_at<B>(&self, buf: B, pos: u64) -> (Result<()>, B)
    where
        B: monoio::buf::IoBuf + AsRef<[u8]>,
    {
        debug_assert!(
            !self.direct || (pos.is_multiple_of(4096) && buf.as_ref().len().is_multiple_of(4096)),
            "unaligned O_DIRECT write"
        );
        match failpoints::hit(&self.path, FailOp::Write).await {
            Some(Fault::Error) => return (Err(io_at(&self.path, failpoints::eio())), buf),
            Some(Fault::ShortWrite) => {
                // Half the buffer (4 KiB-aligned) reaches the file, then the write fails.
                let half = (buf.as_ref().len() / 2) & !4095;
                if half > 0 {
                    let mut part = AlignedBuf::alloc(half);
                    part.extend_from(&buf.as_ref()[..half]);
                    let _ = self.file.write_all_at(part, pos).await;
                }
                return (Err(io_at(&self.path, failpoints::eio())), buf);
            }
            _ => {}
        }
        let (r, buf) = self.file.write_all_at(buf, pos).await;
        (r.map_err(|e| io_at(&self.path, e)), buf)
    }

    /// Read exactly `len` bytes at `pos` into `buf` (whose length becomes `len`).
    pub async fn read_at(&self, mut buf: AlignedBuf, pos: u64, len: usize) -> (Result<()>, AlignedBuf) {
        if len > buf.capacity() {
            return (Err(StorageError::Io(format!("read of {len} bytes exceeds buffer")).into()), buf);
        }
        buf.clear();
        if failpoints::hit(&self.path, FailOp::Read).await.is_some() {
            return (Err(io_at(&self.path, failpoints::eio())), buf);
        }
        let (r, slice) = self.file.read_exact_at(buf.slice_mut(0..len), pos).await;
        let mut buf = slice.into_inner();
        match r {
            Ok(()) => {
                // SAFETY: read_exact_at filled `len` bytes.
                unsafe { monoio::buf::IoBufMut::set_init(&mut buf, len) };
                (Ok(()), buf)
            }
            Err(e) => (Err(io_at(&self.path, e)), buf),
        }
    }

    pub async fn write_vec_at(&self, v: Vec<u8>, pos: u64) -> Result<()> {
        self.write_buf_at(v, pos).await
    }

    /// Write a whole buffered (non-O_DIRECT) buffer at `pos`.
    pub async fn write_buf_at<B: monoio::buf::IoBuf + AsRef<[u8]>>(&self, v: B, pos: u64) -> Result<()> {
        match failpoints::hit(&self.path, FailOp::Write).await {
            Some(Fault::Error) => return Err(io_at(&self.path, failpoints::eio())),
            Some(Fault::ShortWrite) => {
                let half = v.as_ref()[..v.as_ref().len() / 2].to_vec();
                let _ = self.file.write_all_at(half, pos).await;
                return Err(io_at(&self.path, failpoints::eio()));
            }
            _ => {}
        }
        let (r, _) = self.file.write_all_at(v, pos).await;
        r.map_err(|e| io_at(&self.path, e))
    }

    pub async fn read_vec_at(&self, len: usize, pos: u64) -> Result<Vec<u8>> {
        if failpoints::hit(&self.path, FailOp::Read).await.is_some() {
            return Err(io_at(&self.path, failpoints::eio()));
        }
        if let Some(v) = self.read_cached_at(len, pos) {
            return Ok(v);
        }
        let v = Vec::with_capacity(len);
        let (r, v) = self.file.read_exact_at(v, pos).await;
        r.map_err(|e| io_at(&self.path, e))?;
        Ok(v)
    }

    /// The bytes at `pos` if the page cache holds all of them: a `preadv2(RWF_NOWAIT)` that
    /// copies without blocking, or `None` (not cached, a short read, an old kernel) so the
    /// caller submits the read to the ring. A cached read through io_uring would cost a loop
    /// turn and often a hand-off to a kernel worker thread; this is a memcpy.
    /// Failpoints and O_DIRECT files always take the ring.
    pub fn read_cached_at(&self, len: usize, pos: u64) -> Option<Vec<u8>> {
        if self.direct || failpoints::armed() {
            return None;
        }
        let mut v: Vec<u8> = Vec::with_capacity(len);
        let iov = libc::iovec { iov_base: v.as_mut_ptr().cast(), iov_len: len };
        let off = libc::off_t::try_from(pos).ok()?;
        // SAFETY: the iovec points at `len` bytes of `v`'s spare capacity, which outlives the
        // call; the fd is this file's, open for reading.
        let n = unsafe { libc::preadv2(self.file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
        if n < 0 || n as usize != len {
            return None;
        }
        // SAFETY: the kernel initialised exactly `len` bytes.
        unsafe { v.set_len(len) };
        Some(v)
    }

    /// fsync (data and metadata; also for a directory opened with `from_std`).
    pub async fn sync_all(&self) -> Result<()> {
        if failpoints::hit(&self.path, FailOp::Sync).await.is_some() {
            return Err(io_at(&self.path, failpoints::eio()));
        }
        self.file.sync_all().await.map_err(|e| io_at(&self.path, e))
    }

    pub async fn sync_data(&self) -> Result<()> {
        if failpoints::hit(&self.path, FailOp::Sync).await.is_some() {
            return Err(io_at(&self.path, failpoints::eio()));
        }
        self.file.sync_data().await.map_err(|e| io_at(&self.path, e))
    }
}

/// Drop a file's pages from the page cache (advice; a failure changes nothing). For a log
/// generation just flushed: its appends are O_DIRECT, and a direct write over cached pages
/// must invalidate them first, which io_uring cannot do without blocking, so each such
/// append would be handed to a kernel worker thread.
pub fn drop_cached(f: &impl AsRawFd) {
    // SAFETY: plain syscall on an open fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Whether O_DIRECT works in `dir`: some filesystems (tmpfs, some overlays) refuse it.
pub fn probe_direct(dir: &Path) -> bool {
    let p = dir.join(".direct-probe");
    let ok = (|| -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f =
            std::fs::OpenOptions::new().read(true).write(true).create(true).custom_flags(libc::O_DIRECT).open(&p)?;
        let mut b = AlignedBuf::alloc(4096);
        b.resize_zeroed(4096);
        f.write_all_at(b.as_slice(), 0)?;
        Ok(())
    })()
    .is_ok();
    let _ = std::fs::remove_file(&p);
    ok
}

/// Preallocate `len` bytes so appends do not extend the file (and fragment it).
pub fn fallocate(f: &std::fs::File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        // Filesystems without fallocate still work; the file just grows on write.
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            Ok(())
        } else {
            Err(e)
        }
    }
}
