//! Cores: one OS thread per CPU, pinned, each running its own monoio event loop and owning
//! its tablets. Work reaches a core only as a message through `Shared::on` — the one place a
//! request leaves the core it is on.

use crate::api::CoreStats;
use crate::buf::BufPool;
use crate::error::{Error, RequestError, Result, StorageError};
use crate::heal::HealConfig;
use crate::md5batch::Md5Batcher;
use crate::sched::{IoClass, IoSched, SCHED_RETRY_MS};
use crate::stripe::Codec;
use crate::superblock::DeviceSet;
use crate::tablet::{start_tablet, Tablet};
use crate::wal::RecoveredLog;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

pub type Job = Box<dyn FnOnce(Rc<Core>) + Send>;

pub enum CoreMsg {
    Job(Job),
    Stop,
}

/// What a hop does when the target core's mailbox is full.
#[derive(Clone, Copy)]
enum WhenFull {
    Wait,
    Refuse,
}

/// What every core and every engine handle share: immutable after open.
pub struct Shared {
    pub set: DeviceSet,
    /// Per device index: whether O_DIRECT works there.
    pub direct: Vec<bool>,
    pub chunk_bytes: usize,
    pub segment_bytes: u64,
    pub pool_buffers: usize,
    /// See `EngineConfig::stripes_in_flight`.
    pub stripes_in_flight: usize,
    pub cores: usize,
    pub senders: Vec<flume::Sender<CoreMsg>>,
    /// Serialises bucket creation and deletion (rare; never on the object data path).
    pub bucket_lock: futures::lock::Mutex<()>,
    /// Serialises device replacements (rare, operator-driven).
    pub replace_lock: futures::lock::Mutex<()>,
    /// Self-healing settings (repair, scrub, health probes, I/O shares).
    pub heal: HealConfig,
    /// See `EngineConfig::md5_batch_min_lanes`.
    pub md5_batch_min_lanes: usize,
    /// See `EngineConfig::log_direct`.
    pub log_direct: bool,
    /// See `EngineConfig::checkpoint_min_bytes`.
    pub checkpoint_min_bytes: u64,
    /// See `EngineConfig::checkpoint_install_delay_ms`.
    pub checkpoint_install_delay_ms: u64,
    /// See `EngineConfig::commit_queue_depth_max`.
    pub commit_queue_depth_max: usize,
    /// See `EngineConfig::repair_queue_depth_max`.
    pub repair_queue_depth_max: usize,
    /// The helper threads that make the system calls a core's thread must not (`blocking`).
    pub blocking: crate::blocking::Blocking,
}

thread_local! {
    static CURRENT_CORE: Cell<Option<usize>> = const { Cell::new(None) };
    /// This thread's core, while its event loop runs (for hops to the core itself).
    static THIS_CORE: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// The calling thread's core if it is core `id`.
fn this_core(id: usize) -> Option<Rc<Core>> {
    THIS_CORE.with(|c| c.borrow().as_ref().filter(|core| core.id == id).cloned())
}

/// The core the calling thread is, if it is one.
pub fn current_core() -> Option<usize> {
    CURRENT_CORE.with(|c| c.get())
}

impl Shared {
    pub fn core_of_tablet(&self, tablet: u32) -> usize {
        tablet as usize % self.cores
    }

    /// Run `f` on core `core` and return its result: the engine's only cross-core hop. Waits
    /// for room when that core's mailbox is full (the engine's own messages, admin, tests).
    pub async fn on<T, F, Fut>(&self, core: usize, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + 'static,
    {
        self.hop(core, f, WhenFull::Wait).await
    }

    /// `on` for a client request: refused with `Error::SlowDown` when the owner core's mailbox
    /// is full, instead of waiting (the client retries later; memory stays bounded).
    pub async fn on_request<T, F, Fut>(&self, core: usize, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + 'static,
    {
        self.hop(core, f, WhenFull::Refuse).await
    }

    async fn hop<T, F, Fut>(&self, core: usize, f: F, when_full: WhenFull) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Core>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + 'static,
    {
        let (tx, rx) = futures::channel::oneshot::channel();
        let job = move |c: Rc<Core>| {
            monoio::spawn(async move {
                let r = f(c).await;
                let _ = tx.send(r);
            });
        };
        // Already on that core: spawn the task here (a task of its own, so dropping the caller
        // never cancels an operation half way), without the channel and the thread wake.
        let remote: Option<Job> = match this_core(core) {
            Some(me) => {
                job(me);
                None
            }
            None => Some(Box::new(job)),
        };
        if let Some(job) = remote {
            let mailbox = &self.senders[core];
            match when_full {
                WhenFull::Wait => mailbox.send_async(CoreMsg::Job(job)).await.map_err(|_| Error::ShuttingDown)?,
                WhenFull::Refuse => match mailbox.try_send(CoreMsg::Job(job)) {
                    Ok(()) => {}
                    Err(flume::TrySendError::Full(_)) => {
                        return Err(Error::SlowDown(format!("core {core} has {} messages waiting", mailbox.len())))
                    }
                    Err(flume::TrySendError::Disconnected(_)) => return Err(Error::ShuttingDown),
                },
            }
        }
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Run `f` on every core; results in core order.
    pub async fn on_all<T, F, Fut>(&self, f: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(Rc<Core>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<T>> + 'static,
    {
        let calls = (0..self.cores).map(|c| {
            let f = f.clone();
            self.on(c, f)
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }
}

/// What a tablet is given by the core that runs it, and all it may reach of that core: the
/// buffer pool, the codec, the MD5 batcher, the I/O scheduler, the device health view, the
/// bucket replica, the statistics and the shared configuration. The core owns its tablets and
/// this context; a tablet holds only the context, so ownership goes one way (core → tablet →
/// context) and nothing has to be broken by hand when the core stops.
///
/// A device health change a tablet causes (`note_io_error`) is applied to this view at once
/// (placement and mirror choice avoid the device from then on) and queued for the core, which
/// tells its tablets (`Core::set_device_health`): a tablet never calls into its siblings.
pub struct CoreCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub pool: BufPool,
    pub codec: RefCell<Codec>,
    /// The ETag MD5 of every PUT on this core, batched over SIMD lanes (`md5batch`).
    pub md5: Rc<Md5Batcher>,
    pub healthy: RefCell<Vec<bool>>,
    /// Each device's path as this core knows it (`DeviceSet::paths` at open; a device
    /// replacement changes it on every core).
    pub paths: RefCell<Vec<Option<PathBuf>>>,
    /// Per device: whether O_DIRECT works there, as last probed (`Shared::direct` at open;
    /// probed again on a helper thread before a device comes back, `refresh_direct`).
    direct: RefCell<Vec<bool>>,
    /// Devices being replaced: the health probe leaves them alone until the replacement is
    /// done.
    pub replacing: RefCell<Vec<bool>>,
    /// Bumped by every change of device health or attachment on this core: a repair that ran
    /// across a change judged the object by a stale state and is tried again.
    pub health_epoch: Cell<u64>,
    /// Health changes applied here that the core has not yet told its tablets, in order.
    device_events: RefCell<Vec<(u16, bool)>>,
    /// This core's replica of the bucket table (tablet 0's log is authoritative).
    pub buckets: RefCell<BTreeMap<String, u64>>,
    /// Buckets being deleted: new writes to them are refused.
    pub deleting: RefCell<HashSet<String>>,
    inflight: RefCell<HashMap<String, u32>>,
    pub stats: RefCell<CoreStats>,
    /// Consecutive I/O errors per device (reset by a success).
    pub io_errors: RefCell<Vec<u32>>,
    /// Total I/O errors per device since start.
    pub io_errors_total: RefCell<Vec<u64>>,
    pub sched: RefCell<IoSched>,
    /// Set when the core leaves its loop: background tasks end at their next wake.
    stopping: Cell<bool>,
    started: std::time::Instant,
}

/// A core: its context and the tablets it runs. Only the core reaches its tablets (hops,
/// health changes, device replacement, bucket deletes); it reads through to its context.
pub struct Core {
    pub ctx: Rc<CoreCtx>,
    pub tablets: RefCell<HashMap<u32, Rc<Tablet>>>,
}

// The core is its context plus its tablets; reading the context's fields through the core
// (`core.buckets`, `core.stats`) keeps the engine's hops as they read before the split. Method
// names of `Core` and `CoreCtx` never coincide, so a call always means the one it says.
impl std::ops::Deref for Core {
    type Target = CoreCtx;
    fn deref(&self) -> &CoreCtx {
        &self.ctx
    }
}

pub struct ForegroundGuard {
    core: Rc<CoreCtx>,
}

impl Drop for ForegroundGuard {
    fn drop(&mut self) {
        let now = self.core.now_ms();
        self.core.sched.borrow_mut().foreground_end(now);
    }
}

pub struct InflightGuard {
    core: Rc<CoreCtx>,
    bucket: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut m = self.core.inflight.borrow_mut();
        let n = m.get_mut(&self.bucket).expect("a bucket counts its writes until their guards drop");
        assert!(*n > 0, "in-flight count of bucket {:?} underflows", self.bucket);
        *n -= 1;
        if *n == 0 {
            m.remove(&self.bucket);
        }
    }
}

impl CoreCtx {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Count foreground device bytes for the I/O scheduler.
    pub fn foreground_io(&self, bytes: u64) {
        let now = self.now_ms();
        self.sched.borrow_mut().foreground(bytes, now);
    }

    /// Device bytes written for `size` client bytes of erasure-coded data: size × (k+m)/k.
    pub fn ec_write_bytes(&self, size: u64) -> u64 {
        let set = &self.shared.set;
        size.saturating_mul((set.k + set.m) as u64) / (set.k as u64).max(1)
    }

    /// Device bytes of copying `size` client bytes of erasure-coded data (a repair re-placing
    /// a part, compaction moving a run): read once, written size × (k+m)/k.
    pub fn copy_bytes(&self, size: u64) -> u64 {
        size.saturating_add(self.ec_write_bytes(size))
    }

    /// The foreground counts as busy for the I/O scheduler while the guard lives (a request
    /// in flight: a long PUT charges its bytes only when it ends).
    pub fn foreground_guard(self: &Rc<Self>) -> ForegroundGuard {
        self.sched.borrow_mut().foreground_begin();
        ForegroundGuard { core: self.clone() }
    }

    /// Wait until background class `class` may move `bytes` (see `sched`).
    pub async fn throttle(&self, class: IoClass, bytes: u64) {
        loop {
            let now = self.now_ms();
            if self.sched.borrow_mut().admit(class, bytes, now) {
                return;
            }
            monoio::time::sleep(std::time::Duration::from_millis(SCHED_RETRY_MS)).await;
        }
    }

    /// A device answered an I/O: its run of consecutive errors ends.
    pub fn note_io_ok(&self, dev: u16) {
        if let Some(n) = self.io_errors.borrow_mut().get_mut(dev as usize) {
            *n = 0;
        }
    }

    /// A device failed an I/O. EIO and ENOENT (a segment that vanished) and failed flushes
    /// fail the device at once; other errors after `device_fail_after_errors` in a row. A
    /// full device (ENOSPC, EDQUOT) is counted apart and never failed (`heal::is_no_space`),
    /// flush or not: the files it could not grow or write belong to a write that fails, so
    /// nothing acknowledged depends on them.
    pub fn note_io_error(self: &Rc<Self>, dev: u16, e: &Error, flush: bool) {
        if crate::heal::is_no_space(e) {
            let n = {
                let mut st = self.stats.borrow_mut();
                st.no_space_errors += 1;
                st.no_space_errors
            };
            // Once, then at 2, 4, 8, ... refusals: a full node under load would log every write.
            if n.is_power_of_two() {
                tracing::warn!("device {dev} is full ({n} writes refused for room on this core): {e}");
            }
            return;
        }
        let i = dev as usize;
        let n = {
            let mut errs = self.io_errors.borrow_mut();
            let Some(n) = errs.get_mut(i) else { return };
            *n += 1;
            *n
        };
        if let Some(t) = self.io_errors_total.borrow_mut().get_mut(i) {
            *t += 1;
        }
        let fatal = flush || crate::heal::is_fatal_io(e) || n >= self.shared.heal.device_fail_after_errors.max(1);
        if fatal && self.healthy.borrow().get(i).copied().unwrap_or(false) {
            let why = format!("{} I/O error(s) in a row, last: {e}", n);
            self.mark_device(dev, false, &why);
        }
    }

    /// Change a device's health in this view (a failure at once), then on every core
    /// (`Shared::on_all`, this one included): each core tells its tablets
    /// (`Core::set_device_health`). A device coming back is first probed for O_DIRECT on each
    /// core (on a helper thread), so its return lands a moment later, from a task.
    pub fn mark_device(self: &Rc<Self>, dev: u16, up: bool, why: &str) {
        if up {
            tracing::warn!("device {dev} is back: {why}");
        } else {
            tracing::error!("device {dev} marked failed: {why}; its shards will be rebuilt elsewhere");
            self.apply_device_health(dev, up);
        }
        let shared = self.shared.clone();
        monoio::spawn(async move {
            let r = shared
                .on_all(move |core| async move {
                    if up {
                        core.refresh_direct(dev).await;
                    }
                    core.set_device_health(dev, up);
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!("could not tell every core about device {dev}: {e}");
            }
        });
    }

    /// Probe again (on a helper thread) whether O_DIRECT works on device `dev` at its current
    /// path, before the device is used again: it may have come back on another filesystem.
    pub async fn refresh_direct(&self, dev: u16) {
        let Some(path) = self.paths.borrow().get(dev as usize).cloned().flatten() else { return };
        if let Ok(ok) = self.shared.blocking.run(move || Ok(crate::io::probe_direct(&path))).await {
            if let Some(d) = self.direct.borrow_mut().get_mut(dev as usize) {
                *d = ok;
            }
        }
    }

    /// Apply a device health change to this view (idempotent): placement and the log mirrors
    /// avoid a failed device from now on. A change is queued for the core to tell its tablets.
    fn apply_device_health(&self, dev: u16, up: bool) {
        let i = dev as usize;
        {
            let mut h = self.healthy.borrow_mut();
            if i >= h.len() || h[i] == up {
                return;
            }
            h[i] = up;
        }
        self.health_epoch.set(self.health_epoch.get() + 1);
        if let Some(n) = self.io_errors.borrow_mut().get_mut(i) {
            *n = 0;
        }
        self.device_events.borrow_mut().push((dev, up));
    }

    /// A replacement that failed after `detach_device`: let the probe look at the device again.
    pub fn end_replacing(&self, dev: u16) {
        if let Some(r) = self.replacing.borrow_mut().get_mut(dev as usize) {
            *r = false;
        }
    }

    /// Whether the core has left its loop (background tasks end).
    pub fn stopping(&self) -> bool {
        self.stopping.get()
    }

    pub fn bucket_exists(&self, name: &str) -> Result<()> {
        if self.buckets.borrow().contains_key(name) && !self.deleting.borrow().contains(name) {
            Ok(())
        } else {
            Err(RequestError::NoSuchBucket(name.to_string()).into())
        }
    }

    /// Count a write in flight into `bucket` (a bucket with writes in flight is not empty).
    pub fn inflight(self: &Rc<Self>, bucket: &str) -> Result<InflightGuard> {
        self.bucket_exists(bucket)?;
        *self.inflight.borrow_mut().entry(bucket.to_string()).or_insert(0) += 1;
        Ok(InflightGuard { core: self.clone(), bucket: bucket.to_string() })
    }
}

impl Core {
    /// Apply a device health change on this core (idempotent), then tell the tablets every
    /// change not yet told, in order: a failed device's objects are queued for rebuild and the
    /// logs mirrored on it move; a device back in service is used again.
    pub fn set_device_health(&self, dev: u16, up: bool) {
        self.ctx.apply_device_health(dev, up);
        loop {
            // Taken before the tablets run: one that notes an I/O error queues a new event.
            let events = std::mem::take(&mut *self.ctx.device_events.borrow_mut());
            if events.is_empty() {
                return;
            }
            let tablets: Vec<Rc<Tablet>> = self.tablets.borrow().values().cloned().collect();
            for (dev, up) in events {
                let path = self.ctx.paths.borrow().get(dev as usize).cloned().flatten();
                let direct = self.ctx.direct.borrow().get(dev as usize).copied().unwrap_or(false);
                for tablet in &tablets {
                    if up {
                        if let Some(p) = &path {
                            tablet.attach_device(dev, p, direct);
                        }
                        // Room to restore redundancy may exist now.
                        tablet.retry_waiting();
                    } else {
                        tablet.device_failed(dev);
                    }
                }
            }
        }
    }

    /// Take part in replacing device `dev` (step one, on every core): stop using it in every
    /// tablet here. Returns the highest next segment id any of them would have used there.
    pub fn detach_device(&self, dev: u16) -> u32 {
        if let Some(r) = self.replacing.borrow_mut().get_mut(dev as usize) {
            *r = true;
        }
        for tablet in self.tablets.borrow().values() {
            tablet.drop_spares_on(dev);
        }
        self.tablets.borrow().values().map(|tablet| tablet.detach_device(dev)).max().unwrap_or(0)
    }

    /// Step two of a replacement, on every core: `path` is device `dev` from now on, a fresh
    /// device whose segment ids start at `base`. Every object that pointed at the old device is
    /// queued to have its shards rebuilt there (or re-placed). The device is not back in
    /// service until `set_device_health(dev, true)`.
    pub fn attach_replacement(&self, dev: u16, path: &std::path::Path, direct: bool, base: u32) {
        let i = dev as usize;
        if let Some(p) = self.paths.borrow_mut().get_mut(i) {
            *p = Some(path.to_path_buf());
        }
        if let Some(d) = self.direct.borrow_mut().get_mut(i) {
            *d = direct;
        }
        if let Some(n) = self.io_errors.borrow_mut().get_mut(i) {
            *n = 0;
        }
        self.health_epoch.set(self.health_epoch.get() + 1);
        for tablet in self.tablets.borrow().values() {
            tablet.attach_replacement(dev, path, direct, base);
            tablet.queue_objects_on(dev);
        }
        if let Some(r) = self.replacing.borrow_mut().get_mut(i) {
            *r = false;
        }
    }

    pub fn tablet(&self, id: u32) -> Result<Rc<Tablet>> {
        self.tablets
            .borrow()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::Storage(StorageError::Io(format!("tablet {id} is not on core {}", self.id))))
    }

    /// Phase one of a bucket delete on this core: refuse if any tablet here holds objects or
    /// uploads of it or writes are in flight; otherwise stop accepting writes to it.
    pub fn prepare_bucket_delete(&self, name: &str) -> Result<()> {
        if self.ctx.inflight.borrow().get(name).is_some_and(|n| *n > 0) {
            return Err(RequestError::BucketNotEmpty(name.into()).into());
        }
        for tablet in self.tablets.borrow().values() {
            if tablet.bucket_in_use(name) {
                return Err(RequestError::BucketNotEmpty(name.into()).into());
            }
        }
        self.deleting.borrow_mut().insert(name.to_string());
        Ok(())
    }
}

/// Everything a core needs to start: its tablets' recovered logs and the bucket table.
pub struct CoreInit {
    pub logs: Vec<(u32, Option<RecoveredLog>)>,
    pub buckets: BTreeMap<String, u64>,
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: plain syscall on a zeroed cpu_set_t of our own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!("could not pin core thread to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}

pub fn run_core(
    id: usize,
    shared: Arc<Shared>,
    rx: flume::Receiver<CoreMsg>,
    init: CoreInit,
    healthy: Vec<bool>,
    pin: bool,
    ready: std::sync::mpsc::Sender<Result<String>>,
) {
    if pin {
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        pin_to_cpu(id % ncpu);
    }
    CURRENT_CORE.with(|c| c.set(Some(id)));
    let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new().with_entries(256).enable_timer().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready
                .send(Err(Error::Storage(StorageError::Io(format!("core {id}: cannot build the event loop: {e}")))));
            return;
        }
    };
    let driver = match &rt {
        monoio::FusionRuntime::Uring(_) => "io_uring",
        monoio::FusionRuntime::Legacy(_) => "epoll (io_uring unavailable)",
    }
    .to_string();
    rt.block_on(async move {
        let ctx = Rc::new(CoreCtx {
            id,
            pool: BufPool::new(shared.chunk_bytes, shared.pool_buffers),
            shared: shared.clone(),
            codec: RefCell::new(Codec::new()),
            md5: Md5Batcher::with_min_lanes(shared.md5_batch_min_lanes),
            healthy: RefCell::new(healthy),
            paths: RefCell::new(shared.set.paths.clone()),
            direct: RefCell::new(shared.direct.clone()),
            replacing: RefCell::new(vec![false; shared.set.device_count()]),
            health_epoch: Cell::new(0),
            device_events: RefCell::new(Vec::new()),
            buckets: RefCell::new(init.buckets),
            deleting: RefCell::new(HashSet::new()),
            inflight: RefCell::new(HashMap::new()),
            stats: RefCell::new(CoreStats { core: id, io_driver: driver.clone(), ..Default::default() }),
            io_errors: RefCell::new(vec![0; shared.set.device_count()]),
            io_errors_total: RefCell::new(vec![0; shared.set.device_count()]),
            sched: RefCell::new(IoSched::new(shared.heal.io_shares)),
            stopping: Cell::new(false),
            started: std::time::Instant::now(),
        });
        let core = Rc::new(Core { ctx, tablets: RefCell::new(HashMap::new()) });
        THIS_CORE.with(|c| *c.borrow_mut() = Some(core.clone()));
        for (tid, log) in init.logs {
            match start_tablet(&core.ctx, tid, log) {
                Ok(s) => {
                    core.tablets.borrow_mut().insert(tid, s);
                }
                Err(e) => {
                    let _ = ready.send(Err(Error::Storage(StorageError::Io(format!(
                        "core {id}: tablet {tid} failed to start: {e}"
                    )))));
                    stop(&core);
                    return;
                }
            }
        }
        for tablet in core.tablets.borrow().values() {
            tablet.start_background();
        }
        if id == 0 && shared.heal.health_probe_ms > 0 {
            crate::heal::start_probe(&core);
        }
        let _ = ready.send(Ok(driver));
        while let Ok(msg) = rx.recv_async().await {
            match msg {
                CoreMsg::Job(f) => f(core.clone()),
                CoreMsg::Stop => break,
            }
        }
        stop(&core);
    });
}

/// Leave the loop: background tasks end at their next wake, and the tablets (their files and
/// buffers) are released while the event loop still runs, not when the runtime drops its tasks.
fn stop(core: &Core) {
    core.ctx.stopping.set(true);
    core.tablets.borrow_mut().clear();
    THIS_CORE.with(|c| c.borrow_mut().take());
}
