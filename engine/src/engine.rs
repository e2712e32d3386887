//! The engine handle: `Send + Sync + Clone`, usable from any thread or core. Each call finds
//! the owner core of its key and runs there (`Shared::on`); listings ask every core and merge.

use crate::api::*;
use crate::core::{run_core, CoreInit, CoreMsg, Shared};
use crate::dirlock::DirLock;
use crate::error::{Error, RequestError, Result, StorageError};
use crate::heal::{DeviceHealth, HealConfig, HealthStatus};
use crate::layout::DeviceSpec;
use crate::record::{ObjectHeaders, Record};
use crate::superblock::{self, DeviceSet};
use crate::util::{human_bytes, ALIGN_BYTES};
use crate::wal;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Default bytes per shard per stripe: a 256 KiB stripe of data at k=4. With
/// `DEFAULT_STRIPES_IN_FLIGHT` a PUT holds at most (k + 2 (k+m)) × 64 KiB = 1 MiB of buffers
/// at 4+2 (one stripe filling, two being written); a GET about one stripe being read and two
/// queued for the socket. Measured against 256 KiB in docs/BENCHMARKS.md ("Buffers per request").
pub const DEFAULT_CHUNK_BYTES: usize = 64 << 10;
pub const DEFAULT_SEGMENT_BYTES: u64 = 256 << 20;
/// The smallest segment `EngineConfig::validate` accepts.
pub const MIN_SEGMENT_BYTES: u64 = 1 << 20;
/// Buffers per core's pool (each `chunk_bytes`): 64 MiB per core at the defaults, enough for
/// 64 large requests in flight on a core before buffers are allocated outside the pool.
pub const DEFAULT_POOL_BUFFERS: usize = 1024;
/// See `EngineConfig::stripes_in_flight`.
pub const DEFAULT_STRIPES_IN_FLIGHT: usize = 2;
/// See `EngineConfig::mailbox_depth_max`. A request occupies a slot only from the moment it is
/// sent until its owner core picks it up (then it runs as a task there), so a full mailbox
/// means that core is far behind, not merely busy.
pub const MAILBOX_DEPTH_MAX_DEFAULT: usize = 1024;
/// See `EngineConfig::commit_queue_depth_max`. As many as the requests a core runs at once
/// (the facade's default bound), so with the defaults a client meets that bound first; this
/// one holds for any configuration and for the engine's own writers.
pub const COMMIT_QUEUE_DEPTH_MAX_DEFAULT: usize = 1024;
/// See `EngineConfig::repair_queue_depth_max`: a (bucket, key) pair each, so a few hundred KiB
/// per tablet at most, whatever a failed device held.
pub const REPAIR_QUEUE_DEPTH_MAX_DEFAULT: usize = 4096;
// Shards are written and read O_DIRECT at 4 KiB-aligned offsets in whole blocks (`Engine::open`
// refuses another chunk size), and a shard must fit in a (preallocated) segment.
const _: () = assert!(DEFAULT_CHUNK_BYTES > 0 && DEFAULT_CHUNK_BYTES.is_multiple_of(ALIGN_BYTES));
const _: () =
    assert!(DEFAULT_SEGMENT_BYTES >= MIN_SEGMENT_BYTES && DEFAULT_SEGMENT_BYTES.is_multiple_of(ALIGN_BYTES as u64));
const _: () = assert!(DEFAULT_CHUNK_BYTES as u64 <= DEFAULT_SEGMENT_BYTES, "a shard fits in one segment");
const _: () = assert!(DEFAULT_STRIPES_IN_FLIGHT > 0, "a PUT must be able to write a stripe");

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub devices: Vec<DeviceSpec>,
    /// Cores (threads) to run; 0 means one per CPU.
    pub cores: usize,
    pub chunk_bytes: usize,
    pub segment_bytes: u64,
    pub pool_buffers: usize,
    /// Stripes of one object written at once while its body streams in (each holds k+m
    /// buffers until its shards are on disk; one more stripe is being filled).
    pub stripes_in_flight: usize,
    /// Pin each core thread to its CPU.
    pub pin: bool,
    /// Repair, scrub, device health and I/O shares.
    pub heal: HealConfig,
    /// Hash the ETag MD5s of a core's PUTs together in SIMD lanes when at least this many are
    /// waiting (`md5batch`); `usize::MAX` hashes every stream alone (for measurements).
    pub md5_batch_min_lanes: usize,
    /// Append to the metadata log with O_DIRECT|O_DSYNC writes (each a write and its flush in
    /// one I/O, no page cache) where the filesystem allows it; `false` appends through the page
    /// cache and fdatasyncs each mirror (for measurements, and the fallback either way).
    pub log_direct: bool,
    /// A tablet rewrites its log (a checkpoint: only the live state, in a new generation) once
    /// the log is longer than this and more than 4 times its live part.
    pub checkpoint_min_bytes: u64,
    /// Tests only: a checkpoint waits this long before its switch, so that a crash test's
    /// kills land in the window between "new generation written" and "switched" (0 in use).
    pub checkpoint_install_delay_ms: u64,
    /// Messages waiting in one core's mailbox at most. Past it a client request is refused
    /// (`Error::SlowDown`, 503 SlowDown) instead of queueing memory without bound; the engine's
    /// own messages wait for room.
    pub mailbox_depth_max: usize,
    /// Records waiting for a tablet's group commit at most. Past it a client write is refused
    /// (`Error::SlowDown`) before anything of it is written; a write whose data is already on
    /// disk, and the engine's own (repair, compaction, buckets), wait for room instead.
    pub commit_queue_depth_max: usize,
    /// Objects in a tablet's repair queue at most. What does not fit is found again by a rescan
    /// (objects below redundancy) once the queue has drained, or by the scrubber's next pass.
    pub repair_queue_depth_max: usize,
}

impl EngineConfig {
    pub fn new(devices: Vec<DeviceSpec>) -> Self {
        EngineConfig {
            devices,
            cores: 0,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            pool_buffers: DEFAULT_POOL_BUFFERS,
            stripes_in_flight: DEFAULT_STRIPES_IN_FLIGHT,
            pin: true,
            heal: HealConfig::default(),
            md5_batch_min_lanes: crate::md5batch::MD5_BATCH_MIN_LANES,
            log_direct: true,
            checkpoint_min_bytes: crate::tablet::CHECKPOINT_MIN_BYTES,
            checkpoint_install_delay_ms: 0,
            mailbox_depth_max: MAILBOX_DEPTH_MAX_DEFAULT,
            commit_queue_depth_max: COMMIT_QUEUE_DEPTH_MAX_DEFAULT,
            repair_queue_depth_max: REPAIR_QUEUE_DEPTH_MAX_DEFAULT,
        }
    }

    /// Refuse sizes the engine cannot run with, before anything is opened: each is checked
    /// here so that no core thread later meets one as a failed assertion or a stuck write.
    pub fn validate(&self) -> Result<()> {
        let refuse = |m: String| Err(StorageError::Layout(m).into());
        if self.chunk_bytes == 0 || !self.chunk_bytes.is_multiple_of(ALIGN_BYTES) {
            return refuse(format!("chunk size {} must be a positive multiple of 4 KiB", self.chunk_bytes));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES || !self.segment_bytes.is_multiple_of(ALIGN_BYTES as u64) {
            return refuse(format!(
                "segment size {} must be a multiple of 4 KiB and at least {}",
                human_bytes(self.segment_bytes),
                human_bytes(MIN_SEGMENT_BYTES)
            ));
        }
        if self.chunk_bytes as u64 > self.segment_bytes {
            return refuse(format!(
                "a chunk of {} does not fit in a segment of {}: a shard is written within one segment",
                human_bytes(self.chunk_bytes as u64),
                human_bytes(self.segment_bytes)
            ));
        }
        if self.pool_buffers == 0 || self.stripes_in_flight == 0 || self.mailbox_depth_max == 0 {
            return refuse("pool buffers, stripes in flight and mailbox depth must each be at least 1".into());
        }
        Ok(())
    }

    /// Set the chunk size, with the pool resized to keep its bytes (64 MiB per core at the
    /// defaults) in buffers of the new size.
    pub fn set_chunk_bytes(&mut self, chunk: usize) {
        let pool_bytes = self.pool_buffers * self.chunk_bytes;
        self.chunk_bytes = chunk;
        self.pool_buffers = (pool_bytes / chunk.max(1)).max(16);
    }
}

struct Inner {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    drivers: Vec<String>,
    /// This process's locks on the device directories, released at shutdown.
    locks: Mutex<Vec<DirLock>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for s in &self.shared.senders {
            send_stop(s);
        }
    }
}

/// Ask a core to stop without blocking the caller, which may be a core thread itself: when its
/// mailbox is full, a short-lived thread waits for room.
fn send_stop(s: &flume::Sender<CoreMsg>) {
    if let Err(flume::TrySendError::Full(msg)) = s.try_send(CoreMsg::Stop) {
        let s = s.clone();
        let _ = std::thread::Builder::new().name("tessera-stop".into()).spawn(move || {
            let _ = s.send(msg);
        });
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// One tablet's part of a listing being merged: its items so far, in key order, and whether it
/// may hold more keys after the last of them.
struct TabletRun {
    tid: u32,
    more: bool,
    items: Vec<(ListItem, [u8; 16], u32)>,
}

fn key_hash(bucket: &str, key: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(bucket.as_bytes());
    h.update(&[0]);
    h.update(key.as_bytes());
    h.digest()
}

impl Engine {
    /// Open a formatted device set, recover every tablet and start the cores.
    pub fn open(cfg: EngineConfig) -> Result<Engine> {
        cfg.validate()?;
        let locks = lock_devices(&cfg.devices)?;
        let set = superblock::open(&cfg.devices)?;
        let up = set.healthy.iter().filter(|h| **h).count();
        if up < set.k {
            return Err(StorageError::Layout(format!(
                "only {up} of {} devices are available; at least k={} are needed",
                set.device_count(),
                set.k
            ))
            .into());
        }
        if up < set.device_count() {
            tracing::warn!(
                "running degraded: {} of {} devices unavailable",
                set.device_count() - up,
                set.device_count()
            );
        }
        let direct: Vec<bool> = (0..set.device_count())
            .map(|i| match set.path(i as u16).filter(|_| set.healthy[i]) {
                Some(p) => {
                    let ok = crate::io::probe_direct(p);
                    if !ok {
                        tracing::warn!(
                            "O_DIRECT is refused on {} (tmpfs or overlay?): using buffered I/O with fdatasync there; \
                             durability holds but throughput and memory use will differ from a real device",
                            p.display()
                        );
                    }
                    ok
                }
                None => false,
            })
            .collect();
        let healthy_paths: Vec<Option<std::path::PathBuf>> =
            set.paths.iter().enumerate().map(|(i, p)| p.clone().filter(|_| set.healthy[i])).collect();
        let (logs, buckets) = crate::tablet::recover_logs(&set, &healthy_paths)?;
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let cores = if cfg.cores == 0 { ncpu } else { cfg.cores }.min(set.tablets as usize).max(1);
        let depth = cfg.mailbox_depth_max.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..cores).map(|_| flume::bounded(depth)).unzip();
        let shared = Arc::new(Shared {
            set,
            direct,
            chunk_bytes: cfg.chunk_bytes,
            segment_bytes: cfg.segment_bytes,
            pool_buffers: cfg.pool_buffers,
            stripes_in_flight: cfg.stripes_in_flight.max(1),
            cores,
            senders,
            bucket_lock: futures::lock::Mutex::new(()),
            replace_lock: futures::lock::Mutex::new(()),
            heal: cfg.heal.clone(),
            md5_batch_min_lanes: cfg.md5_batch_min_lanes,
            log_direct: cfg.log_direct,
            checkpoint_min_bytes: cfg.checkpoint_min_bytes,
            checkpoint_install_delay_ms: cfg.checkpoint_install_delay_ms,
            commit_queue_depth_max: cfg.commit_queue_depth_max.max(1),
            repair_queue_depth_max: cfg.repair_queue_depth_max.max(1),
            blocking: crate::blocking::Blocking::new()?,
        });
        let mut per_core: Vec<Vec<(u32, Option<wal::RecoveredLog>)>> = (0..cores).map(|_| Vec::new()).collect();
        for (t, l) in logs.into_iter().enumerate() {
            per_core[shared.core_of_tablet(t as u32)].push((t as u32, l));
        }
        let (rtx, rrx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for (id, (rx, logs)) in receivers.into_iter().zip(per_core).enumerate() {
            let init = CoreInit { logs, buckets: buckets.clone() };
            let core_shared = shared.clone();
            let rtx = rtx.clone();
            let healthy = shared.set.healthy.clone();
            let pin = cfg.pin;
            let t = std::thread::Builder::new()
                .name(format!("tessera-core-{id}"))
                .spawn(move || run_core(id, core_shared, rx, init, healthy, pin, rtx))
                .map_err(|e| StorageError::Io(format!("cannot start core thread: {e}")))?;
            threads.push(t);
        }
        drop(rtx);
        let mut drivers = vec![String::new(); cores];
        let mut failure = None;
        for _ in 0..cores {
            match rrx.recv() {
                Ok(Ok(d)) => {
                    if let Some(slot) = drivers.iter_mut().find(|s| s.is_empty()) {
                        *slot = d;
                    }
                }
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(Error::Storage(StorageError::Io("a core thread died while starting".into()))),
            }
        }
        let inner = Arc::new(Inner { shared, threads: Mutex::new(threads), drivers, locks: Mutex::new(locks) });
        let engine = Engine { inner };
        if let Some(e) = failure {
            engine.shutdown();
            return Err(e);
        }
        Ok(engine)
    }

    /// Stop every core and wait for their threads. Acknowledged writes are already durable.
    pub fn shutdown(&self) {
        for s in &self.inner.shared.senders {
            send_stop(s);
        }
        let threads = std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // The helpers' queued file operations belong to this run: done before the devices are
        // free for the next one.
        self.inner.shared.blocking.shutdown();
        // The cores are gone (or this is one of them, stopping): the devices are free again.
        self.inner.locks.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn cores(&self) -> usize {
        self.inner.shared.cores
    }

    /// The I/O driver each core got ("io_uring" or the epoll fallback).
    pub fn io_drivers(&self) -> &[String] {
        &self.inner.drivers
    }

    pub fn device_set(&self) -> &DeviceSet {
        &self.inner.shared.set
    }

    pub fn direct_io(&self) -> &[bool] {
        &self.inner.shared.direct
    }

    /// Run a task of the caller's (for example an HTTP listener) on core `core`'s event loop.
    /// `f` builds the future there, so it may hold `!Send` state.
    pub fn spawn_on<F, Fut>(&self, core: usize, f: F) -> Result<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let job: crate::core::Job = Box::new(move |_core| {
            monoio::spawn(f());
        });
        self.inner.shared.senders[core].send(CoreMsg::Job(job)).map_err(|_| Error::ShuttingDown)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The tablet and core that own (bucket, key).
    pub fn owner(&self, bucket: &str, key: &str) -> (u32, usize) {
        let set = &self.inner.shared.set;
        let p = (key_hash(bucket, key) % set.partitions as u64) as usize;
        let tablet = set.table[p] as u32;
        (tablet, self.inner.shared.core_of_tablet(tablet))
    }

    /// How many tablets the partitions map to.
    fn tablet_count(&self) -> usize {
        self.inner.shared.set.table.iter().map(|t| *t as usize + 1).max().unwrap_or(1)
    }

    fn home_core(&self) -> usize {
        crate::core::current_core().filter(|c| *c < self.cores()).unwrap_or(0)
    }

    // ------------------------------------------------------------------ buckets

    pub async fn create_bucket(&self, name: &str) -> Result<()> {
        if !valid_bucket_name(name) {
            return Err(RequestError::InvalidBucketName(name.into()).into());
        }
        let shared = self.shared().clone();
        let _g = shared.bucket_lock.lock().await;
        let n = name.to_string();
        let c0 = shared.core_of_tablet(0);
        let created = shared
            .on(c0, move |core| async move {
                if core.buckets.borrow().contains_key(&n) {
                    return Err(RequestError::BucketAlreadyExists(n).into());
                }
                let created_ms = crate::util::unix_ms();
                core.tablet(0)?.commit_public(Record::BucketCreate { name: n, created_ms }).await?;
                Ok(created_ms)
            })
            .await?;
        let n = name.to_string();
        shared
            .on_all(move |core| {
                let n = n.clone();
                async move {
                    core.buckets.borrow_mut().insert(n, created);
                    Ok(())
                }
            })
            .await?;
        Ok(())
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        let shared = self.shared().clone();
        let _g = shared.bucket_lock.lock().await;
        self.head_bucket(name).await?;
        let n = name.to_string();
        let prepared = shared
            .on_all(move |core| {
                let n = n.clone();
                async move { Ok(core.prepare_bucket_delete(&n)) }
            })
            .await?;
        if let Some(Err(e)) = prepared.into_iter().find(|r| r.is_err()) {
            let n = name.to_string();
            shared
                .on_all(move |core| {
                    let n = n.clone();
                    async move {
                        core.deleting.borrow_mut().remove(&n);
                        Ok(())
                    }
                })
                .await?;
            return Err(e);
        }
        let n = name.to_string();
        let c0 = shared.core_of_tablet(0);
        let committed = shared
            .on(c0, move |core| async move { core.tablet(0)?.commit_public(Record::BucketDelete { name: n }).await })
            .await;
        let n = name.to_string();
        let ok = committed.is_ok();
        shared
            .on_all(move |core| {
                let n = n.clone();
                async move {
                    core.deleting.borrow_mut().remove(&n);
                    if ok {
                        core.buckets.borrow_mut().remove(&n);
                    }
                    Ok(())
                }
            })
            .await?;
        committed
    }

    /// Set (`Some`) or remove (`None`) a bucket's attribute `attr` (its policy, ...): durable
    /// in tablet 0's log before this returns, and removed with the bucket. Attribute names
    /// are the caller's; values are opaque text to the engine.
    pub async fn set_bucket_attr(&self, bucket: &str, attr: &str, value: Option<String>) -> Result<()> {
        let shared = self.shared().clone();
        // Serialized with bucket creation and deletion: an attribute never outlives its bucket.
        let _g = shared.bucket_lock.lock().await;
        let (b, a) = (bucket.to_string(), attr.to_string());
        let c0 = shared.core_of_tablet(0);
        shared
            .on(c0, move |core| async move {
                core.bucket_exists(&b)?;
                core.tablet(0)?.commit_public(Record::BucketAttr { bucket: b, attr: a, value }).await
            })
            .await
    }

    /// Every bucket's attributes as (bucket, attribute, value), or one bucket's.
    pub async fn bucket_attrs(&self, bucket: Option<&str>) -> Result<Vec<(String, String, String)>> {
        let shared = self.shared().clone();
        let c0 = shared.core_of_tablet(0);
        let b = bucket.map(str::to_string);
        shared.on(c0, move |core| async move { Ok(core.tablet(0)?.bucket_attrs(b.as_deref())) }).await
    }

    /// Set (`Some`) or remove (`None`) the node-wide attribute `name` (a user, ...): durable in
    /// tablet 0's log before this returns. Names and values are the caller's; the engine keeps
    /// them as given (a user's record holds its secret keys: the metadata log is as private as
    /// the data directory's permissions make it).
    pub async fn set_system_attr(&self, name: &str, value: Option<String>) -> Result<()> {
        let shared = self.shared().clone();
        let n = name.to_string();
        let c0 = shared.core_of_tablet(0);
        shared
            .on(
                c0,
                move |core| async move { core.tablet(0)?.commit_public(Record::SystemAttr { name: n, value }).await },
            )
            .await
    }

    /// Every node-wide attribute as (name, value), in name order.
    pub async fn system_attrs(&self) -> Result<Vec<(String, String)>> {
        let shared = self.shared().clone();
        let c0 = shared.core_of_tablet(0);
        shared.on(c0, move |core| async move { Ok(core.tablet(0)?.system_attrs()) }).await
    }

    pub async fn head_bucket(&self, name: &str) -> Result<BucketInfo> {
        let n = name.to_string();
        self.shared()
            .on(self.home_core(), move |core| async move {
                core.bucket_exists(&n)?;
                let created_ms = core.buckets.borrow().get(&n).copied().unwrap_or(0);
                Ok(BucketInfo { name: n, created_ms })
            })
            .await
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.shared()
            .on(self.home_core(), move |core| async move {
                let del = core.deleting.borrow();
                Ok(core
                    .buckets
                    .borrow()
                    .iter()
                    .filter(|(n, _)| !del.contains(*n))
                    .map(|(n, c)| BucketInfo { name: n.clone(), created_ms: *c })
                    .collect())
            })
            .await
    }

    // ------------------------------------------------------------------ objects

    pub async fn put_object(&self, bucket: &str, key: &str, opts: PutOptions, body: PutBody) -> Result<ObjectInfo> {
        crate::tablet::check_key(key)?;
        let (t, c) = self.owner(bucket, key);
        let (b, k) = (bucket.to_string(), key.to_string());
        self.shared().on_request(c, move |core| async move { core.tablet(t)?.put_object(b, k, opts, body).await }).await
    }

    /// Convenience for tests and tools: put a whole in-memory body.
    pub async fn put_bytes(&self, bucket: &str, key: &str, opts: PutOptions, data: bytes::Bytes) -> Result<ObjectInfo> {
        let (tx, rx) = body_channel();
        let feed = async move {
            let mut off = 0;
            while off < data.len() {
                let n = (data.len() - off).min(1 << 20);
                if tx.send_async(BodyItem::Data(data.slice(off..off + n))).await.is_err() {
                    return;
                }
                off += n;
            }
            let _ = tx.send_async(BodyItem::End { checksum: None }).await;
        };
        let (_, r) = futures::join!(feed, self.put_object(bucket, key, opts, rx));
        r
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        crate::tablet::check_key(key)?;
        let (t, c) = self.owner(bucket, key);
        let (b, k) = (bucket.to_string(), key.to_string());
        self.shared().on_request(c, move |core| async move { core.tablet(t)?.head_object(&b, &k) }).await
    }

    /// Start reading an object (or a range of it): the info, the resolved range and a stream
    /// of the bytes.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<RangeSpec>,
    ) -> Result<(ObjectInfo, ByteRange, GetBody)> {
        match self.get_object_if(bucket, key, range, |_| true).await? {
            ReadOutcome::Stream(info, r, body) => Ok((info, r, body)),
            ReadOutcome::Declined(_) => unreachable!("a read that always proceeds was declined"),
        }
    }

    /// Read an object if `proceed` accepts it. `proceed` runs on the owner core against the
    /// object as it is there, before a range is resolved or a stripe read (conditions come
    /// before ranges, RFC 9110 13.2.2): a declined read returns the object's metadata only.
    pub async fn get_object_if(
        &self,
        bucket: &str,
        key: &str,
        range: Option<RangeSpec>,
        proceed: impl FnOnce(&ObjectInfo) -> bool + Send + 'static,
    ) -> Result<ReadOutcome> {
        crate::tablet::check_key(key)?;
        let (t, c) = self.owner(bucket, key);
        let (b, k) = (bucket.to_string(), key.to_string());
        self.shared().on_request(c, move |core| async move { core.tablet(t)?.get_object(b, k, range, proceed) }).await
    }

    /// Convenience: read a whole object (or range) into memory.
    pub async fn get_bytes(&self, bucket: &str, key: &str, range: Option<RangeSpec>) -> Result<(ObjectInfo, Vec<u8>)> {
        let (info, r, rx) = self.get_object(bucket, key, range).await?;
        let mut out = Vec::with_capacity((r.end - r.start) as usize);
        while let Ok(chunk) = rx.recv_async().await {
            out.extend_from_slice(&chunk?);
        }
        if out.len() as u64 != r.end - r.start {
            return Err(
                StorageError::Unreadable(format!("read {} bytes, expected {}", out.len(), r.end - r.start)).into()
            );
        }
        Ok((info, out))
    }

    pub async fn delete_object(&self, bucket: &str, key: &str, if_match: Option<String>) -> Result<()> {
        let (t, c) = self.owner(bucket, key);
        let (b, k) = (bucket.to_string(), key.to_string());
        self.shared()
            .on_request(c, move |core| async move { core.tablet(t)?.delete_object(b, k, if_match).await })
            .await
    }

    /// Server-side copy: stream the source (or a range of it) from its owner into a new
    /// object at the destination. `check` sees the source's info first (copy-source
    /// conditions) and may refuse; `headers` replaces the source's headers (REPLACE).
    pub async fn copy_object(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
        range: Option<RangeSpec>,
        headers: Option<ObjectHeaders>,
        mut opts: PutOptions,
        check: impl Fn(&ObjectInfo) -> Result<()> + Clone + Send + 'static,
    ) -> Result<ObjectInfo> {
        // The source's conditions are decided on its owner core before any of it is read; a
        // declined source is checked again here for the error to return.
        let on_owner = check.clone();
        let (info, rx) = match self.get_object_if(src.0, src.1, range, move |i| on_owner(i).is_ok()).await? {
            ReadOutcome::Stream(info, _, rx) => (info, rx),
            ReadOutcome::Declined(info) => {
                check(&info)?;
                return Err(RequestError::PreconditionFailed.into());
            }
        };
        opts.headers = headers.unwrap_or_else(|| info.headers.clone());
        let (tx, body) = body_channel();
        let checksum = opts.headers.checksum.take();
        let pump = async move {
            while let Ok(chunk) = rx.recv_async().await {
                let item = match chunk {
                    Ok(b) => BodyItem::Data(b),
                    Err(e) => BodyItem::Abort(format!("reading the copy source failed: {e}")),
                };
                let abort = matches!(item, BodyItem::Abort(_));
                if tx.send_async(item).await.is_err() || abort {
                    return;
                }
            }
            let _ = tx.send_async(BodyItem::End { checksum: if range.is_none() { checksum } else { None } }).await;
        };
        let (_, r) = futures::join!(pump, self.put_object(dst.0, dst.1, opts, body));
        r
    }

    /// List a bucket: keys (and common prefixes) in order, merged from every core.
    pub async fn list_objects(&self, bucket: &str, q: ListQuery) -> Result<ListPage> {
        self.head_bucket(bucket).await?;
        let max = q.max_keys;
        // Keys are spread over the tablets by hash, so each holds about 1/n of any key range:
        // ask each for a little more than its part of the page, and for more only from a tablet
        // whose batch ends before the page is complete. Common prefixes repeat across tablets,
        // so with a delimiter every tablet is asked for a whole page.
        let tablet_count = self.tablet_count().max(1);
        let budget = if q.delimiter.as_deref().is_some_and(|d| !d.is_empty()) {
            max.max(1)
        } else {
            (max + 1) * 5 / (4 * tablet_count) + 2
        };
        let b = bucket.to_string();
        let q2 = ListQuery { max_keys: budget, ..q.clone() };
        let per_core = self
            .shared()
            .on_all(move |core| {
                let (b, q) = (b.clone(), q2.clone());
                async move {
                    Ok(core
                        .tablets
                        .borrow()
                        .iter()
                        .map(|(tid, tablet)| (*tid, tablet.list(&b, &q)))
                        .collect::<Vec<_>>())
                }
            })
            .await?;
        // Per tablet: its items so far, and whether it may hold more after them.
        let mut runs: Vec<TabletRun> = per_core
            .into_iter()
            .flatten()
            .map(|(tid, mut items)| {
                let more = items.len() > budget;
                items.truncate(budget);
                TabletRun { tid, more, items }
            })
            .collect();
        let (mut all, truncated) = loop {
            // Every tablet is complete up to the smallest last key of a tablet that has more.
            let bound: Option<String> =
                runs.iter().filter(|r| r.more).filter_map(|r| r.items.last().map(|i| i.0.sort_key().to_string())).min();
            let mut merged: Vec<(ListItem, [u8; 16], u32)> = runs
                .iter()
                .flat_map(|r| r.items.iter())
                .filter(|i| bound.as_deref().is_none_or(|b| i.0.sort_key() <= b))
                .cloned()
                .collect();
            // Each run is sorted: the stable sort finds the runs and merges them.
            merged.sort_by(|a, b| a.0.sort_key().cmp(b.0.sort_key()));
            merged.dedup_by(
                |a, b| matches!((&a.0, &b.0), (ListItem::CommonPrefix(x), ListItem::CommonPrefix(y)) if x == y),
            );
            let Some(bound) = bound else {
                let truncated = merged.len() > max;
                break (merged, truncated);
            };
            if merged.len() > max {
                break (merged, true);
            }
            // Not a whole page below the bound yet: more from the tablets that end at it.
            for r in runs.iter_mut().filter(|r| r.more && r.items.last().is_some_and(|i| i.0.sort_key() == bound)) {
                let after = r.items.last().map(|i| i.0.sort_key().to_string());
                let q3 = ListQuery { start_after: after, max_keys: budget, ..q.clone() };
                let (b, tid) = (bucket.to_string(), r.tid);
                let c = self.shared().core_of_tablet(tid);
                let more =
                    self.shared().on_request(c, move |core| async move { Ok(core.tablet(tid)?.list(&b, &q3)) }).await?;
                r.more = more.len() > budget;
                r.items.extend(more.into_iter().take(budget));
            }
        };
        all.truncate(max);
        // ETags only for the items kept.
        let all: Vec<ListItem> = all
            .into_iter()
            .map(|(mut item, md5, parts_count)| {
                if let ListItem::Object(e) = &mut item {
                    e.etag = crate::record::etag_of(&md5, parts_count);
                }
                item
            })
            .collect();
        let next_marker = if truncated { all.last().map(|i| i.sort_key().to_string()) } else { None };
        Ok(ListPage { items: all, truncated, next_marker })
    }

    // ------------------------------------------------------------------ multipart

    pub async fn create_multipart(&self, bucket: &str, key: &str, headers: ObjectHeaders) -> Result<String> {
        crate::tablet::check_key(key)?;
        let (t, c) = self.owner(bucket, key);
        let (b, k) = (bucket.to_string(), key.to_string());
        self.shared().on_request(c, move |core| async move { core.tablet(t)?.create_upload(b, k, headers).await }).await
    }

    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        content_md5: Option<[u8; 16]>,
        body: PutBody,
    ) -> Result<PartInfo> {
        let (t, c) = self.owner(bucket, key);
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.shared()
            .on_request(c, move |core| async move {
                core.tablet(t)?.upload_part(b, k, u, part_number, content_md5, body).await
            })
            .await
    }

    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        let (t, c) = self.owner(bucket, key);
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.shared()
            .on_request(c, move |core| async move { core.tablet(t)?.complete_upload(b, k, u, parts, opts).await })
            .await
    }

    pub async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let (t, c) = self.owner(bucket, key);
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.shared().on_request(c, move |core| async move { core.tablet(t)?.abort_upload(b, k, u).await }).await
    }

    /// The upload's headers and its parts in order.
    pub async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(ObjectHeaders, Vec<PartInfo>)> {
        let (t, c) = self.owner(bucket, key);
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.shared().on_request(c, move |core| async move { core.tablet(t)?.list_parts(&b, &k, &u) }).await
    }

    /// Open uploads of a bucket, by key then initiation; up to `max_uploads + 1` so the
    /// caller can tell whether the listing is truncated.
    pub async fn list_uploads(&self, bucket: &str, q: UploadListQuery) -> Result<Vec<UploadInfo>> {
        self.head_bucket(bucket).await?;
        let b = bucket.to_string();
        let max = q.max_uploads;
        let per_core = self
            .shared()
            .on_all(move |core| {
                let (b, q) = (b.clone(), q.clone());
                async move {
                    let mut v = Vec::new();
                    for tablet in core.tablets.borrow().values() {
                        v.extend(tablet.list_uploads(&b, &q));
                    }
                    Ok(v)
                }
            })
            .await?;
        let mut all: Vec<UploadInfo> = per_core.into_iter().flatten().collect();
        all.sort_by(|a, b| (&a.key, a.initiated_ms, &a.upload_id).cmp(&(&b.key, b.initiated_ms, &b.upload_id)));
        all.truncate(max.saturating_add(1));
        Ok(all)
    }

    // ------------------------------------------------------------------ introspection

    pub async fn stats(&self) -> Result<Vec<CoreStats>> {
        self.shared()
            .on_all(|core| async move {
                let mut s = core.stats.borrow().clone();
                s.pool_overflow_allocs = core.pool.overflow_allocs();
                s.pool_peak_bytes = core.pool.peak_bytes();
                let md5 = core.md5.stats();
                (s.md5_chunks, s.md5_batched_chunks, s.md5_flushes) = (md5.chunks, md5.batched_chunks, md5.flushes);
                {
                    let sched = core.sched.borrow();
                    s.sched_bytes = sched.moved_bytes;
                    s.sched_idle_bytes = sched.moved_idle_bytes;
                }
                for tablet in core.tablets.borrow().values() {
                    s.objects += tablet.object_count() as u64;
                    s.segment_files += tablet.segment_file_count() as u64;
                    s.repairs_queued += tablet.repairs_queued() as u64;
                    s.log_bytes += tablet.log_bytes();
                    s.commit_queue_len += tablet.commit_queue_len() as u64;
                }
                Ok(s)
            })
            .await
    }
}

impl Engine {
    /// The node's health: each device (healthy or failed, I/O errors), objects below full
    /// redundancy, and repair and scrub progress. What `tessera status` shows.
    pub async fn status(&self) -> Result<HealthStatus> {
        let per_core = self
            .shared()
            .on_all(|core| async move {
                let healthy = core.healthy.borrow().clone();
                let errors = core.io_errors_total.borrow().clone();
                let stats = core.stats.borrow().clone();
                let paths = core.paths.borrow().clone();
                let (mut below, mut queued, mut waiting, mut passes) = (0u64, 0u64, 0u64, u64::MAX);
                for tablet in core.tablets.borrow().values() {
                    below += tablet.objects_below_redundancy();
                    queued += tablet.repairs_queued() as u64;
                    waiting += tablet.repairs_waiting() as u64;
                    passes = passes.min(tablet.scrub_passes());
                }
                Ok((healthy, errors, stats, below, queued, waiting, passes, paths))
            })
            .await?;
        let set = &self.shared().set;
        let heal = &self.shared().heal;
        let mut st = HealthStatus {
            scrub_passes: u64::MAX,
            io_shares: heal.io_shares,
            scrub_period_secs: heal.scrub_period_secs,
            ..Default::default()
        };
        for (i, z) in set.zones.iter().enumerate() {
            st.devices.push(DeviceHealth {
                index: i as u16,
                zone: set.zone_names.get(*z as usize).cloned().unwrap_or_default(),
                path: per_core.first().and_then(|c| c.7.get(i).cloned().flatten()),
                // A device counts as healthy only if every core agrees.
                healthy: per_core.iter().all(|c| c.0[i]),
                io_errors: per_core.iter().map(|c| c.1[i]).sum(),
            });
        }
        for (_, _, s, below, queued, waiting, passes, _) in per_core {
            st.objects_below_redundancy += below;
            st.repairs_queued += queued;
            st.repairs_waiting += waiting;
            st.repaired_parts += s.repaired_parts;
            st.repaired_stripes += s.repaired_stripes;
            st.repair_failures += s.repair_failures;
            st.scrubbed_bytes += s.scrubbed_bytes;
            st.scrub_errors += s.scrub_errors;
            st.scrub_passes = st.scrub_passes.min(passes);
        }
        if st.scrub_passes == u64::MAX {
            st.scrub_passes = 0;
        }
        Ok(st)
    }

    /// Mark a device failed (or back in service) by hand, on every core: what an operator's
    /// `tessera device fail|replace` calls. A failed device's objects are queued for rebuild
    /// and the logs mirrored on it move to healthy devices.
    pub async fn set_device_health(&self, dev: u16, healthy: bool) -> Result<()> {
        if dev as usize >= self.shared().set.device_count() {
            return Err(StorageError::Layout(format!("no device {dev} in this set")).into());
        }
        self.shared()
            .on(0, move |core| async move {
                let why = if healthy { "marked in service by the operator" } else { "marked failed by the operator" };
                core.ctx.mark_device(dev, healthy, why);
                Ok(())
            })
            .await?;
        // mark_device broadcasts in the background: wait until every core has it.
        self.shared()
            .on_all(move |core| async move {
                if healthy {
                    core.refresh_direct(dev).await;
                }
                core.set_device_health(dev, healthy);
                Ok(())
            })
            .await?;
        Ok(())
    }
}

/// What `Engine::replace_device` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceReport {
    pub device: u16,
    pub zone: String,
    /// The device's path before (`None` if none was known).
    pub old_path: Option<std::path::PathBuf>,
    pub new_path: std::path::PathBuf,
    /// Segment ids below this on the device were lost with the old one.
    pub seg_base: u32,
    /// Objects queued to have shards rebuilt onto the new device (or re-placed).
    pub queued: u64,
    /// Whether O_DIRECT works on the new device.
    pub direct_io: bool,
}

impl Engine {
    /// Replace device `dev` with the new, empty device at `path`, on the running engine:
    /// 1. take the old device out of service on every core (logs move off it, its objects
    ///    are queued), and stop every tablet from using it;
    /// 2. format `path` into the same slot (`superblock::format_replacement`: same set and
    ///    index, and a `seg_base` above every segment id used on the old device, so what the
    ///    index still points at there is known to be lost rather than a fault of the new one);
    /// 3. attach it on every core at its new path, queue every object that had a shard on the
    ///    old device, and bring it back in service.
    ///
    /// The repair task then rebuilds the missing shards onto it (or re-places parts); progress
    /// shows in `status()` (`objects_below_redundancy` falls to 0). `force` allows a `path`
    /// that holds tessera data (see `format_replacement`). A restart must list the device at
    /// `path` (the superblock there says which slot it is).
    pub async fn replace_device(&self, dev: u16, path: &std::path::Path, force: bool) -> Result<ReplaceReport> {
        let shared = self.shared().clone();
        let set = &shared.set;
        if dev as usize >= set.device_count() {
            return Err(StorageError::Layout(format!(
                "no device {dev} in this set: devices are numbered 0 to {}",
                set.device_count().saturating_sub(1)
            ))
            .into());
        }
        let _one_at_a_time = shared.replace_lock.lock().await;
        let paths = shared.on(0, |core| async move { Ok(core.paths.borrow().clone()) }).await?;
        let old_path = paths.get(dev as usize).cloned().flatten();
        // Refuse what can be refused before anything changes: a refused replacement leaves
        // the device it names as it was (in service, if it was).
        check_replacement_path(&paths, dev, path)?;
        {
            let (set, paths, path, old) = (set.clone(), paths.clone(), path.to_path_buf(), old_path.clone());
            shared
                .blocking
                .run(move || {
                    superblock::check_replacement(&set, &paths, dev, &path, force)?;
                    // Held by another process? (The old device's own directory is ours, and is
                    // refused above unless forced.)
                    if path.exists() && old.as_deref().is_none_or(|o| !superblock::same_path(o, &path)) {
                        drop(DirLock::acquire(&path, "device")?);
                    }
                    Ok(())
                })
                .await?;
        }
        self.set_device_health(dev, false).await?;
        let next = shared.on_all(move |core| async move { Ok(core.detach_device(dev)) }).await?;
        let seg_base = next.into_iter().max().unwrap_or(0).max(1);
        // The old device is out of service on every core: let go of its directory, so a
        // replacement path that turns out to be that same directory (moved) is refused for what
        // it is, a device of this set, not for being locked by ourselves.
        self.inner.locks.lock().unwrap_or_else(|p| p.into_inner()).retain(|l| Some(l.path()) != old_path.as_deref());
        let formatted = {
            let (set, paths, path) = (set.clone(), paths.clone(), path.to_path_buf());
            // Blocking file system work (fsyncs, maybe removals, the O_DIRECT probe): on a thread
            // of its own, not on the event loop of whoever called (the admin endpoint runs on a
            // core).
            let (tx, rx) = futures::channel::oneshot::channel();
            std::thread::Builder::new()
                .name("tessera-format".into())
                .spawn(move || {
                    // Locked before it is formatted when it exists (a directory another process
                    // holds is never erased), else as soon as formatting has made it.
                    let formatted = (|| {
                        let early = if path.exists() { Some(DirLock::acquire(&path, "device")?) } else { None };
                        superblock::format_replacement(&set, &paths, dev, &path, seg_base, force)?;
                        let lock = match early {
                            Some(l) => l,
                            None => DirLock::acquire(&path, "device")?,
                        };
                        Ok((lock, crate::io::probe_direct(&path)))
                    })();
                    let _ = tx.send(formatted);
                })
                .map_err(|e| StorageError::Io(format!("cannot start the format thread: {e}")))?;
            rx.await
                .map_err(|_| {
                    Error::Storage(StorageError::Io("formatting the replacement stopped without an answer".into()))
                })
                .and_then(|r| r)
        };
        let (lock, direct) = match formatted {
            Ok(done) => done,
            Err(e) => {
                // The old device stays failed (and detached): nothing points the set at `path`.
                let _ = shared
                    .on_all(move |core| async move {
                        core.end_replacing(dev);
                        Ok(())
                    })
                    .await;
                return Err(e);
            }
        };
        self.inner.locks.lock().unwrap_or_else(|p| p.into_inner()).push(lock);
        if !direct {
            tracing::warn!(
                "O_DIRECT is refused on {} (tmpfs or overlay?): using buffered I/O with fdatasync there",
                path.display()
            );
        }
        let p = path.to_path_buf();
        let queued: u64 = shared
            .on_all(move |core| {
                let p = p.clone();
                async move {
                    core.attach_replacement(dev, &p, direct, seg_base);
                    Ok(core.tablets.borrow().values().map(|t| t.repairs_queued() as u64).sum::<u64>())
                }
            })
            .await?
            .into_iter()
            .sum();
        self.set_device_health(dev, true).await?;
        let zone = set.zone_names.get(set.zones[dev as usize] as usize).cloned().unwrap_or_default();
        tracing::warn!(
            "device {dev} (zone {zone}) replaced: {} -> {} (segments below {seg_base} lost); {queued} object(s) queued for rebuild",
            old_path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
            path.display()
        );
        Ok(ReplaceReport {
            device: dev,
            zone,
            old_path,
            new_path: path.to_path_buf(),
            seg_base,
            queued,
            direct_io: direct,
        })
    }
}

/// Lock every listed device directory that exists, before anything reads or writes it. One that
/// cannot be opened is left to `superblock::open`, which reports it unavailable; one that
/// another process holds refuses the whole start.
fn lock_devices(devices: &[crate::layout::DeviceSpec]) -> Result<Vec<DirLock>> {
    let mut locks = Vec::with_capacity(devices.len());
    for d in devices {
        match DirLock::acquire(&d.path, &format!("device {}", d.zone)) {
            Ok(l) => locks.push(l),
            Err(e @ Error::Storage(StorageError::InUse(_))) => return Err(e),
            Err(e) => tracing::debug!("device {}={} not locked: {e}", d.zone, d.path.display()),
        }
    }
    Ok(locks)
}

/// A replacement may not take the path of another device of the set.
fn check_replacement_path(paths: &[Option<std::path::PathBuf>], dev: u16, path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(StorageError::Layout("the replacement device's path is empty".into()).into());
    }
    for (j, p) in paths.iter().enumerate() {
        if j != dev as usize && p.as_deref() == Some(path) {
            return Err(StorageError::Layout(format!(
                "{} is the path of device {j} of this set: a replacement needs its own empty device",
                path.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// Check a layout and format its devices (see `Layout::check` for the zone rule).
pub fn format(layout: &crate::layout::Layout) -> Result<u128> {
    superblock::format(layout)
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Engine>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_the_engine_cannot_run_with_are_refused_before_anything_is_opened() {
        // No devices: a configuration that passed validation would fail later, at the lock.
        let ok = EngineConfig::new(Vec::new());
        assert!(ok.validate().is_ok());
        let refused = |f: &dyn Fn(&mut EngineConfig), words: &str| {
            let mut c = EngineConfig::new(Vec::new());
            f(&mut c);
            match Engine::open(c) {
                Err(Error::Storage(StorageError::Layout(m))) => assert!(m.contains(words), "{m}"),
                Err(e) => panic!("{words}: {e}"),
                Ok(_) => panic!("{words}: opened"),
            }
        };
        refused(&|c| c.segment_bytes = 0, "segment size");
        refused(&|c| c.segment_bytes = (1 << 20) + 512, "segment size");
        refused(&|c| c.chunk_bytes = 6000, "chunk size");
        refused(
            &|c| {
                c.segment_bytes = 1 << 20;
                c.set_chunk_bytes(4 << 20);
            },
            "does not fit in a segment",
        );
        refused(&|c| c.stripes_in_flight = 0, "at least 1");
        refused(&|c| c.mailbox_depth_max = 0, "at least 1");
    }
}
