//! One process per directory: an exclusive `flock` on a data or device directory, held for the
//! life of the process.
//!
//! Two servers on one device set each believe they own its log and segments: the second start
//! writes a new log generation and the first keeps appending to files that no longer count, so
//! what it acknowledges afterwards is lost at the next restart. The kernel releases a `flock`
//! when its last descriptor closes, on any exit (SIGKILL and crashes included), so a lock never
//! outlives its process and never needs cleaning up by hand. The lock is taken on the directory
//! itself: nothing is created inside it (an empty device stays empty), and the holder is found
//! through `/proc/locks` to name it in the refusal.

use crate::error::{io_at, Result, StorageError};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An exclusive lock on one directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    // Held only for its descriptor: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Lock `path` (a directory) for this process, or say which process holds it. `what` names
    /// the directory's role for the message ("data directory", "device z1").
    pub fn acquire(path: &Path, what: &str) -> Result<DirLock> {
        let file = File::open(path).map_err(|e| io_at(path, e))?;
        // SAFETY: flock(2) on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(DirLock { _file: file, path: path.to_path_buf() });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_at(path, e));
        }
        let holder = match file.metadata().ok().and_then(|m| holder_of(m.dev(), m.ino())) {
            Some(pid) => format!("process {pid}{}", command_of(pid).map(|c| format!(" ({c})")).unwrap_or_default()),
            None => "another process".to_string(),
        };
        Err(StorageError::InUse(format!(
            "{what} {} is in use by {holder}: one tessera process per device set; stop it first \
             (or give this one other directories)",
            path.display()
        ))
        .into())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid holding a `flock` on the file (device, inode), from `/proc/locks`: lines such as
/// `3: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (major:minor in hex, inode in decimal).
fn holder_of(dev: u64, ino: u64) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line starts with "->"; skip it.
        let i = f.iter().position(|w| *w == "FLOCK")?;
        (f.get(i + 4) == Some(&want.as_str())).then(|| f.get(i + 3)?.parse().ok()).flatten()
    })
}

fn command_of(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> =
        raw.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_and_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path(), "device z1").expect("first lock");
        // A second open file description in the same process conflicts like another process.
        let e = DirLock::acquire(dir.path(), "device z1").expect_err("second lock");
        let Error::Storage(StorageError::InUse(msg)) = e else { panic!("expected InUse, got {e:?}") };
        assert!(msg.contains("device z1"), "{msg}");
        assert!(msg.contains(&format!("process {}", std::process::id())), "{msg}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "the lock creates no file");
        drop(first);
        DirLock::acquire(dir.path(), "device z1").expect("free again after drop");
    }
}
