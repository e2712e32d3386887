//! `tessera doctor`: checks the running machine against the bare-metal playbook in `tuning/README.md`.
//!
//! Everything is read from `/proc` and `/sys` (no external commands); a few things are tried
//! live: an io_uring ring is created and dropped (with the `io-uring` crate, as the runtime
//! creates its rings), and each data directory gets an O_DIRECT write probe
//! (`engine::io::probe_direct`) plus a `statfs` for its filesystem type. A file missing on this
//! machine is reported as "not available here" (N/A), never as a failure.
//!
//! Status meanings: FAIL = the engine cannot run as designed in production (it may still run in a
//! degraded fallback, e.g. epoll or buffered I/O); WARN = it runs, but slower or less safely than it
//! could; OK = as recommended; N/A = not available here.

use engine::util::human_bytes;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Memory the engine wants locked at the very least (io_uring rings on kernels before 5.12).
pub const MEMLOCK_MIN_BYTES: u64 = 8 << 20;
/// Per core: the default buffer pool (256 x 256 KiB), all of which is pinned once the hot path
/// registers its buffers with io_uring.
pub const MEMLOCK_PER_CORE_BYTES: u64 = 64 << 20;
/// Below this, many connections plus segment files on every device exhaust descriptors.
pub const NOFILE_MIN: u64 = 4096;
pub const NOFILE_RECOMMENDED: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    NotAvailable,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotAvailable => "N/A",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub current: String,
    pub recommended: String,
    /// Why the engine cares, in one line.
    pub reason: String,
    /// What to change ("nothing" when OK).
    pub fix: String,
}

impl Check {
    fn new(
        name: impl Into<String>,
        status: Status,
        current: impl Into<String>,
        recommended: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status,
            current: current.into(),
            recommended: recommended.into(),
            reason: String::new(),
            fix: String::new(),
        }
    }
    fn why(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
    /// The fix is shown only when the check is not OK.
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = if self.status == Status::Ok { "nothing".into() } else { fix.into() };
        self
    }
    fn not_available(name: impl Into<String>, what: &str, recommended: impl Into<String>) -> Self {
        Check::new(name, Status::NotAvailable, format!("not available here ({what})"), recommended)
    }
}

/// Where `/proc` and `/sys` are read from: `/` on the live machine, a directory tree in tests.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    /// Whether live probes (an io_uring ring) may run; off for a fake tree.
    live: bool,
}

impl Host {
    pub fn live() -> Host {
        Host { root: PathBuf::from("/"), live: true }
    }
    /// A fake machine rooted at `root` (paths like `root/proc/sys/...`); no live probes.
    pub fn at(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into(), live: false }
    }
    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
    /// A file's contents, trimmed; `None` when missing or unreadable.
    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs)).ok().map(|s| s.trim().to_string())
    }
    fn list(&self, abs: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(abs))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort_by_key(|a| natural_key(a));
        v
    }
}

/// Sort `cpu10` after `cpu9`.
fn natural_key(s: &str) -> (String, u64) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = s.split_at(s.len() - digits);
    (head.to_string(), tail.parse().unwrap_or(0))
}

/// What the doctor is asked to look at besides the machine.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// `--data DIR`: the embedded layout's device directories under DIR.
    pub data: Option<PathBuf>,
    /// `--device ZONE=PATH`, already parsed.
    pub devices: Vec<(String, PathBuf)>,
}

// ---------------------------------------------------------------------------------------------
// Parsers (pure; unit-tested)

/// The selected entry of a sysfs choice line: `[mq-deadline] kyber none` → `mq-deadline`.
pub fn parse_selected(line: &str) -> Option<&str> {
    line.split_whitespace().find(|w| w.starts_with('[') && w.ends_with(']') && w.len() > 2).map(|w| &w[1..w.len() - 1])
}

/// Every entry of a sysfs choice line, brackets removed.
pub fn parse_choices(line: &str) -> Vec<&str> {
    line.split_whitespace().map(|w| w.trim_start_matches('[').trim_end_matches(']')).filter(|w| !w.is_empty()).collect()
}

/// `6.18.44-fc-v669` → (6, 18, 44).
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let core = release.trim().split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next()?.ok()?;
    let patch = it.next().and_then(|r| r.ok()).unwrap_or(0);
    Some((major, minor, patch))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    Value(u64),
}

impl Limit {
    fn at_least(self, n: u64) -> bool {
        match self {
            Limit::Unlimited => true,
            Limit::Value(v) => v >= n,
        }
    }
    fn show(self, unit_bytes: bool) -> String {
        match self {
            Limit::Unlimited => "unlimited".into(),
            Limit::Value(v) if unit_bytes => human_bytes(v),
            Limit::Value(v) => v.to_string(),
        }
    }
}

/// A row of `/proc/self/limits`: (soft, hard) for the row whose name starts the line,
/// e.g. `Max locked memory         8388608              8388608              bytes`.
pub fn parse_limit(limits: &str, name: &str) -> Option<(Limit, Limit)> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut it = line[name.len()..].split_whitespace().map(|w| match w {
        "unlimited" => Some(Limit::Unlimited),
        n => n.parse().ok().map(Limit::Value),
    });
    Some((it.next()??, it.next()??))
}

/// Active swap areas from `/proc/swaps`: (name, size KiB).
pub fn parse_swaps(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

/// Whitespace-separated integers (`32768\t60999`, `4096 131072 6291456`).
pub fn parse_ints(text: &str) -> Option<Vec<u64>> {
    text.split_whitespace().map(|w| w.parse().ok()).collect()
}

/// A CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// A mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

/// `/proc/self/mountinfo` lines: `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let mount_opts = left.get(5)?;
            let super_opts = right.get(2).copied().unwrap_or("");
            Some(Mount {
                mount_point: unescape_octal(left.get(4)?),
                fstype: right.first()?.to_string(),
                source: right.get(1).copied().unwrap_or("").to_string(),
                options: format!("{mount_opts},{super_opts}"),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether mount options (`mountinfo`'s mount and superblock options, comma-separated) turn on
/// online discard (`discard`, or `discard=async` on btrfs; `nodiscard` does not).
pub fn online_discard(options: &str) -> bool {
    options.split(',').any(|o| o == "discard" || o.starts_with("discard="))
}

/// The mount holding `path` (already canonical): the longest mount point that prefixes it; the
/// last such line wins, as later mounts shadow earlier ones.
pub fn mount_for<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best.is_none_or(|b| {
                Path::new(&m.mount_point).components().count() >= Path::new(&b.mount_point).components().count()
            })
        {
            best = Some(m);
        }
    }
    best
}

/// Filesystems by `statfs` magic number (`f_type`, compared as its low 32 bits: the kernel's
/// magics are 32-bit and `f_type` is signed on some targets).
const FS_MAGICS: &[(u32, &str)] = &[
    (libc::XFS_SUPER_MAGIC as u32, "xfs"),
    (libc::EXT4_SUPER_MAGIC as u32, "ext2/3/4"),
    (libc::BTRFS_SUPER_MAGIC as u32, "btrfs"),
    (libc::TMPFS_MAGIC as u32, "tmpfs"),
    (libc::OVERLAYFS_SUPER_MAGIC as u32, "overlayfs"),
    (ZFS_SUPER_MAGIC, "zfs"),
    (libc::F2FS_SUPER_MAGIC as u32, "f2fs"),
    (libc::NFS_SUPER_MAGIC as u32, "nfs"),
    (CIFS_SUPER_MAGIC, "cifs"),
    (libc::FUSE_SUPER_MAGIC as u32, "fuse"),
    (libc::PROC_SUPER_MAGIC as u32, "proc"),
    (libc::SYSFS_MAGIC as u32, "sysfs"),
    (V9FS_MAGIC, "9p"),
    (RAMFS_MAGIC, "ramfs"),
];
/// Magics `libc` does not name, from the kernel's `include/uapi/linux/magic.h` (and OpenZFS's
/// `ZFS_SUPER_MAGIC`).
const ZFS_SUPER_MAGIC: u32 = 0x2FC1_2FC1;
const CIFS_SUPER_MAGIC: u32 = 0xFF53_4D42;
const V9FS_MAGIC: u32 = 0x0102_1997;
const RAMFS_MAGIC: u32 = 0x8584_58F6;

/// Name of a filesystem from its `statfs` magic number.
pub fn fs_name(magic: u32) -> &'static str {
    FS_MAGICS.iter().find(|(m, _)| *m == magic).map_or("unknown", |(_, name)| name)
}

// ---------------------------------------------------------------------------------------------
// Live probes

/// Create (and at once drop) a 2-entry io_uring, as each core's runtime does at start.
/// `Ok(the features the kernel reports)` or the error (its errno says why).
pub fn probe_io_uring() -> Result<Vec<&'static str>, std::io::Error> {
    let ring = io_uring::IoUring::new(2)?;
    let p = ring.params();
    let features = [
        (p.is_feature_single_mmap(), "single_mmap"),
        (p.is_feature_nodrop(), "nodrop"),
        (p.is_feature_submit_stable(), "submit_stable"),
        (p.is_feature_rw_cur_pos(), "rw_cur_pos"),
        (p.is_feature_cur_personality(), "cur_personality"),
        (p.is_feature_fast_poll(), "fast_poll"),
        (p.is_feature_poll_32bits(), "poll_32bits"),
        (p.is_feature_sqpoll_nonfixed(), "sqpoll_nonfixed"),
        (p.is_feature_ext_arg(), "ext_arg"),
        (p.is_feature_native_workers(), "native_workers"),
        (p.is_feature_resource_tagging(), "rsrc_tags"),
        (p.is_feature_skip_cqe_on_success(), "cqe_skip"),
        (p.is_feature_linked_file(), "linked_file"),
    ];
    Ok(features.iter().filter(|(has, _)| *has).map(|(_, name)| *name).collect())
}

/// The filesystem magic (`statfs`'s `f_type`, low 32 bits) of the filesystem holding `path`.
pub fn statfs_magic(path: &Path) -> Result<u32, std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is a `struct statfs` for the kernel to fill.
    let r = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it filled the whole struct.
    let st = unsafe { st.assume_init() };
    // The magics are 32-bit; `f_type` is a signed word (negative for some on 32-bit targets).
    Ok(st.f_type as u32)
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Every check, in report order.
pub fn run_checks(host: &Host, opts: &DoctorOptions) -> Vec<Check> {
    let mut out = Vec::new();
    check_kernel(host, &mut out);
    check_io_uring(host, &mut out);
    check_limits(host, &mut out);
    check_thp(host, &mut out);
    check_cpus(host, &mut out);
    check_block(host, opts, &mut out);
    check_net(host, &mut out);
    check_swap(host, &mut out);
    check_data(host, opts, &mut out);
    out
}

fn check_kernel(host: &Host, out: &mut Vec<Check>) {
    let rel = host.read("/proc/sys/kernel/osrelease");
    let v = rel.as_deref().and_then(parse_kernel_version);
    let want = ">= 5.15 (an LTS; 6.1+ preferred)";
    let c = match (&rel, v) {
        (None, _) => Check::not_available("kernel.version", "/proc/sys/kernel/osrelease missing", want),
        (Some(r), None) => Check::new("kernel.version", Status::Warn, format!("{r} (unparsed)"), want),
        (Some(r), Some(v)) if v < (5, 1, 0) => Check::new("kernel.version", Status::Fail, r.clone(), want),
        (Some(r), Some(v)) if v < (5, 15, 0) => Check::new("kernel.version", Status::Warn, r.clone(), want),
        (Some(r), Some(_)) => Check::new("kernel.version", Status::Ok, r.clone(), want),
    };
    out.push(
        c.why("io_uring appeared in 5.1; fast poll, memcg-accounted rings (5.12) and mature O_DIRECT paths need 5.15+")
            .fix("boot a newer LTS kernel"),
    );
}

fn check_io_uring(host: &Host, out: &mut Vec<Check>) {
    let want = "a ring can be created";
    let why = "every core's executor (monoio) needs io_uring; without it cores fall back to epoll (CI only)";
    if !host.live {
        out.push(Check::not_available("io_uring.setup", "probe runs only on the live machine", want).why(why));
    } else {
        let c = match probe_io_uring() {
            Ok(features) => Check::new(
                "io_uring.setup",
                Status::Ok,
                format!("ring created (features: {})", features.join(" ")),
                want,
            ),
            Err(e) => {
                let hint = match e.raw_os_error() {
                    Some(libc::ENOSYS) => {
                        "ENOSYS: kernel built without io_uring (CONFIG_IO_URING) or a seccomp filter hides it"
                    }
                    Some(libc::EPERM) => {
                        "EPERM: kernel.io_uring_disabled, a container seccomp profile or an LSM denies it"
                    }
                    Some(libc::ENOMEM) => {
                        "ENOMEM: memlock too small for the ring (kernel < 5.12 charges rings to RLIMIT_MEMLOCK)"
                    }
                    _ => "unexpected error",
                };
                Check::new("io_uring.setup", Status::Fail, format!("io_uring_setup failed: {e} ({hint})"), want)
            }
        };
        out.push(c.why(why).fix(
            "set kernel.io_uring_disabled=0, run outside restrictive seccomp (docker: --security-opt seccomp=...), \
             raise memlock on old kernels",
        ));
    }

    let want = "0";
    let c = match host.read("/proc/sys/kernel/io_uring_disabled") {
        None => Check::not_available("kernel.io_uring_disabled", "no such sysctl: kernel < 6.6, nothing to do", want),
        Some(v) if v == "0" => Check::new("kernel.io_uring_disabled", Status::Ok, v, want),
        Some(v) if v == "1" => {
            let group = host.read("/proc/sys/kernel/io_uring_group").unwrap_or_default();
            Check::new(
                "kernel.io_uring_disabled",
                Status::Warn,
                format!("1 (only root and members of kernel.io_uring_group={group})"),
                want,
            )
        }
        Some(v) => Check::new("kernel.io_uring_disabled", Status::Fail, v, want),
    };
    out.push(
        c.why("1 or 2 makes io_uring_setup fail with EPERM for the tessera user")
            .fix("sysctl -w kernel.io_uring_disabled=0 (persist in /etc/sysctl.d/90-tessera.conf), or put the service user in kernel.io_uring_group"),
    );
}

fn online_cpus(host: &Host) -> u64 {
    host.read("/sys/devices/system/cpu/online")
        .and_then(|s| parse_cpu_list(&s))
        .map(|v| v.len() as u64)
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get() as u64))
        .unwrap_or(1)
}

fn check_limits(host: &Host, out: &mut Vec<Check>) {
    let limits = host.read("/proc/self/limits");
    let cpus = online_cpus(host);
    let recommended_lock = MEMLOCK_PER_CORE_BYTES * cpus;
    let want = format!(
        ">= {} minimum; unlimited or >= {} ({} per core x {cpus} cores) recommended",
        human_bytes(MEMLOCK_MIN_BYTES),
        human_bytes(recommended_lock),
        human_bytes(MEMLOCK_PER_CORE_BYTES)
    );
    let why = "rings (kernel < 5.12) and registered I/O buffers (pinned pages) are charged to RLIMIT_MEMLOCK";
    let fix = "systemd: LimitMEMLOCK=infinity in the unit; shell: /etc/security/limits.d/tessera.conf `tessera - memlock unlimited`";
    let c = match limits.as_deref().and_then(|l| parse_limit(l, "Max locked memory")) {
        None => Check::not_available("limit.memlock", "/proc/self/limits unreadable", want),
        Some((soft, hard)) => {
            let cur = format!("soft {} / hard {} (this process)", soft.show(true), hard.show(true));
            let status = if soft.at_least(recommended_lock) {
                Status::Ok
            } else if soft.at_least(MEMLOCK_MIN_BYTES) {
                Status::Warn
            } else {
                Status::Fail
            };
            Check::new("limit.memlock", status, cur, want)
        }
    };
    out.push(c.why(why).fix(fix));

    let want = format!(">= {NOFILE_RECOMMENDED} (at least {NOFILE_MIN})");
    let c = match limits.as_deref().and_then(|l| parse_limit(l, "Max open files")) {
        None => Check::not_available("limit.nofile", "/proc/self/limits unreadable", want),
        Some((soft, hard)) => {
            let status = if soft.at_least(NOFILE_RECOMMENDED) {
                Status::Ok
            } else if soft.at_least(NOFILE_MIN) {
                Status::Warn
            } else {
                Status::Fail
            };
            let cur = format!("soft {} / hard {} (this process)", soft.show(false), hard.show(false));
            Check::new("limit.nofile", status, cur, want)
        }
    };
    out.push(
        c.why("every client connection and every segment file (per core x per device) is a descriptor")
            .fix("systemd: LimitNOFILE=1048576; shell: limits.d `tessera - nofile 1048576` (fs.nr_open must be >= it)"),
    );
}

fn check_thp(host: &Host, out: &mut Vec<Check>) {
    let want = "madvise (or always)";
    let c = match host.read("/sys/kernel/mm/transparent_hugepage/enabled") {
        None => Check::not_available("thp.enabled", "no transparent_hugepage in /sys (kernel without THP)", want),
        Some(line) => match parse_selected(&line) {
            Some(m @ ("madvise" | "always")) => Check::new("thp.enabled", Status::Ok, m, want),
            Some(m) => Check::new("thp.enabled", Status::Warn, m, want),
            None => Check::new("thp.enabled", Status::Warn, format!("{line} (unparsed)"), want),
        },
    };
    out.push(
        c.why("the per-core buffer pool asks for huge pages (MADV_HUGEPAGE): 2-3x O_DIRECT throughput, 5-8x less CPU")
            .fix("echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (tuning/apply.sh --apply)"),
    );

    let want = "madvise or defer+madvise";
    let c = match host.read("/sys/kernel/mm/transparent_hugepage/defrag") {
        None => Check::not_available("thp.defrag", "no transparent_hugepage in /sys", want),
        Some(line) => match parse_selected(&line) {
            Some(m @ ("madvise" | "defer+madvise")) => Check::new("thp.defrag", Status::Ok, m, want),
            Some(m) => Check::new("thp.defrag", Status::Warn, m, want),
            None => Check::new("thp.defrag", Status::Warn, format!("{line} (unparsed)"), want),
        },
    };
    out.push(
        c.why("madvise'd pool regions should compact to get huge pages; 'always' stalls every other allocation too")
            .fix("echo madvise > /sys/kernel/mm/transparent_hugepage/defrag"),
    );
}

fn check_cpus(host: &Host, out: &mut Vec<Check>) {
    let want = "performance on every CPU";
    let cpus: Vec<String> = host
        .list("/sys/devices/system/cpu")
        .into_iter()
        .filter(|n| n.strip_prefix("cpu").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())))
        .collect();
    let mut per_gov: Vec<(String, Vec<String>)> = Vec::new();
    for cpu in &cpus {
        if let Some(g) = host.read(&format!("/sys/devices/system/cpu/{cpu}/cpufreq/scaling_governor")) {
            match per_gov.iter_mut().find(|(k, _)| *k == g) {
                Some((_, v)) => v.push(cpu.clone()),
                None => per_gov.push((g, vec![cpu.clone()])),
            }
        }
    }
    let c = if per_gov.is_empty() {
        Check::not_available("cpu.governor", "no cpufreq in /sys: a VM or no frequency driver", want)
    } else {
        let cur = per_gov.iter().map(|(g, v)| format!("{g}: {}", v.join(","))).collect::<Vec<_>>().join("; ");
        let all_perf = per_gov.iter().all(|(g, _)| g == "performance");
        Check::new("cpu.governor", if all_perf { Status::Ok } else { Status::Warn }, cur, want)
    };
    out.push(
        c.why("pinned cores poll io_uring and hash/encode at full speed; ramping the clock up adds tail latency")
            .fix("tuning/apply.sh --apply (writes performance to each cpufreq/scaling_governor)"),
    );

    let isolated = host.read("/sys/devices/system/cpu/isolated");
    let nohz = host.read("/sys/devices/system/cpu/nohz_full");
    let want = "optional: isolcpus/nohz_full on the cores tessera pins, housekeeping on the rest";
    let c = match (&isolated, &nohz) {
        (None, None) => Check::not_available("cpu.isolation", "no isolated/nohz_full files", want),
        _ => {
            let show = |v: &Option<String>| match v.as_deref() {
                None => "n/a".to_string(),
                Some("") | Some("(null)") => "none".to_string(),
                Some(s) => s.to_string(),
            };
            Check::new(
                "cpu.isolation",
                Status::Ok,
                format!("isolated={} nohz_full={}", show(&isolated), show(&nohz)),
                want,
            )
        }
    };
    out.push(
        c.why("informational: isolation trades housekeeping capacity for less jitter on pinned cores")
            .fix("see tuning/README.md 'CPU isolation' (boot parameters; not needed for most deployments)"),
    );
}

/// Block device names that are never data devices.
fn is_virtual_block(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd", "nbd"].iter().any(|p| name.starts_with(p))
}

/// The whole-disk block device (name in /sys/block) holding `path`, via its st_dev.
fn block_device_of(host: &Host, path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let link = std::fs::canonicalize(host.path(&format!("/sys/dev/block/{major}:{minor}"))).ok()?;
    // A partition's directory sits inside its disk's; a disk's parent is `block` or a controller.
    let name = link.file_name()?.to_string_lossy().into_owned();
    if link.join("partition").exists() {
        return link.parent()?.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    Some(name)
}

fn data_paths(opts: &DoctorOptions) -> Vec<(String, PathBuf)> {
    let mut v = opts.devices.clone();
    if let Some(d) = &opts.data {
        if opts.devices.is_empty() {
            for dev in engine::Layout::embedded(d, 1).devices {
                v.push((dev.zone, dev.path));
            }
        }
    }
    v
}

/// The nearest existing ancestor (the path itself when it exists).
fn existing_ancestor(p: &Path) -> Option<PathBuf> {
    let mut cur = Some(p);
    while let Some(c) = cur {
        if c.exists() {
            return Some(c.to_path_buf());
        }
        cur = c.parent().filter(|p| !p.as_os_str().is_empty()).or_else(|| (!p.is_absolute()).then_some(Path::new(".")));
        if cur == Some(c) {
            break;
        }
    }
    None
}

fn check_block(host: &Host, opts: &DoctorOptions, out: &mut Vec<Check>) {
    let names = host.list("/sys/block");
    if names.is_empty() {
        out.push(Check::not_available("block", "no /sys/block", "-").why("no block devices visible").fix("nothing"));
        return;
    }
    // Which block devices hold the given data paths (live machine only).
    let mut holds: Vec<(String, String)> = Vec::new();
    if host.live {
        for (zone, p) in data_paths(opts) {
            if let Some(dev) = existing_ancestor(&p).and_then(|a| block_device_of(host, &a)) {
                holds.push((dev, format!("{zone}={}", p.display())));
            }
        }
    }
    let (virt, real): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| is_virtual_block(n));
    if !virt.is_empty() {
        out.push(
            Check::new("block.virtual", Status::Ok, format!("skipped: {}", virt.join(" ")), "-")
                .why("loop, ram and zram devices are not data devices")
                .fix("nothing"),
        );
    }
    for dev in real {
        let q = |f: &str| host.read(&format!("/sys/block/{dev}/queue/{f}"));
        let nvme = dev.starts_with("nvme");
        let rotational = q("rotational").as_deref() == Some("1");
        let held: Vec<&str> = holds.iter().filter(|(d, _)| *d == dev).map(|(_, s)| s.as_str()).collect();
        let tag = if held.is_empty() { String::new() } else { format!(" [holds {}]", held.join(", ")) };
        let name = |f: &str| format!("block.{dev}.{f}");

        let want = if rotational { "mq-deadline (rotational)" } else { "none" };
        let c = match q("scheduler") {
            None => Check::not_available(name("scheduler"), "no queue/scheduler (bio-based device)", want),
            Some(line) => {
                let sel = parse_selected(&line).unwrap_or(line.as_str()).to_string();
                let ok = if rotational { sel == "mq-deadline" || sel == "bfq" } else { sel == "none" };
                let status = if ok { Status::Ok } else { Status::Warn };
                Check::new(
                    name("scheduler"),
                    status,
                    format!("{sel} (of: {}){tag}", parse_choices(&line).join(" ")),
                    want,
                )
            }
        };
        out.push(
            c.why(if rotational {
                "rotational disks benefit from mq-deadline's sorting; NVMe/SSD wants none (the engine batches its own I/O)"
            } else {
                "NVMe has deep hardware queues and the engine batches its own I/O; a scheduler only adds CPU and latency"
            })
                .fix(format!("echo none > /sys/block/{dev}/queue/scheduler (tuning/apply.sh --apply {dev}; persist with a udev rule)")),
        );

        let want = ">= 256 (NVMe default: the hardware queue depth, often 1023)";
        let c = match q("nr_requests").map(|s| (s.parse::<u64>().ok(), s)) {
            None => Check::not_available(name("nr_requests"), "no queue/nr_requests", want),
            Some((None, s)) => Check::new(name("nr_requests"), Status::Warn, format!("{s} (unparsed)"), want),
            Some((Some(n), s)) => {
                let status = if n >= 256 {
                    Status::Ok
                } else if nvme || n < 64 {
                    Status::Warn
                } else {
                    Status::Ok
                };
                Check::new(name("nr_requests"), status, format!("{s}{tag}"), want)
            }
        };
        out.push(
            c.why("each core submits the shard writes of several stripes at once; a shallow queue makes them wait in software")
                .fix(format!("echo 1023 > /sys/block/{dev}/queue/nr_requests (capped by the hardware; apply.sh)")),
        );

        let want = "0..128 KiB on devices dedicated to tessera (0 ideal)";
        let c = match q("read_ahead_kb").map(|s| (s.parse::<u64>().ok(), s)) {
            None => Check::not_available(name("read_ahead_kb"), "no queue/read_ahead_kb", want),
            Some((None, s)) => Check::new(name("read_ahead_kb"), Status::Warn, format!("{s} (unparsed)"), want),
            Some((Some(n), s)) => {
                let status = if n <= 128 { Status::Ok } else { Status::Warn };
                Check::new(name("read_ahead_kb"), status, format!("{s} KiB{tag}"), want)
            }
        };
        out.push(
            c.why("O_DIRECT bypasses read-ahead; on a buffered fallback or shared use it reads (and caches) data nobody asked for")
                .fix(format!("echo 0 > /sys/block/{dev}/queue/read_ahead_kb (if the device holds only tessera data)")),
        );

        let want = "0 (solid state)";
        let c = match q("rotational") {
            None => Check::not_available(name("rotational"), "no queue/rotational", want),
            Some(v) if v == "0" => Check::new(name("rotational"), Status::Ok, format!("0{tag}"), want),
            Some(v) => Check::new(name("rotational"), Status::Warn, format!("{v}{tag}"), want),
        };
        out.push(
            c.why("the engine is built for NVMe; on spinning disks parallel shard I/O seeks (VM disks often report 1 wrongly)")
                .fix("use NVMe/SSD for data devices; for a virtual disk that is really SSD: echo 0 > queue/rotational"),
        );

        let want = "either; 'write back' is safe because fdatasync sends FLUSH/FUA";
        let c = match q("write_cache") {
            None => Check::not_available(name("write_cache"), "no queue/write_cache", want),
            Some(v) => {
                let fua = q("fua").map(|f| if f == "1" { ", FUA" } else { ", no FUA" }).unwrap_or("");
                Check::new(name("write_cache"), Status::Ok, format!("{v}{fua}{tag}"), want)
            }
        };
        out.push(
            c.why("informational: durability relies on the kernel's cache flushes; never echo 'write through' to hide a volatile cache")
                .fix("nothing (for drives without power-loss protection keep 'write back' so flushes are sent)"),
        );
    }
}

fn check_net(host: &Host, out: &mut Vec<Check>) {
    const MIB16: u64 = 16 << 20;
    // (sysctl, minimum, recommended text, which field: None = the single value, Some(i) = field i)
    let rows: [(&str, u64, &str, Option<usize>, &str); 8] = [
        (
            "net.core.somaxconn",
            4096,
            ">= 4096",
            None,
            "caps every listener's accept backlog (tessera asks 1024 per core)",
        ),
        (
            "net.ipv4.tcp_max_syn_backlog",
            8192,
            ">= 8192",
            None,
            "half-open connections queued during connection storms",
        ),
        (
            "net.core.netdev_max_backlog",
            16384,
            ">= 16384",
            None,
            "packets queued per CPU before the stack drops them at 25/100 GbE",
        ),
        ("net.core.rmem_max", MIB16, ">= 16 MiB", None, "upper bound for socket receive buffers (large PUT bodies)"),
        ("net.core.wmem_max", MIB16, ">= 16 MiB", None, "upper bound for socket send buffers (large GET bodies)"),
        (
            "net.ipv4.tcp_rmem",
            MIB16,
            "max (3rd field) >= 16 MiB",
            Some(2),
            "TCP receive autotuning ceiling per connection",
        ),
        (
            "net.ipv4.tcp_wmem",
            MIB16,
            "max (3rd field) >= 16 MiB",
            Some(2),
            "TCP send autotuning ceiling per connection",
        ),
        (
            "net.ipv4.tcp_tw_reuse",
            1,
            "1",
            None,
            "lets outbound connections (benchmarks, future inter-node) reuse TIME_WAIT ports",
        ),
    ];
    for (key, min, want, field, why) in rows {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let c = match host.read(&path) {
            None => Check::not_available(key, "sysctl missing (network namespace or module)", want),
            Some(v) => {
                let n = parse_ints(&v).and_then(|ints| ints.get(field.unwrap_or(0)).copied());
                let ok = match (key, n) {
                    ("net.ipv4.tcp_tw_reuse", Some(n)) => n == 1,
                    (_, Some(n)) => n >= min,
                    (_, None) => false,
                };
                Check::new(
                    key,
                    if ok { Status::Ok } else { Status::Warn },
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                    want,
                )
            }
        };
        let value = if key.ends_with("mem") { "'4096 131072 16777216'".to_string() } else { min.to_string() };
        out.push(
            c.why(why)
                .fix(format!("sysctl -w {key}={value} (tuning/apply.sh; persist in /etc/sysctl.d/90-tessera.conf)")),
        );
    }

    let key = "net.ipv4.ip_local_port_range";
    let want = "10240 65535 or wider (span >= 50000)";
    let c = match host.read("/proc/sys/net/ipv4/ip_local_port_range") {
        None => Check::not_available(key, "sysctl missing", want),
        Some(v) => {
            let span = parse_ints(&v).filter(|r| r.len() == 2).map(|r| r[1].saturating_sub(r[0]));
            let status = if span.is_some_and(|s| s >= 50000) { Status::Ok } else { Status::Warn };
            Check::new(key, status, v.split_whitespace().collect::<Vec<_>>().join(" "), want)
        }
    };
    out.push(
        c.why("ephemeral ports bound outbound connections (clients, proxies, future node-to-node); inbound needs none")
            .fix("sysctl -w net.ipv4.ip_local_port_range='10240 65535'"),
    );
}

fn check_swap(host: &Host, out: &mut Vec<Check>) {
    let want = "no swap, or vm.swappiness <= 10";
    let swaps = host.read("/proc/swaps").map(|s| parse_swaps(&s));
    let swappiness = host.read("/proc/sys/vm/swappiness").and_then(|s| s.parse::<u64>().ok());
    let c = match swaps {
        None => Check::not_available("swap", "/proc/swaps missing", want),
        Some(list) => {
            let sw = swappiness.map(|s| s.to_string()).unwrap_or_else(|| "n/a".into());
            if list.is_empty() {
                Check::new("swap", Status::Ok, format!("no swap active (vm.swappiness={sw})"), want)
            } else {
                let total: u64 = list.iter().map(|(_, kib)| kib).sum();
                let names = list.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
                let status = if swappiness.is_some_and(|s| s <= 10) { Status::Ok } else { Status::Warn };
                Check::new(
                    "swap",
                    status,
                    format!("{} active on {names} (vm.swappiness={sw})", human_bytes(total * 1024)),
                    want,
                )
            }
        }
    };
    out.push(
        c.why("a swapped-out index page or pool buffer turns a microsecond lookup into a disk read on a pinned core")
            .fix("sysctl -w vm.swappiness=1 (apply.sh), or swapoff -a and remove swap from /etc/fstab"),
    );
}

fn check_data(host: &Host, opts: &DoctorOptions, out: &mut Vec<Check>) {
    let paths = data_paths(opts);
    if paths.is_empty() {
        return;
    }
    let mounts = host.read("/proc/self/mountinfo").map(|s| parse_mountinfo(&s)).unwrap_or_default();
    let mut seen_dev: Vec<(u64, String)> = Vec::new();
    for (zone, p) in paths {
        let name = format!("data.{zone}={}", p.display());
        let want = "XFS or ext4 on its own NVMe, O_DIRECT accepted";
        let Some(existing) = existing_ancestor(&p) else {
            out.push(
                Check::new(name, Status::Fail, "path and all its parents missing", want)
                    .why("a device directory must be creatable")
                    .fix("create the directory on the intended filesystem"),
            );
            continue;
        };
        let note =
            if existing == p { String::new() } else { format!(" (missing; checked parent {})", existing.display()) };
        let fs = match statfs_magic(&existing) {
            Ok(m) => format!("{} (statfs magic 0x{m:x})", fs_name(m)),
            Err(e) => format!("statfs failed: {e}"),
        };
        let mount = std::fs::canonicalize(&existing).ok().and_then(|c| mount_for(&mounts, &c).cloned());
        let mount_txt = mount
            .as_ref()
            .map(|m| format!(", mount {} on {} [{}]", m.source, m.mount_point, m.options))
            .unwrap_or_default();
        let direct = engine::io::probe_direct(&existing);
        let fs_good = mount.as_ref().is_some_and(|m| m.fstype == "xfs" || m.fstype.starts_with("ext4"));
        // Memory filesystems accept O_DIRECT since 6.6 (tmpfs) but lose everything on reboot.
        let volatile = mount.as_ref().is_some_and(|m| m.fstype == "tmpfs" || m.fstype == "ramfs");
        let status = if !direct || volatile {
            Status::Fail
        } else if !fs_good || existing != p {
            Status::Warn
        } else {
            Status::Ok
        };
        let cur = format!("{fs}{mount_txt}, O_DIRECT {}{note}", if direct { "works" } else { "REFUSED" });
        let cur = if volatile { format!("{cur}; memory filesystem: NOT durable") } else { cur };
        out.push(
            Check::new(name.clone(), status, cur, want)
                .why("shard I/O is 4 KiB-aligned O_DIRECT (refused by some overlays, tmpfs < 6.6: slow buffered fallback); RAM filesystems are not durable")
                .fix("put the device on XFS (or ext4) on a dedicated NVMe, mounted noatime; never tmpfs/overlay"),
        );
        if let Some(m) = mount.as_ref().filter(|m| online_discard(&m.options)) {
            out.push(
                Check::new(
                    format!("{name}.discard"),
                    Status::Warn,
                    format!("{} mounted with online discard", m.mount_point),
                    "no `discard` mount option; fstrim.timer weekly",
                )
                .why("online discard makes the journal commit that frees blocks wait for the TRIMs, and each durable log append waits for that commit (measured on the project's test machine: the first group commit after each freed log generation took 60-100 ms; docs/BENCHMARKS.md)")
                .fix("remount without `discard` (`mount -o remount,nodiscard`, and drop it from /etc/fstab); enable `fstrim.timer`"),
            );
        }
        {
            use std::os::unix::fs::MetadataExt;
            if let Ok(md) = std::fs::metadata(&existing) {
                if let Some((_, other)) = seen_dev.iter().find(|(d, _)| *d == md.dev()) {
                    out.push(
                        Check::new(
                            format!("{name}.distinct"),
                            Status::Warn,
                            format!("same filesystem as {other}"),
                            "one filesystem (disk) per device",
                        )
                        .why("two shard devices on one disk lose both shards together; fine only for tests")
                        .fix("give each --device its own NVMe"),
                    );
                } else {
                    seen_dev.push((md.dev(), name));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report

/// The human report: one header line per check, then why and (unless OK) what to change.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0).min(40);
    for c in checks {
        let _ = writeln!(s, "{:<4}  {:<width$}  current: {}", c.status.label(), c.name, c.current);
        let _ = writeln!(s, "      {:<width$}  want:    {}", "", c.recommended);
        let _ = writeln!(s, "      {:<width$}  why:     {}", "", c.reason);
        if c.status != Status::Ok {
            let _ = writeln!(s, "      {:<width$}  change:  {}", "", c.fix);
        }
    }
    let count = |st: Status| checks.iter().filter(|c| c.status == st).count();
    let _ = writeln!(
        s,
        "\n{} checks: {} OK, {} WARN, {} FAIL, {} not available here",
        checks.len(),
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::NotAvailable)
    );
    s
}

/// Exit code: 1 if any check failed, else 0.
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.status == Status::Fail))
}

/// `tessera doctor`: check this machine, print the report, return the exit code.
pub fn run(opts: &DoctorOptions) -> i32 {
    let checks = run_checks(&Host::live(), opts);
    print!("{}", render(&checks));
    exit_code(&checks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn online_discard_is_the_discard_option_only() {
        assert!(online_discard("rw,relatime,rw,discard,resv_strict"));
        assert!(online_discard("rw,noatime,rw,discard=async,ssd"));
        assert!(!online_discard("rw,noatime,rw,nodiscard"));
        assert!(!online_discard("rw,relatime,rw,errors=remount-ro"));
    }

    use super::*;

    #[test]
    fn selected_scheduler_and_thp() {
        assert_eq!(parse_selected("[mq-deadline] kyber none"), Some("mq-deadline"));
        assert_eq!(parse_selected("none [mq-deadline] kyber bfq"), Some("mq-deadline"));
        assert_eq!(parse_selected("[none] mq-deadline kyber bfq "), Some("none"));
        assert_eq!(parse_selected("always [madvise] never"), Some("madvise"));
        assert_eq!(parse_selected("always defer defer+madvise [madvise] never"), Some("madvise"));
        assert_eq!(parse_selected("none"), None);
        assert_eq!(parse_selected(""), None);
        assert_eq!(parse_choices("[mq-deadline] kyber none"), vec!["mq-deadline", "kyber", "none"]);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_kernel_version("6.1"), Some((6, 1, 0)));
        assert_eq!(parse_kernel_version("4.19.0+"), Some((4, 19, 0)));
        assert_eq!(parse_kernel_version("garbage"), None);
        assert_eq!(parse_kernel_version(""), None);
    }

    #[test]
    fn limits_rows() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max open files            20000                20000                files     \n\
                 Max locked memory         8388608              unlimited            bytes     \n";
        assert_eq!(parse_limit(t, "Max open files"), Some((Limit::Value(20000), Limit::Value(20000))));
        assert_eq!(parse_limit(t, "Max locked memory"), Some((Limit::Value(8 << 20), Limit::Unlimited)));
        assert_eq!(parse_limit(t, "Max processes"), None);
        assert_eq!(parse_limit("Max open files  x y", "Max open files"), None);
    }

    #[test]
    fn swaps_ints_cpus() {
        assert!(parse_swaps("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n").is_empty());
        let t = "Filename Type Size Used Priority\n/dev/zram0 partition 4194300 0 100\n/swapfile file 1048572 12 -2\n";
        assert_eq!(parse_swaps(t), vec![("/dev/zram0".into(), 4194300), ("/swapfile".into(), 1048572)]);
        assert_eq!(parse_ints("32768\t60999"), Some(vec![32768, 60999]));
        assert_eq!(parse_ints("4096 x"), None);
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
    }

    #[test]
    fn mountinfo_and_longest_prefix() {
        let t = "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                 30 22 0:26 / /mnt/data\\040x rw,noatime shared:2 - xfs /dev/nvme0n1 rw,attr2,inode64\n\
                 31 22 0:27 / /mnt rw - tmpfs tmpfs rw,size=10g\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].mount_point, "/mnt/data x");
        assert_eq!(m[1].fstype, "xfs");
        assert_eq!(m[1].options, "rw,noatime,rw,attr2,inode64");
        assert_eq!(mount_for(&m, Path::new("/mnt/data x/dev0")).map(|m| m.fstype.as_str()), Some("xfs"));
        assert_eq!(mount_for(&m, Path::new("/mnt/other")).map(|m| m.fstype.as_str()), Some("tmpfs"));
        assert_eq!(mount_for(&m, Path::new("/srv")).map(|m| m.fstype.as_str()), Some("ext4"));
        // `/mnt/database` is not under `/mnt/data x` (component-wise prefix).
        assert_eq!(mount_for(&m, Path::new("/mnt/database")).map(|m| m.fstype.as_str()), Some("tmpfs"));
        assert_eq!(fs_name(0x5846_5342), "xfs");
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
    }

    /// A fake machine: everything as recommended except a few planted problems.
    #[test]
    fn fake_tree_statuses() {
        let root = std::env::temp_dir().join(format!("tessera-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let w = |p: &str, v: &str| {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, v).expect("write");
        };
        w("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        w("proc/sys/kernel/io_uring_disabled", "2\n");
        w(
            "proc/self/limits",
            "Max open files            1048576              1048576              files\n\
             Max locked memory         unlimited            unlimited            bytes\n",
        );
        w("sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n");
        w("sys/kernel/mm/transparent_hugepage/defrag", "always defer defer+madvise [madvise] never\n");
        w("sys/devices/system/cpu/online", "0-1\n");
        w("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n");
        w("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "powersave\n");
        w("sys/block/nvme0n1/queue/scheduler", "[mq-deadline] kyber none\n");
        w("sys/block/nvme0n1/queue/nr_requests", "1023\n");
        w("sys/block/nvme0n1/queue/read_ahead_kb", "0\n");
        w("sys/block/nvme0n1/queue/rotational", "0\n");
        w("sys/block/loop0/queue/scheduler", "[none]\n");
        w("proc/sys/net/core/somaxconn", "4096\n");
        w("proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t33554432\n");
        w("proc/swaps", "Filename Type Size Used Priority\n");
        w("proc/sys/vm/swappiness", "60\n");

        let checks = run_checks(&Host::at(&root), &DoctorOptions::default());
        let st = |n: &str| checks.iter().find(|c| c.name == n).map(|c| c.status);
        assert_eq!(st("kernel.version"), Some(Status::Ok));
        assert_eq!(st("io_uring.setup"), Some(Status::NotAvailable));
        assert_eq!(st("kernel.io_uring_disabled"), Some(Status::Fail));
        assert_eq!(st("limit.memlock"), Some(Status::Ok));
        assert_eq!(st("limit.nofile"), Some(Status::Ok));
        assert_eq!(st("thp.enabled"), Some(Status::Warn));
        assert_eq!(st("thp.defrag"), Some(Status::Ok));
        assert_eq!(st("cpu.governor"), Some(Status::Warn));
        assert_eq!(st("cpu.isolation"), Some(Status::NotAvailable));
        assert_eq!(st("block.virtual"), Some(Status::Ok));
        assert_eq!(st("block.nvme0n1.scheduler"), Some(Status::Warn));
        assert_eq!(st("block.nvme0n1.nr_requests"), Some(Status::Ok));
        assert_eq!(st("block.nvme0n1.read_ahead_kb"), Some(Status::Ok));
        assert_eq!(st("block.nvme0n1.write_cache"), Some(Status::NotAvailable));
        assert_eq!(st("net.core.somaxconn"), Some(Status::Ok));
        assert_eq!(st("net.ipv4.tcp_rmem"), Some(Status::Ok));
        assert_eq!(st("net.core.rmem_max"), Some(Status::NotAvailable));
        assert_eq!(st("swap"), Some(Status::Ok));
        assert_eq!(exit_code(&checks), 1);
        let text = render(&checks);
        assert!(text.contains("not available here"), "{text}");
        assert!(text.contains("echo none > /sys/block/nvme0n1/queue/scheduler"), "{text}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// An empty tree (a machine lacking every file) reports N/A, never FAIL.
    #[test]
    fn missing_files_are_not_failures() {
        let root = std::env::temp_dir().join(format!("tessera-doctor-empty-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("mkdir");
        let checks = run_checks(&Host::at(&root), &DoctorOptions::default());
        assert!(checks.iter().all(|c| c.status == Status::NotAvailable), "{}", render(&checks));
        assert_eq!(exit_code(&checks), 0);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The real machine, with a data directory: returns, prints every check's name.
    #[test]
    fn live_machine_report() {
        let data = std::env::temp_dir().join(format!("tessera-doctor-data-{}", std::process::id()));
        std::fs::create_dir_all(&data).expect("mkdir");
        let opts = DoctorOptions { data: None, devices: vec![("z1".into(), data.clone())] };
        let checks = run_checks(&Host::live(), &opts);
        let text = render(&checks);
        for name in ["kernel.version", "io_uring.setup", "kernel.io_uring_disabled", "limit.memlock", "limit.nofile"] {
            assert!(checks.iter().any(|c| c.name == name), "missing {name}:\n{text}");
        }
        for name in ["thp.enabled", "cpu.governor", "net.core.somaxconn", "swap"] {
            assert!(checks.iter().any(|c| c.name == name), "missing {name}:\n{text}");
        }
        assert!(checks.iter().any(|c| c.name.starts_with("data.z1=")), "{text}");
        for c in &checks {
            assert!(text.contains(&c.name), "{} not printed", c.name);
            assert!(!c.reason.is_empty(), "{} has no reason", c.name);
        }
        let _ = std::fs::remove_dir_all(&data);
    }
}
