//! The `heal-share` workload: does a rebuild leave the foreground the share it was promised?
//!
//! Each run formats a fresh 9-device set (3 zones of 3, EC 4+2, so a failed device's shards
//! can be re-placed zone-safely), PUTs `--objects` objects for the rebuild to chew on, then,
//! in the same engine, side by side:
//!
//! 1. **alone**: the foreground load (PUTs and GETs of `--size` objects) for `--duration-secs`;
//! 2. **with repair**: one device is marked failed (`Engine::set_device_health`), which queues
//!    every object with a shard there for rebuild; the GET keys are rewritten (untimed) so no
//!    foreground GET needs a degraded read, then the same load runs for `--duration-secs`
//!    while the repair task re-places parts at its share;
//! 3. **repair alone**: no foreground; the rebuild runs at full speed for up to
//!    `--duration-secs` (its rate for comparison).
//!
//! The scheduler's promise (`engine::sched`): while the foreground is busy, repair takes at
//! most `repair_percent` of the bytes moved, so the foreground should keep at least
//! `1 - repair_percent/100` of the throughput it had alone. The report gives, per run and as
//! medians, foreground MB/s alone and with repair, their ratio against that promise, and the
//! repair's progress (client bytes rebuilt per second) in phases 2 and 3.
//!
//! Scrub and the health probe are off so the only background work is the rebuild.

use crate::engine_mode::{self, Limit, BUCKET};
use crate::stats::{self, OpResult};
use bytes::Bytes;
use engine::util::human_bytes;
use engine::{DeviceSpec, Engine, EngineConfig, HealConfig, IoShares, Layout};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Devices of the set, 3 per zone.
const DEVICES: usize = 9;
/// How often the repair-alone phase polls the engine's counters.
const POLL_MS: u64 = 100;

#[derive(clap::Args, Debug, Clone)]
pub struct HealShareArgs {
    /// Engine cores (threads); 0 = one per CPU.
    #[arg(long, default_value_t = 0)]
    pub cores: usize,
    /// Leave engine core threads unpinned.
    #[arg(long)]
    pub no_pin: bool,
    /// Tablets (slices of the key space) at format time; default 2 per CPU. (The flag keeps
    /// its name from before the rename of shard to tablet.)
    #[arg(long)]
    pub shards: Option<u32>,
    /// Size of every object (populated and foreground).
    #[arg(long, default_value = "4MiB", value_parser = stats::parse_size)]
    pub size: u64,
    /// Objects PUT before the measurement: what the rebuild re-places (those with a shard on
    /// the failed device, about 2/3 of them). Enough that the rebuild outlasts phase 2.
    #[arg(long, default_value_t = 400)]
    pub objects: u64,
    /// Distinct foreground keys for GETs. Foreground PUTs always write new keys (no
    /// overwrites: their garbage would wake compaction, a third class, during the phases).
    #[arg(long, default_value_t = 32)]
    pub fg_objects: u64,
    /// Percent of foreground operations that are GETs (the rest are PUTs).
    #[arg(long, default_value_t = 50)]
    pub get_pct: u64,
    /// The foreground load (and the untimed fills).
    #[command(flatten)]
    pub load: engine_mode::LoadShape,
    /// Independent runs (fresh device set each); the table reports their medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Segment file size (preallocated: 9 devices x tablets of them exist at once).
    #[arg(long, default_value = "64MiB", value_parser = stats::parse_size)]
    pub segment_bytes: u64,
    /// Device to fail (0..9).
    #[arg(long, default_value_t = 0)]
    pub fail_device: u16,
    /// Repair's share of the bytes moved while the foreground is busy, percent (the engine's
    /// default is 20).
    #[arg(long, default_value_t = IoShares::default().repair_percent)]
    pub repair_share: u32,
    /// Where the device sets go (a fresh subdirectory per run, removed after it). Default: the
    /// current directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: run one measurement in this process and write its result here. Each run is
    /// a child process because a shut-down `Engine` keeps its segment files open (their
    /// space would stay allocated for the next run).
    #[arg(long, hide = true)]
    pub child_result: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunResult {
    populate_mb_per_s: f64,
    /// Foreground MB/s (PUT + GET client bytes) without and with the rebuild running.
    fg_alone_mb_per_s: f64,
    fg_with_repair_mb_per_s: f64,
    /// fg_with_repair / fg_alone.
    fg_ratio: f64,
    /// Client bytes rebuilt per second while the foreground ran, and with no foreground.
    repair_with_fg_mb_per_s: f64,
    repair_alone_mb_per_s: f64,
    /// Repair's fraction of the client bytes moved in phase 2 (the scheduler's own measure).
    repair_byte_share: f64,
    /// Repair still had work queued when phase 2 ended (else phase 2 was partly repair-free).
    repair_busy_whole_phase: bool,
    /// Phase 2 as the I/O scheduler counted it, in device bytes: repair's share of repair +
    /// foreground bytes while the foreground was busy, repair MB let through while it was
    /// idle, and compaction MB.
    sched_repair_device_share: f64,
    sched_repair_idle_mb: f64,
    sched_compaction_mb: f64,
    /// Degraded (parity) reads during the foreground phase with repair.
    degraded_reads: u64,
    errors: u64,
    /// Foreground operations and p99 latency (us), alone and with repair.
    fg_alone_ops: u64,
    fg_with_repair_ops: u64,
    fg_alone_p99_us: u64,
    fg_with_repair_p99_us: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    workload: &'static str,
    command: String,
    cpus: usize,
    kernel: String,
    filesystem: String,
    repair_share_percent: u32,
    promised_fg_ratio: f64,
    runs: Vec<RunResult>,
    median: Summary,
}

#[derive(Debug, Serialize)]
struct Summary {
    fg_alone_mb_per_s: f64,
    fg_with_repair_mb_per_s: f64,
    fg_ratio: f64,
    repair_with_fg_mb_per_s: f64,
    repair_alone_mb_per_s: f64,
    repair_byte_share: f64,
    promise_kept: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn layout9(root: &Path, shards: u32) -> Layout {
    let mut l = Layout::embedded(root, shards);
    l.devices =
        (0..DEVICES).map(|i| DeviceSpec::new(format!("z{}", i / 3 + 1), root.join(format!("dev{i}")))).collect();
    l
}

/// Client bytes rebuilt so far, over all cores.
fn repaired_bytes(e: &Engine) -> Result<u64, String> {
    let st = futures::executor::block_on(e.stats()).map_err(|e| format!("engine stats: {e}"))?;
    Ok(st.iter().map(|s| s.repaired_bytes).sum())
}

/// The scheduler's device-byte counters summed over cores: (per class, per class while idle).
fn sched_bytes(e: &Engine) -> Result<([u64; 4], [u64; 4]), String> {
    let st = futures::executor::block_on(e.stats()).map_err(|e| format!("engine stats: {e}"))?;
    let (mut all, mut idle) = ([0u64; 4], [0u64; 4]);
    for s in &st {
        for c in 0..4 {
            all[c] += s.sched_bytes[c];
            idle[c] += s.sched_idle_bytes[c];
        }
    }
    Ok((all, idle))
}

fn degraded_reads(e: &Engine) -> Result<u64, String> {
    let st = futures::executor::block_on(e.stats()).map_err(|e| format!("engine stats: {e}"))?;
    Ok(st.iter().map(|s| s.degraded_reads).sum())
}

fn repairs_queued(e: &Engine) -> Result<u64, String> {
    let st = futures::executor::block_on(e.stats()).map_err(|e| format!("engine stats: {e}"))?;
    Ok(st.iter().map(|s| s.repairs_queued).sum())
}

/// PUT keys `{prefix}{0..n}` (untimed); errors if any PUT failed.
fn fill(e: &Engine, args: &HealShareArgs, prefix: &str, n: u64, data: &Bytes) -> Result<OpResult, String> {
    let r = engine_mode::run_load(&format!("fill {prefix}"), args.size, &args.load, Limit::Ops(n), |i| {
        engine_mode::put(e, format!("{prefix}{i}"), data)
    });
    if r.errors > 0 {
        return Err(format!(
            "writing {prefix}*: {} of {n} PUTs failed (first: {})",
            r.errors,
            r.first_error.as_deref().unwrap_or("?")
        ));
    }
    Ok(r)
}

/// The foreground load: `get_pct`% GETs of `fgg-*`, the rest PUTs of new keys `fgp-{name}-*`.
fn foreground(e: &Engine, args: &HealShareArgs, name: &str, data: &Bytes) -> OpResult {
    let n = args.fg_objects.max(1);
    let until = Limit::Until(Instant::now() + Duration::from_secs(args.load.duration_secs));
    engine_mode::run_load(name, args.size, &args.load, until, |i| {
        // A fixed interleaving (i * 37 mod 100) so GETs and PUTs mix evenly in time.
        let get = (i * 37) % 100 < args.get_pct;
        async move {
            if get {
                engine_mode::get(e, format!("fgg-{}", i % n), data, false).await
            } else {
                engine_mode::put(e, format!("fgp-{name}-{i}"), data).await
            }
        }
    })
}

fn one_run(run: usize, root: &Path, args: &HealShareArgs, data: &Bytes) -> Result<RunResult, String> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let shards = args.shards.unwrap_or(2 * cpus as u32);
    let layout = layout9(root, shards);
    engine::format(&layout).map_err(|e| format!("formatting {}: {e}", root.display()))?;
    let mut cfg = EngineConfig::new(layout.devices.clone());
    cfg.cores = args.cores;
    cfg.pin = !args.no_pin;
    cfg.segment_bytes = args.segment_bytes;
    cfg.heal = HealConfig {
        scrub: false,
        health_probe_ms: 0,
        io_shares: IoShares { repair_percent: args.repair_share, ..IoShares::default() },
        ..HealConfig::default()
    };
    let e = Engine::open(cfg).map_err(|e| format!("opening the engine at {}: {e}", root.display()))?;
    let r = measure(run, &e, args, data);
    e.shutdown();
    r
}

fn measure(run: usize, e: &Engine, args: &HealShareArgs, data: &Bytes) -> Result<RunResult, String> {
    futures::executor::block_on(e.create_bucket(BUCKET)).map_err(|e| format!("creating bucket {BUCKET}: {e}"))?;
    let populate = fill(e, args, "obj-", args.objects, data)?;
    fill(e, args, "fgg-", args.fg_objects.max(1), data)?;

    // 1. The foreground alone.
    let alone = foreground(e, args, "alone", data);

    // 2. Fail a device; rewrite the GET keys so foreground GETs never read degraded (that
    //    cost belongs to the failure, not to the rebuild's share), then the same load.
    futures::executor::block_on(e.set_device_health(args.fail_device, false))
        .map_err(|e| format!("failing device {}: {e}", args.fail_device))?;
    fill(e, args, "fgg-", args.fg_objects.max(1), data)?;
    let (rep0, deg0, sch0) = (repaired_bytes(e)?, degraded_reads(e)?, sched_bytes(e)?);
    let with = foreground(e, args, "with-repair", data);
    let (rep1, deg1, sch1) = (repaired_bytes(e)?, degraded_reads(e)?, sched_bytes(e)?);
    // The scheduler's own view of phase 2, in device bytes (index 1 = repair, 3 = compaction).
    let d = |i: usize| (sch1.0[i] - sch0.0[i]) as f64;
    let idle = |i: usize| (sch1.1[i] - sch0.1[i]) as f64;
    let sched_repair_share = (d(1) - idle(1)) / ((d(1) - idle(1)) + d(0)).max(1.0);
    let busy = repairs_queued(e)? > 0;

    // 3. The rebuild alone, until it is done or the phase ends.
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.load.duration_secs);
    while Instant::now() < deadline && repairs_queued(e)? > 0 {
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    let rep2 = repaired_bytes(e)?;
    let repair_alone = (rep2 - rep1) as f64 / 1e6 / t0.elapsed().as_secs_f64();

    let repair_with = (rep1 - rep0) as f64 / 1e6 / with.secs;
    let fg_bytes = with.bytes as f64;
    let r = RunResult {
        populate_mb_per_s: populate.mb_per_s,
        fg_alone_mb_per_s: alone.mb_per_s,
        fg_with_repair_mb_per_s: with.mb_per_s,
        fg_ratio: if alone.mb_per_s > 0.0 { with.mb_per_s / alone.mb_per_s } else { 0.0 },
        repair_with_fg_mb_per_s: repair_with,
        repair_alone_mb_per_s: repair_alone,
        repair_byte_share: (rep1 - rep0) as f64 / ((rep1 - rep0) as f64 + fg_bytes).max(1.0),
        repair_busy_whole_phase: busy,
        sched_repair_device_share: sched_repair_share,
        sched_repair_idle_mb: idle(1) / 1e6,
        sched_compaction_mb: d(3) / 1e6,
        degraded_reads: deg1 - deg0,
        errors: alone.errors + with.errors,
        fg_alone_ops: alone.ops,
        fg_with_repair_ops: with.ops,
        fg_alone_p99_us: alone.latency.p99_us,
        fg_with_repair_p99_us: with.latency.p99_us,
    };
    println!(
        "run {run}: fg alone {:.1} MB/s, with repair {:.1} MB/s ({:.0}%); repair {:.1} MB/s with fg, {:.1} MB/s alone; \
         repair share of bytes {:.0}% (scheduler: {:.0}% of device bytes, {:.0} MB while idle; compaction {:.0} MB){}{}",
        r.fg_alone_mb_per_s,
        r.fg_with_repair_mb_per_s,
        100.0 * r.fg_ratio,
        r.repair_with_fg_mb_per_s,
        r.repair_alone_mb_per_s,
        100.0 * r.repair_byte_share,
        100.0 * r.sched_repair_device_share,
        r.sched_repair_idle_mb,
        r.sched_compaction_mb,
        if busy { "" } else { " (WARNING: the rebuild finished before the phase ended; raise --objects)" },
        if r.errors > 0 { format!(" ({} foreground errors)", r.errors) } else { String::new() },
    );
    Ok(r)
}

/// Run one measurement in a child process (the same binary and arguments plus
/// `--child-result FILE`) and read its result back.
fn spawn_run(run: usize, base: &Path) -> Result<RunResult, String> {
    let result = tempfile::Builder::new()
        .prefix("tessera-heal-share-result-")
        .tempfile_in(base)
        .map_err(|e| format!("creating a result file in {}: {e}", base.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--child-result")
        .arg(result.path())
        .env("TESSERA_HEAL_SHARE_RUN", run.to_string())
        .status()
        .map_err(|e| format!("starting run {run}: {e}"))?;
    if !status.success() {
        return Err(format!("run {run} failed ({status})"));
    }
    let text = std::fs::read_to_string(result.path()).map_err(|e| format!("reading run {run}'s result: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("run {run}'s result is not valid: {e}"))
}

/// The child side of `spawn_run`: one run, its result written to `out`.
fn child(args: &HealShareArgs, base: &Path, out: &Path) -> Result<(), String> {
    let run = std::env::var("TESSERA_HEAL_SHARE_RUN").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let tmp = tempfile::Builder::new()
        .prefix("tessera-heal-share-")
        .tempdir_in(base)
        .map_err(|e| format!("creating a temporary device directory in {}: {e}", base.display()))?;
    let data = engine_mode::payload(args.size as usize, 7);
    let r = one_run(run, tmp.path(), args, &data)?;
    let text = serde_json::to_string(&r).map_err(|e| format!("encoding the result: {e}"))?;
    std::fs::write(out, text).map_err(|e| format!("writing {}: {e}", out.display()))
}

pub fn run(args: HealShareArgs) -> Result<(), String> {
    if args.fail_device as usize >= DEVICES {
        return Err(format!("--fail-device {} is not a device of the {DEVICES}-device set", args.fail_device));
    }
    if args.get_pct > 100 || args.repair_share == 0 || args.repair_share >= 100 {
        return Err("--get-pct must be 0..=100 and --repair-share 1..=99".into());
    }
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    if let Some(out) = &args.child_result {
        return child(&args, &base, out);
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let promised = 1.0 - args.repair_share as f64 / 100.0;
    println!(
        "heal-share: {} runs; {} x {} to rebuild from, {} foreground ({}% GET) at concurrency {}, {} s per phase; \
         repair share {}% => foreground promised >= {:.0}% of its rate alone",
        args.runs,
        args.objects,
        human_bytes(args.size),
        human_bytes(args.size),
        args.get_pct,
        args.load.concurrency,
        args.load.duration_secs,
        args.repair_share,
        100.0 * promised
    );
    let mut runs = Vec::new();
    for run in 1..=args.runs.max(1) {
        runs.push(spawn_run(run, &base)?);
    }
    let med = |f: fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    let fg_ratio = med(|r| r.fg_ratio);
    let summary = Summary {
        fg_alone_mb_per_s: med(|r| r.fg_alone_mb_per_s),
        fg_with_repair_mb_per_s: med(|r| r.fg_with_repair_mb_per_s),
        fg_ratio,
        repair_with_fg_mb_per_s: med(|r| r.repair_with_fg_mb_per_s),
        repair_alone_mb_per_s: med(|r| r.repair_alone_mb_per_s),
        repair_byte_share: med(|r| r.repair_byte_share),
        promise_kept: fg_ratio >= promised,
    };
    println!();
    println!(
        "| run | fg alone MB/s | fg with repair MB/s | fg ratio | promised | repair MB/s (with fg) | repair MB/s (alone) | repair share of bytes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let row = |name: String, a: f64, w: f64, ratio: f64, rw: f64, ra: f64, share: f64| {
        println!(
            "| {name} | {a:.1} | {w:.1} | {:.0}% | ≥ {:.0}% | {rw:.1} | {ra:.1} | {:.0}% |",
            100.0 * ratio,
            100.0 * promised,
            100.0 * share
        )
    };
    for (i, r) in runs.iter().enumerate() {
        row(
            format!("{}", i + 1),
            r.fg_alone_mb_per_s,
            r.fg_with_repair_mb_per_s,
            r.fg_ratio,
            r.repair_with_fg_mb_per_s,
            r.repair_alone_mb_per_s,
            r.repair_byte_share,
        );
    }
    row(
        "**median**".into(),
        summary.fg_alone_mb_per_s,
        summary.fg_with_repair_mb_per_s,
        summary.fg_ratio,
        summary.repair_with_fg_mb_per_s,
        summary.repair_alone_mb_per_s,
        summary.repair_byte_share,
    );
    println!();
    println!(
        "promise {}: foreground kept {:.0}% of its rate alone (promised >= {:.0}%)",
        if summary.promise_kept { "KEPT" } else { "NOT KEPT" },
        100.0 * summary.fg_ratio,
        100.0 * promised
    );
    if let Some(path) = &args.json {
        let report = Report {
            workload: "heal-share",
            command: std::env::args().collect::<Vec<_>>().join(" "),
            cpus,
            kernel: engine_mode::kernel(),
            filesystem: engine_mode::filesystem_of(&base),
            repair_share_percent: args.repair_share,
            promised_fg_ratio: promised,
            runs,
            median: summary,
        };
        stats::write_json(path, &report).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
