//! The `engine` workload: drive `engine::Engine` in-process (no HTTP) and compare its rates
//! with the raw O_DIRECT rates of the same device directories.
//!
//! Phases, in order: raw write/read, large PUT, large GET, small PUT, small GET. Client
//! threads each run `concurrency / client_threads` workers on `futures::executor::block_on`;
//! the engine's futures wake any executor, so no second runtime is involved.

use crate::raw::{self, RawResult};
use crate::stats::{self, Cpu, OpResult, Recorder};
use bytes::Bytes;
use engine::util::human_bytes;
use engine::{Engine, EngineConfig, Layout, PutOptions};
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const BUCKET: &str = "bench";

/// The shape of an engine-direct load (`engine` and `heal-share` share it).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadShape {
    /// Operations in flight at once, over all client threads.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Client threads driving the engine.
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Seconds per phase (`engine`: ignored with --ops).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Engine cores (threads); 0 = one per CPU.
    #[arg(long, default_value_t = 0)]
    pub cores: usize,
    /// Leave engine core threads unpinned (on a CPU shared with other work, a pinned core
    /// cannot move away from a busy CPU).
    #[arg(long)]
    pub no_pin: bool,
    /// Hash every PUT's ETag MD5 alone (the engine's default batches a core's concurrent PUTs
    /// over SIMD lanes): the A/B switch for the MD5 batcher.
    #[arg(long)]
    pub md5_single_stream: bool,
    /// Append to the metadata log through the page cache + fdatasync per mirror (the engine's
    /// default is O_DIRECT|O_DSYNC writes): the A/B switch for the log append path.
    #[arg(long)]
    pub log_buffered: bool,
    /// Tablets (slices of the key space) at format time, each core owning one or more; default
    /// 2 per CPU. (The flag keeps its name from before the rename of shard to tablet.)
    #[arg(long)]
    pub shards: Option<u32>,
    /// Size of the large objects (K/KiB, M/MiB, G/GiB).
    #[arg(long, default_value = "16MiB", value_parser = stats::parse_size)]
    pub size: u64,
    /// Size of the small objects.
    #[arg(long, default_value = "4KiB", value_parser = stats::parse_size)]
    pub small_size: u64,
    #[command(flatten)]
    pub load: LoadShape,
    /// Operations per phase instead of a duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Distinct large keys: PUTs cycle over them (overwriting), GETs read those written.
    #[arg(long, default_value_t = 64)]
    pub objects: u64,
    /// Distinct small keys.
    #[arg(long, default_value_t = 10_000)]
    pub small_objects: u64,
    /// Root of the device set: DIR/dev0..dev5 in 3 zones, EC 4+2 (formatted if new, reused if
    /// already formatted). Default: a temporary directory on the current disk, removed at exit.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Bytes per device for the raw O_DIRECT baseline.
    #[arg(long, default_value = "256MiB", value_parser = stats::parse_size)]
    pub raw_size: u64,
    /// Files written/read at once per device in the raw baseline.
    #[arg(long, default_value_t = 2)]
    pub raw_streams: usize,
    /// After the other phases: PUT this many 0-byte objects under `list/` (untimed), then time
    /// complete paged listings of them (1000 keys a page, one at a time) for --duration-secs.
    #[arg(long, default_value_t = 0)]
    pub list_keys: u64,
    /// Skip the raw baseline.
    #[arg(long)]
    pub skip_raw: bool,
    /// Compare every GET's bytes with what was PUT (costs client CPU).
    #[arg(long)]
    pub verify: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
    filesystem: String,
    root: String,
}

#[derive(Debug, Serialize)]
struct EngineInfo {
    cores: usize,
    pinned: bool,
    shards: u32,
    k: usize,
    m: usize,
    devices: usize,
    io_drivers: Vec<String>,
    direct_io: Vec<bool>,
    pool_overflow_allocs: u64,
    degraded_reads: u64,
    segment_files: u64,
    log_bytes: u64,
    md5_chunks: u64,
    md5_batched_chunks: u64,
    md5_flushes: u64,
}

#[derive(Debug, Serialize)]
struct Ratios {
    /// Large PUT MB/s over (raw write MB/s × k/(k+m)): the share of the disk's write rate the
    /// engine turns into client bytes, parity accounted for.
    put_vs_raw_write_ec: Option<f64>,
    /// Large GET MB/s over raw read MB/s (a healthy GET reads only the k data shards).
    get_vs_raw_read: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    workload: &'static str,
    command: String,
    machine: Machine,
    engine: EngineInfo,
    raw: Option<RawResult>,
    ops: Vec<OpResult>,
    ratios: Ratios,
}

/// How long a phase runs: a count of operations or a deadline.
#[derive(Clone, Copy)]
pub(crate) enum Limit {
    Ops(u64),
    Until(Instant),
}

/// Run `op(i)` for i = 0, 1, 2, ... from `concurrency` workers spread over `threads` client
/// threads until the limit; `op` returns the bytes it moved.
fn run_phase<F, Fut>(name: &str, object_bytes: u64, args: &EngineArgs, limit: Limit, op: F) -> OpResult
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = Result<u64, String>>,
{
    run_load(name, object_bytes, &args.load, limit, op)
}

/// `run_phase` with the load shape given directly: `concurrency` workers over `client_threads`.
pub(crate) fn run_load<F, Fut>(name: &str, object_bytes: u64, load: &LoadShape, limit: Limit, op: F) -> OpResult
where
    F: Fn(u64) -> Fut + Sync,
    Fut: Future<Output = Result<u64, String>>,
{
    let threads = load.client_threads.clamp(1, load.concurrency.max(1));
    let conc = load.concurrency.max(1);
    let next = AtomicU64::new(0);
    let cpu0 = stats::process_cpu_secs();
    let t0 = Instant::now();
    let per_thread: Vec<(Recorder, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let workers = conc / threads + usize::from(t < conc % threads);
                let (next, op) = (&next, &op);
                s.spawn(move || {
                    let c0 = stats::thread_cpu_secs();
                    let worker = || async move {
                        let mut rec = Recorder::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            match limit {
                                Limit::Ops(n) if i >= n => break,
                                Limit::Until(d) if Instant::now() >= d => break,
                                _ => {}
                            }
                            let start = Instant::now();
                            match op(i).await {
                                Ok(bytes) => rec.ok(start.elapsed(), bytes),
                                Err(e) => rec.error(e),
                            }
                        }
                        rec
                    };
                    let recs = futures::executor::block_on(futures::future::join_all((0..workers).map(|_| worker())));
                    let mut total = Recorder::new();
                    for r in recs {
                        total.merge(r);
                    }
                    (total, stats::thread_cpu_secs() - c0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let process_secs = stats::process_cpu_secs() - cpu0;
    let mut rec = Recorder::new();
    let mut client_secs = 0.0;
    for (r, c) in per_thread {
        rec.merge(r);
        client_secs += c;
    }
    OpResult::new(name, object_bytes, conc, rec, secs, Cpu { client_secs, process_secs })
}

fn limit(args: &EngineArgs) -> Limit {
    match args.ops {
        Some(n) => Limit::Ops(n),
        None => Limit::Until(Instant::now() + Duration::from_secs(args.load.duration_secs)),
    }
}

/// Deterministic, incompressible bytes (xorshift), so every run PUTs the same content.
pub(crate) fn payload(len: usize, seed: u64) -> Bytes {
    let mut v = vec![0u8; len.div_ceil(8) * 8];
    let mut x = seed | 1;
    for w in v.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// `--list-keys N`: N empty objects, then full listings 1000 keys at a time; prints keys/s.
fn list_phase(e: &Engine, args: &EngineArgs) -> Result<(), String> {
    let n = args.list_keys;
    let empty = Bytes::new();
    let width = n.to_string().len();
    let r = run_phase("list-prepare", 0, args, Limit::Ops(n), |i| put(e, format!("list/{i:0width$}"), &empty));
    if r.errors > 0 {
        return Err(format!("list: {} of {n} PUTs failed", r.errors));
    }
    let deadline = Instant::now() + Duration::from_secs(args.load.duration_secs.max(1));
    let (mut keys, mut pages, mut passes) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while passes == 0 || Instant::now() < deadline {
        let mut after = None;
        let mut seen = 0u64;
        loop {
            let q = engine::ListQuery { prefix: "list/".into(), delimiter: None, start_after: after, max_keys: 1000 };
            let page = futures::executor::block_on(e.list_objects(BUCKET, q)).map_err(|e| format!("list: {e}"))?;
            seen += page.items.len() as u64;
            pages += 1;
            if !page.truncated {
                break;
            }
            after = page.next_marker;
        }
        if seen != n {
            return Err(format!("list: a full listing returned {seen} keys, expected {n}"));
        }
        keys += seen;
        passes += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "list: {n} keys, {passes} full listing(s), {pages} pages of 1000 in {secs:.2} s = {:.0} keys/s ({:.0} us/page)",
        keys as f64 / secs,
        secs * 1e6 / pages as f64
    );
    Ok(())
}

pub(crate) async fn put(e: &Engine, key: String, data: &Bytes) -> Result<u64, String> {
    let info = e.put_bytes(BUCKET, &key, PutOptions::default(), data.clone()).await.map_err(|e| e.to_string())?;
    if info.size != data.len() as u64 {
        return Err(format!("PUT {key}: engine stored {} bytes, sent {}", info.size, data.len()));
    }
    Ok(info.size)
}

/// GET streaming the body (no copy into one buffer); checks the length, and the bytes with
/// `verify`.
pub(crate) async fn get(e: &Engine, key: String, expect: &Bytes, verify: bool) -> Result<u64, String> {
    let (_, range, rx) = e.get_object(BUCKET, &key, None).await.map_err(|e| format!("GET {key}: {e}"))?;
    let mut n = 0usize;
    while let Ok(chunk) = rx.recv_async().await {
        let chunk = chunk.map_err(|e| format!("GET {key} at byte {n}: {e}"))?;
        if verify && expect.get(n..n + chunk.len()) != Some(&chunk[..]) {
            return Err(format!("GET {key}: bytes {n}..{} differ from what was PUT", n + chunk.len()));
        }
        n += chunk.len();
    }
    if n as u64 != range.end - range.start || n != expect.len() {
        return Err(format!("GET {key}: read {n} bytes, expected {}", expect.len()));
    }
    Ok(n as u64)
}

pub(crate) fn filesystem_of(p: &Path) -> String {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs fills the zeroed struct; the path is a valid C string.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return "unknown".into();
    }
    match s.f_type as i64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        t => format!("fs type {t:#x}"),
    }
}

pub(crate) fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Format the device set under `root` unless it already is; returns its layout.
fn prepare_devices(root: &Path, shards: u32) -> Result<Layout, String> {
    let layout = Layout::embedded(root, shards);
    // A set formatted before (by an earlier run with the same --dir) is reused; a partly
    // formatted one is left for `Engine::open` to explain.
    let formatted = layout.devices.iter().any(|d| d.path.join(engine::superblock::SUPERBLOCK_FILE).exists());
    if !formatted {
        engine::format(&layout).map_err(|e| format!("formatting {}: {e}", root.display()))?;
    }
    Ok(layout)
}

pub fn run(args: EngineArgs) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let tmp;
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("tessera-bench-")
                .tempdir_in(std::env::current_dir().map_err(|e| format!("current directory: {e}"))?)
                .map_err(|e| format!("creating a temporary device directory: {e}"))?;
            tmp.path().to_path_buf()
        }
    };
    let shards = args.shards.unwrap_or(2 * cpus as u32);
    let layout = prepare_devices(&root, shards)?;
    let dirs: Vec<PathBuf> = layout.devices.iter().map(|d| d.path.clone()).collect();
    let machine =
        Machine { cpus, kernel: kernel(), filesystem: filesystem_of(&root), root: root.display().to_string() };
    println!("machine: {} CPUs, kernel {}, {} at {}", machine.cpus, machine.kernel, machine.filesystem, machine.root);

    let raw = if args.skip_raw {
        None
    } else {
        println!(
            "raw: O_DIRECT 1 MiB sequential, {} devices x {} streams, {} per device ...",
            dirs.len(),
            args.raw_streams,
            human_bytes(args.raw_size)
        );
        let cpu0 = stats::process_cpu_secs();
        let r = raw::run(&dirs, args.raw_size, args.raw_streams).map_err(|e| format!("raw baseline: {e}"))?;
        println!(
            "raw: write {:.1} MB/s ({:.2}s, fdatasync included), read {:.1} MB/s ({:.2}s), cpu {:.2}s{}",
            r.write_mb_per_s,
            r.write_secs,
            r.read_mb_per_s,
            r.read_secs,
            stats::process_cpu_secs() - cpu0,
            if r.direct { "" } else { " (BUFFERED: O_DIRECT refused)" }
        );
        Some(r)
    };

    let mut cfg = EngineConfig::new(layout.devices.clone());
    cfg.cores = args.cores;
    cfg.pin = !args.no_pin;
    if args.md5_single_stream {
        cfg.md5_batch_min_lanes = usize::MAX;
    }
    cfg.log_direct = !args.log_buffered;
    let eng = Engine::open(cfg).map_err(|e| format!("opening the engine at {}: {e}", root.display()))?;
    println!(
        "engine: {} cores, {} shards, EC {}+{}, drivers {:?}, O_DIRECT {:?}",
        eng.cores(),
        shards,
        layout.k,
        layout.m,
        eng.io_drivers(),
        eng.direct_io()
    );
    match futures::executor::block_on(eng.create_bucket(BUCKET)) {
        Ok(()) | Err(engine::Error::Request(engine::error::RequestError::BucketAlreadyExists(_))) => {}
        Err(e) => return Err(format!("creating bucket {BUCKET}: {e}")),
    }

    let mut ops = Vec::new();
    let big = payload(args.size as usize, 1);
    let small = payload(args.small_size as usize, 2);
    let e = &eng;

    let r = run_phase("put-large", args.size, &args, limit(&args), |i| {
        put(e, format!("large-{}", i % args.objects.max(1)), &big)
    });
    let written = r.ops.min(args.objects.max(1));
    ops.push(r);
    if written > 0 && ops[0].errors == 0 {
        let (b, v) = (&big, args.verify);
        ops.push(run_phase("get-large", args.size, &args, limit(&args), |i| {
            get(e, format!("large-{}", i % written), b, v)
        }));
    }
    let r = run_phase("put-small", args.small_size, &args, limit(&args), |i| {
        put(e, format!("small-{}", i % args.small_objects.max(1)), &small)
    });
    let written = r.ops.min(args.small_objects.max(1));
    let ok = r.errors == 0;
    ops.push(r);
    if written > 0 && ok {
        let (b, v) = (&small, args.verify);
        ops.push(run_phase("get-small", args.small_size, &args, limit(&args), |i| {
            get(e, format!("small-{}", i % written), b, v)
        }));
    }
    if args.list_keys > 0 {
        list_phase(e, &args)?;
    }

    let core_stats = futures::executor::block_on(eng.stats()).map_err(|e| format!("engine stats: {e}"))?;
    let info = EngineInfo {
        cores: eng.cores(),
        pinned: !args.no_pin,
        shards,
        k: layout.k,
        m: layout.m,
        devices: dirs.len(),
        io_drivers: eng.io_drivers().to_vec(),
        direct_io: eng.direct_io().to_vec(),
        pool_overflow_allocs: core_stats.iter().map(|s| s.pool_overflow_allocs).sum(),
        degraded_reads: core_stats.iter().map(|s| s.degraded_reads).sum(),
        segment_files: core_stats.iter().map(|s| s.segment_files).sum(),
        log_bytes: core_stats.iter().map(|s| s.log_bytes).sum(),
        md5_chunks: core_stats.iter().map(|s| s.md5_chunks).sum(),
        md5_batched_chunks: core_stats.iter().map(|s| s.md5_batched_chunks).sum(),
        md5_flushes: core_stats.iter().map(|s| s.md5_flushes).sum(),
    };
    eng.shutdown();

    let rate = |name: &str| ops.iter().find(|o| o.name == name && o.errors == 0).map(|o| o.mb_per_s);
    let ec = layout.k as f64 / (layout.k + layout.m) as f64;
    let ratios = Ratios {
        put_vs_raw_write_ec: raw.as_ref().zip(rate("put-large")).map(|(r, p)| p / (r.write_mb_per_s * ec)),
        get_vs_raw_read: raw.as_ref().zip(rate("get-large")).map(|(r, g)| g / r.read_mb_per_s),
    };

    println!();
    stats::print_ops(&ops);
    println!();
    if let Some(r) = &raw {
        println!("{:<34} {:>10} {:>10} {:>7}", "comparison", "engine", "ceiling", "ratio");
        let line = |what: &str, eng: Option<f64>, ceil: f64| match eng {
            Some(v) => println!("{what:<34} {v:>10.1} {ceil:>10.1} {:>6.0}%", 100.0 * v / ceil),
            None => println!("{what:<34} {:>10} {ceil:>10.1}", "-"),
        };
        line(
            &format!("large PUT vs raw write x {}/{}", layout.k, layout.k + layout.m),
            rate("put-large"),
            r.write_mb_per_s * ec,
        );
        line("large GET vs raw read", rate("get-large"), r.read_mb_per_s);
    }
    println!(
        "engine: pool overflow allocs {}, degraded reads {}, segment files {}, log bytes {}",
        info.pool_overflow_allocs, info.degraded_reads, info.segment_files, info.log_bytes
    );
    println!(
        "engine: MD5 {} body chunks in {} batches, {:.0}% of them hashed in SIMD lanes with other PUTs{}",
        info.md5_chunks,
        info.md5_flushes,
        100.0 * info.md5_batched_chunks as f64 / info.md5_chunks.max(1) as f64,
        if args.md5_single_stream { " (--md5-single-stream)" } else { "" }
    );

    if let Some(path) = &args.json {
        let report = Report {
            workload: "engine",
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            engine: info,
            raw,
            ops,
            ratios,
        };
        stats::write_json(path, &report).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
