//! Multi-buffer MD5 for the PUT streams of one core.
//!
//! One MD5 stream is a chain of dependent 64-byte blocks, so it cannot use wide SIMD; md5-many
//! hashes many *independent* streams at once in SIMD lanes (16 per AVX-512 register, 8 per
//! AVX2), several times faster in total than one stream at a time. A core serves many PUTs, so
//! their ETag MD5s are such independent streams.
//!
//! The batcher is per core and lock-free (it lives on the core's thread, `Rc`/`RefCell`):
//! - A PUT stream holds an [`Md5Stream`] (a lane: one `Md5State`) and hands each body chunk to
//!   it with [`Md5Stream::update`]. The chunk is queued, not hashed, and the call returns at
//!   once; the stream goes on (copies the chunk into its stripe buffers, waits for the next one).
//!   At most one chunk per stream waits: the next `update` (or `finish`) first waits until the
//!   previous chunk has been hashed, which is the stream's backpressure.
//! - The first chunk queued wakes the core's flusher task. The event loop runs it after the
//!   tasks that were already runnable, so every stream that got a chunk in the same turn of the
//!   loop (typically those whose data arrived while the core was busy, for example hashing the
//!   last batch) has queued it by then. The flusher hashes all queued chunks together, in
//!   multi-buffer rounds of up to 16 streams (the AVX-512 kernel width), or one by one with the
//!   single-stream kernel when fewer than [`MD5_BATCH_MIN_LANES`] are queued (a lone stream
//!   pays one task switch, not a batch wait: nothing waits for company that is not already
//!   there). See `hash_jobs` for the shapes md5-many is fast at and how the batcher keeps to
//!   them.
//!
//! Memory: one queued chunk (a `Bytes` reference, not a copy) per stream. Time: one flush
//! hashes at most [`MD5_FLUSH_MAX_BYTES`] and then lets the core's other tasks and I/O run
//! before it hashes the rest.

use bytes::Bytes;
use md5_many::{Md5Many, Md5State};
use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

/// Most streams one md5-many call hashes: its kernel width (16 with AVX-512, 8 with AVX2) is
/// used, capped at this (its widest interleaved kernel). More queued streams take more calls.
pub const MD5_BATCH_MAX_LANES: usize = 48;
/// Fewer queued streams than this are hashed one by one by the single-stream kernel
/// (AVX-512VL where present), which is faster than a mostly empty SIMD batch.
pub const MD5_BATCH_MIN_LANES: usize = 2;
/// Most bytes one flush hashes (whole chunks, at least one) before the flusher lets the other
/// runnable tasks and the I/O completions of the core go first; the rest stays queued for the
/// next flush. Bounds how long hashing holds the event loop (16 MiB: about 2 ms at the 16-lane
/// rate of a quiet core, while one 16-lane round wants 16 streams' chunks to be worth it).
pub const MD5_FLUSH_MAX_BYTES: usize = 16 << 20;
/// Lanes (streams) allocated up front; more grow the table.
const INITIAL_LANES: usize = 256;

/// Counters of one batcher since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Md5BatchStats {
    /// Chunks hashed.
    pub chunks: u64,
    /// Of those, chunks hashed in a multi-buffer call together with other streams' chunks.
    pub batched_chunks: u64,
    /// Runs of the flusher that hashed something.
    pub flushes: u64,
    /// Bytes hashed.
    pub bytes: u64,
}

struct Lane {
    state: Md5State,
    /// The chunk queued and not yet hashed.
    pending: Option<Bytes>,
    /// The stream waiting for `pending` to be hashed.
    waiter: Option<Waker>,
    live: bool,
}

struct Inner {
    lanes: Vec<Lane>,
    free: Vec<u32>,
    /// Lanes with a chunk pending, in the order they were queued (each at most once).
    queued: Vec<u32>,
    /// The flusher's work list, kept between flushes (no allocation per flush).
    jobs: Vec<Job>,
    /// The flusher's waker while it waits for work.
    flusher: Option<Waker>,
    flusher_started: bool,
    stats: Md5BatchStats,
}

/// A core's MD5 batcher. Create one per core ([`Md5Batcher::new`]), open one [`Md5Stream`]
/// per object being written. Must be used from inside a monoio runtime (the flusher is a task
/// of the core's event loop, spawned on first use).
pub struct Md5Batcher {
    many: Md5Many,
    min_lanes: usize,
    inner: RefCell<Inner>,
}

impl Md5Batcher {
    /// A batcher with the default policy (SIMD from [`MD5_BATCH_MIN_LANES`] streams).
    pub fn new() -> Rc<Md5Batcher> {
        Self::with_min_lanes(MD5_BATCH_MIN_LANES)
    }

    /// A batcher that uses a multi-buffer call only when at least `min_lanes` streams are
    /// queued (`usize::MAX`: never; for measurements and tests).
    pub fn with_min_lanes(min_lanes: usize) -> Rc<Md5Batcher> {
        Rc::new(Md5Batcher {
            many: Md5Many::new(),
            min_lanes: min_lanes.max(2),
            inner: RefCell::new(Inner {
                lanes: Vec::with_capacity(INITIAL_LANES),
                free: Vec::with_capacity(INITIAL_LANES),
                queued: Vec::with_capacity(INITIAL_LANES),
                jobs: Vec::with_capacity(INITIAL_LANES),
                flusher: None,
                flusher_started: false,
                stats: Md5BatchStats::default(),
            }),
        })
    }

    /// SIMD lanes of the multi-buffer kernel on this CPU (16 AVX-512, 8 AVX2, 4 SSE/NEON).
    pub fn simd_lanes(&self) -> usize {
        self.many.lanes()
    }

    pub fn stats(&self) -> Md5BatchStats {
        self.inner.borrow().stats
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        let i = self.inner.borrow();
        i.lanes.len() - i.free.len()
    }

    /// Start the MD5 of a new object.
    pub fn stream(self: &Rc<Self>) -> Md5Stream {
        let mut i = self.inner.borrow_mut();
        let lane = match i.free.pop() {
            Some(l) => l,
            None => {
                let l = u32::try_from(i.lanes.len()).expect("fewer than 2^32 MD5 streams on a core");
                i.lanes.push(Lane { state: Md5State::new(), pending: None, waiter: None, live: false });
                l
            }
        };
        let slot = &mut i.lanes[lane as usize];
        assert!(!slot.live && slot.pending.is_none(), "MD5 lane {lane} handed out twice");
        slot.live = true;
        slot.state = Md5State::new();
        Md5Stream { batcher: self.clone(), lane }
    }

    fn submit(self: &Rc<Self>, lane: u32, data: Bytes) {
        let wake = {
            let mut i = self.inner.borrow_mut();
            let slot = &mut i.lanes[lane as usize];
            assert!(slot.live, "MD5 lane {lane} used after release");
            assert!(slot.pending.is_none(), "MD5 lane {lane} queued a chunk before the last was hashed");
            slot.pending = Some(data);
            i.queued.push(lane);
            if !i.flusher_started {
                i.flusher_started = true;
                monoio::spawn(run_flusher(Rc::downgrade(self)));
            }
            i.flusher.take()
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    fn poll_hashed(&self, lane: u32, waker: &Waker) -> Poll<()> {
        let mut i = self.inner.borrow_mut();
        let slot = &mut i.lanes[lane as usize];
        if slot.pending.is_none() {
            Poll::Ready(())
        } else {
            slot.waiter = Some(waker.clone());
            Poll::Pending
        }
    }

    fn finalize(&self, lane: u32) -> [u8; 16] {
        let i = self.inner.borrow();
        let slot = &i.lanes[lane as usize];
        assert!(slot.live && slot.pending.is_none(), "MD5 lane {lane} finalized with a chunk pending");
        slot.state.finalize()
    }

    fn release(&self, lane: u32) {
        let mut i = self.inner.borrow_mut();
        let slot = &mut i.lanes[lane as usize];
        assert!(slot.live, "MD5 lane {lane} released twice");
        slot.live = false;
        slot.waiter = None;
        if slot.pending.take().is_some() {
            i.queued.retain(|&l| l != lane);
        }
        i.free.push(lane);
    }

    /// Hash the queued chunks, oldest first, up to [`MD5_FLUSH_MAX_BYTES`]. Returns whether
    /// chunks are still queued. Runs in the flusher task; synchronous (no await inside), so no
    /// stream can change the lanes meanwhile.
    fn flush(&self) -> bool {
        let mut guard = self.inner.borrow_mut();
        let i = &mut *guard;
        let mut jobs = std::mem::take(&mut i.jobs);
        assert!(jobs.is_empty());
        let mut bytes = 0usize;
        for &l in &i.queued {
            if bytes >= MD5_FLUSH_MAX_BYTES {
                break;
            }
            let slot = &mut i.lanes[l as usize];
            assert!(slot.live, "MD5 lane {l} queued but released");
            let data = slot.pending.take().expect("a queued MD5 lane has a chunk");
            bytes += data.len();
            jobs.push(Job { lane: l, state: slot.state, data, off: 0, simd: false });
        }
        i.queued.drain(..jobs.len());
        let more = !i.queued.is_empty();
        if jobs.is_empty() {
            i.jobs = jobs;
            return more;
        }
        drop(guard);

        self.hash_jobs(&mut jobs);

        let mut wakers: Vec<Waker> = Vec::new();
        let mut guard = self.inner.borrow_mut();
        let i = &mut *guard;
        i.stats.flushes += 1;
        for j in jobs.drain(..) {
            assert_eq!(j.off, j.data.len(), "MD5 job of lane {} not fully hashed", j.lane);
            let slot = &mut i.lanes[j.lane as usize];
            assert!(slot.live && slot.pending.is_none(), "MD5 lane {} changed while hashing", j.lane);
            slot.state = j.state;
            wakers.extend(slot.waiter.take());
            i.stats.chunks += 1;
            i.stats.bytes += j.data.len() as u64;
            i.stats.batched_chunks += j.simd as u64;
        }
        i.jobs = jobs;
        drop(guard);
        for w in wakers {
            w.wake();
        }
        more
    }

    /// Hash each job's chunk into its state. md5-many is fast only for some shapes: equal,
    /// block-aligned inputs in groups of its kernel widths (measured here with AVX-512: 8 and
    /// 16 lanes run at 5x and 10x one stream's speed in total, while 4-7 or 9-15 lanes of mixed
    /// lengths fall to its generic path, slower than one stream). So the batcher feeds it only
    /// those shapes: each state is first brought to a block boundary (at most 63 bytes by the
    /// single-stream kernel), then rounds hash the common block-aligned length of up to
    /// `simd_lanes()` streams at once, padded to a kernel width with copies of a real lane
    /// (their results are dropped); what a round cannot take (a lone stream, sub-block tails)
    /// goes through the single-stream kernel.
    fn hash_jobs(&self, jobs: &mut [Job]) {
        if jobs.len() >= self.min_lanes {
            for j in jobs.iter_mut() {
                let buffered = (j.state.bytes_hashed() % 64) as usize;
                if buffered != 0 {
                    let take = (64 - buffered).min(j.data.len());
                    j.state.update(&j.data[..take]);
                    j.off = take;
                }
            }
            let lanes = self.many.lanes().min(MD5_BATCH_MAX_LANES);
            let mut active: Vec<usize> = Vec::with_capacity(jobs.len());
            loop {
                active.clear();
                active.extend((0..jobs.len()).filter(|&x| jobs[x].blocks_left() > 0));
                if active.len() < self.min_lanes || lanes < 2 {
                    break;
                }
                // Longest first: a round lasts as long as its shortest member.
                active.sort_by_key(|&x| std::cmp::Reverse(jobs[x].blocks_left()));
                let group = &active[..active.len().min(lanes)];
                self.simd_round(jobs, group, lanes);
            }
        }
        for j in jobs.iter_mut() {
            j.state.update(&j.data[j.off..]);
            j.off = j.data.len();
        }
    }

    /// One multi-buffer call: every job in `group` (at least 2, block-aligned states) advances
    /// by the group's shortest block-aligned remainder.
    fn simd_round(&self, jobs: &mut [Job], group: &[usize], lanes: usize) {
        let g = group.len();
        assert!((2..=lanes).contains(&g), "an MD5 round of {g} streams (kernel width {lanes})");
        let width = if lanes >= 16 && g <= lanes / 2 { lanes / 2 } else { lanes };
        let len = group.iter().map(|&x| jobs[x].blocks_left()).min().unwrap_or(0) * 64;
        assert!(len > 0);
        let first = &jobs[group[0]];
        let mut states = [first.state; MD5_BATCH_MAX_LANES];
        let mut inputs: [&[u8]; MD5_BATCH_MAX_LANES] = [&first.data[first.off..first.off + len]; MD5_BATCH_MAX_LANES];
        for (k, &x) in group.iter().enumerate() {
            let j = &jobs[x];
            assert_eq!(j.state.bytes_hashed() % 64, 0, "MD5 lane {} not block-aligned", j.lane);
            states[k] = j.state;
            inputs[k] = &j.data[j.off..j.off + len];
        }
        self.many.update_many(&mut states[..width], &inputs[..width]);
        for (k, &x) in group.iter().enumerate() {
            let j = &mut jobs[x];
            j.state = states[k];
            j.off += len;
            j.simd = true;
        }
    }
}

/// One queued chunk while the flusher hashes it.
struct Job {
    lane: u32,
    state: Md5State,
    data: Bytes,
    /// Bytes of `data` already hashed into `state`.
    off: usize,
    /// Part of it went through a multi-buffer call.
    simd: bool,
}

impl Job {
    fn blocks_left(&self) -> usize {
        (self.data.len() - self.off) / 64
    }
}

/// The flusher: waits for queued chunks and hashes them, for as long as its batcher lives.
async fn run_flusher(batcher: Weak<Md5Batcher>) {
    loop {
        let work = poll_fn(|cx| {
            let Some(b) = batcher.upgrade() else { return Poll::Ready(false) };
            let mut i = b.inner.borrow_mut();
            if i.queued.is_empty() {
                i.flusher = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(true)
            }
        })
        .await;
        let more = match batcher.upgrade() {
            Some(b) if work => b.flush(),
            _ => return,
        };
        if more {
            yield_to_back().await;
        }
    }
}

/// Let every task runnable now go first (and the I/O completions the event loop reaps between
/// its rounds of tasks). A task that wakes itself is re-run at once by monoio, so the wake is
/// relayed through a small task queued behind the others.
async fn yield_to_back() {
    let mut relayed = false;
    poll_fn(|cx| {
        if relayed {
            return Poll::Ready(());
        }
        relayed = true;
        let w = cx.waker().clone();
        monoio::spawn(async move { w.wake() });
        Poll::Pending
    })
    .await
}

/// The MD5 of one object being written, hashed by its core's [`Md5Batcher`].
pub struct Md5Stream {
    batcher: Rc<Md5Batcher>,
    lane: u32,
}

impl Md5Stream {
    /// Append `data` to the stream. Waits only for the previous chunk to be hashed, then
    /// queues this one and returns: the hash itself happens in the next batch.
    pub async fn update(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.hashed().await;
        self.batcher.submit(self.lane, data);
    }

    /// The digest of every byte given to `update`.
    pub async fn finish(self) -> [u8; 16] {
        self.hashed().await;
        self.batcher.finalize(self.lane)
    }

    async fn hashed(&self) {
        poll_fn(|cx| self.batcher.poll_hashed(self.lane, cx.waker())).await
    }
}

impl Drop for Md5Stream {
    fn drop(&mut self) {
        self.batcher.release(self.lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest;
    use rand::{Rng, SeedableRng};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("a monoio runtime for the test");
        rt.block_on(f)
    }

    /// `streams` concurrent streams each hash `data` in `chunk`-byte pieces; their digests.
    fn hash_streams(b: &Rc<Md5Batcher>, streams: usize, data: &Bytes, chunk: usize) -> Vec<[u8; 16]> {
        let (b, d) = (b.clone(), data.clone());
        block_on(async move {
            let tasks: Vec<_> = (0..streams)
                .map(|_| {
                    let (b, d) = (b.clone(), d.clone());
                    monoio::spawn(async move {
                        let mut h = b.stream();
                        for c in d.chunks(chunk) {
                            h.update(d.slice_ref(c)).await;
                        }
                        h.finish().await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            out
        })
    }

    fn md5_ref(data: &[u8]) -> [u8; 16] {
        md5::Md5::digest(data).into()
    }

    /// Yield to the event loop `n` times (a task woken by another runs after the queue).
    async fn let_others_run(n: usize) {
        for _ in 0..n {
            monoio::time::sleep(std::time::Duration::ZERO).await;
        }
    }

    /// Many streams of random lengths, cut into random chunks (0 bytes to 300 KiB, block
    /// boundaries or not), interleaved at random, some dropped half-way: every finished
    /// stream's digest equals md-5's over the same bytes. Replay a failure with
    /// `MD5_BATCH_SEED=0x... cargo test -p tessera-engine md5batch`.
    #[test]
    fn batched_md5_matches_md5_for_random_streams_and_interleavings() {
        let fixed =
            std::env::var("MD5_BATCH_SEED").ok().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        for round in 0..6u64 {
            let seed = fixed.unwrap_or_else(rand::random::<u64>);
            println!("md5 batcher property test round {round}: seed {seed:#x}");
            let batcher = Md5Batcher::new();
            let b = batcher.clone();
            let results = block_on(async move {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let streams = rng.gen_range(1..=70);
                let mut handles = Vec::new();
                for s in 0..streams {
                    let stream_seed: u64 = rng.gen();
                    let b = b.clone();
                    handles.push(monoio::spawn(async move {
                        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(stream_seed);
                        let len = match rng.gen_range(0..4) {
                            0 => rng.gen_range(0..200),
                            1 => rng.gen_range(0..5000),
                            _ => rng.gen_range(0..1_500_000),
                        };
                        let mut data = vec![0u8; len];
                        rng.fill(&mut data[..]);
                        let data = Bytes::from(data);
                        let abandon = rng.gen_ratio(1, 10);
                        let mut h = b.stream();
                        let mut off = 0;
                        let mut chunks = 0;
                        while off < len {
                            let n = match rng.gen_range(0..4) {
                                0 => rng.gen_range(0..=64),
                                1 => 64 * rng.gen_range(1..=1024),
                                _ => rng.gen_range(0..=300_000),
                            }
                            .min(len - off);
                            h.update(data.slice(off..off + n)).await;
                            off += n;
                            chunks += 1;
                            if abandon && chunks == 3 {
                                return (s, None);
                            }
                            let_others_run(rng.gen_range(0..3)).await;
                        }
                        let got = h.finish().await;
                        (s, Some((got, md5_ref(&data))))
                    }));
                }
                let mut out = Vec::new();
                for h in handles {
                    out.push(h.await);
                }
                out
            });
            for (s, r) in results {
                if let Some((got, want)) = r {
                    assert_eq!(got, want, "stream {s} of round {round} (seed {seed:#x}) hashed wrong");
                }
            }
            assert_eq!(batcher.open_streams(), 0, "every stream released its lane");
            let st = batcher.stats();
            println!("  {st:?}");
            assert!(st.chunks >= st.batched_chunks);
        }
    }

    /// Streams that queue chunks in the same turn of the event loop are hashed together in
    /// one multi-buffer call; a stream alone is hashed by the single-stream kernel.
    #[test]
    fn concurrent_streams_share_one_batch_and_a_lone_stream_does_not_wait() {
        let batcher = Md5Batcher::new();
        let data = Bytes::from((0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect::<Vec<u8>>());
        let want = md5_ref(&data);
        let got = hash_streams(&batcher, 16, &data, 65536);
        assert!(got.iter().all(|g| *g == want));
        let st = batcher.stats();
        assert_eq!(st.chunks, 16 * data.len().div_ceil(65536) as u64);
        assert_eq!(st.batched_chunks, st.chunks, "16 streams in lockstep always batch: {st:?}");
        assert_eq!(st.flushes, data.len().div_ceil(65536) as u64);

        let lone = Md5Batcher::new();
        let b = lone.clone();
        let d = data.clone();
        let got = block_on(async move {
            let mut h = b.stream();
            for c in d.chunks(100_000) {
                h.update(d.slice_ref(c)).await;
            }
            h.finish().await
        });
        assert_eq!(got, want);
        assert_eq!(lone.stats().batched_chunks, 0, "a lone stream uses the single-stream kernel");
    }

    /// More queued bytes than one flush may hash: the rest waits for the next flush (after
    /// the other runnable tasks), and every digest is still right.
    #[test]
    fn a_flush_hashes_at_most_its_byte_limit_and_leaves_the_rest_queued() {
        const STREAMS: usize = 40;
        const CHUNK: usize = 1 << 20;
        let batcher = Md5Batcher::new();
        let data = Bytes::from((0..CHUNK as u32).map(|i| (i ^ (i >> 9)) as u8).collect::<Vec<u8>>());
        let want = md5_ref(&data);
        let got = hash_streams(&batcher, STREAMS, &data, CHUNK);
        assert!(got.iter().all(|g| *g == want));
        let st = batcher.stats();
        assert_eq!(st.flushes, (STREAMS * CHUNK).div_ceil(MD5_FLUSH_MAX_BYTES) as u64, "{st:?}");
        assert_eq!(st.batched_chunks, STREAMS as u64, "{st:?}");
    }

    #[test]
    fn empty_stream_is_md5_of_nothing_and_lanes_are_reused() {
        let batcher = Md5Batcher::new();
        let b = batcher.clone();
        block_on(async move {
            for _ in 0..3 {
                let mut h = b.stream();
                h.update(Bytes::new()).await;
                assert_eq!(h.finish().await, md5_ref(b""));
            }
        });
        assert_eq!(batcher.inner.borrow().lanes.len(), 1);
    }
}
