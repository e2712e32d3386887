//! Blocking work off the cores: a small pool of helper threads per engine for the system
//! calls the ring cannot take (fallocate, ftruncate, directory fsyncs and listings, opens,
//! renames and unlinks where monoio 0.2.4 has no op, or only a blocking one on its epoll
//! fallback). A core's thread never makes such a call once its loop serves requests: a task
//! hands a closure to `Blocking::run` and awaits the answer on a oneshot, while the core goes
//! on with its other tasks. (Start-up, before a core answers its first message, may block:
//! there is nothing else to serve yet.)
//!
//! Bounded: `BLOCKING_THREADS` threads and at most `BLOCKING_QUEUE_DEPTH_MAX` jobs waiting. A
//! task that finds the queue full waits for room (it is the engine's own work, never a
//! client's to refuse), and `spawn` from code that cannot await gives the job up instead
//! (the only such jobs are unlinks of dead segments, which the next start's sweep removes).

use crate::error::{Error, Result, StorageError};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Helper threads per engine. File system calls on different devices overlap; a few are
/// enough, since none of them is on a request's common path (segment creation once per
/// segment, checkpoints, probes).
pub const BLOCKING_THREADS: usize = 4;
/// Jobs waiting for a helper thread, at most.
pub const BLOCKING_QUEUE_DEPTH_MAX: usize = 256;
const _: () = assert!(BLOCKING_THREADS > 0 && BLOCKING_QUEUE_DEPTH_MAX > 0, "a pool that can run nothing");

type Job = Box<dyn FnOnce() + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// The engine's helper threads (see the module comment).
pub struct Blocking {
    tx: flume::Sender<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Blocking {
    pub fn new() -> Result<Blocking> {
        let (tx, rx) = flume::bounded::<Msg>(BLOCKING_QUEUE_DEPTH_MAX);
        let mut threads = Vec::with_capacity(BLOCKING_THREADS);
        for i in 0..BLOCKING_THREADS {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("tessera-blocking-{i}"))
                .spawn(move || {
                    // Ends on `Stop` or when every sender is gone (the engine was dropped).
                    while let Ok(Msg::Job(job)) = rx.recv() {
                        job();
                    }
                })
                .map_err(|e| StorageError::Io(format!("cannot start a helper thread: {e}")))?;
            threads.push(t);
        }
        Ok(Blocking { tx, threads: Mutex::new(threads) })
    }

    /// Run `f` on a helper thread and return its result; waits for room when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (tx, rx) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx.send_async(Msg::Job(job)).await.map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Run `f` on a helper thread without waiting for it, from code that cannot await. Returns
    /// false (and drops `f`) when the queue is full: only for work whose loss costs nothing
    /// but space until the next start.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) -> bool {
        self.tx.try_send(Msg::Job(Box::new(f))).is_ok()
    }

    /// Let the queued jobs finish and stop the threads (at engine shutdown, once the cores
    /// have stopped: a file operation of this run must not land after the next open). A
    /// caller on one of the helper threads itself does not wait for it.
    pub fn shutdown(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in 0..threads.len() {
            // Blocks only while the queue is full, and the helpers are draining it.
            let _ = self.tx.send(Msg::Stop);
        }
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_off_the_calling_thread_and_answers() {
        let pool = Blocking::new().unwrap();
        let caller = std::thread::current().id();
        let ran_on = futures::executor::block_on(pool.run(move || Ok(std::thread::current().id()))).unwrap();
        assert_ne!(ran_on, caller);
        let e = futures::executor::block_on(pool.run(|| -> Result<()> { Err(StorageError::Io("no".into()).into()) }));
        assert_eq!(e, Err(StorageError::Io("no".into()).into()));
        pool.shutdown();
        assert_eq!(futures::executor::block_on(pool.run(|| Ok(1))), Err(Error::ShuttingDown));
    }

    #[test]
    fn more_jobs_than_the_queue_holds_all_run() {
        let pool = Blocking::new().unwrap();
        let n = BLOCKING_QUEUE_DEPTH_MAX * 2 + BLOCKING_THREADS;
        let done = futures::executor::block_on(futures::future::join_all((0..n).map(|i| pool.run(move || Ok(i)))));
        assert_eq!(done.into_iter().collect::<Result<Vec<_>>>().unwrap(), (0..n).collect::<Vec<_>>());
        pool.shutdown();
    }
}
