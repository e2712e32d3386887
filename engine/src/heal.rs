//! Self-healing: settings, device health probes and the node's health report. The per-tablet
//! tasks (repair and scrub) live in `tablet/repair.rs`; the I/O shares in `sched.rs`.

use crate::core::Core;
use crate::error::Error;
use crate::sched::IoShares;
use crate::superblock::{Superblock, SUPERBLOCK_FILE};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The scrubber visits the whole data set once per this period by default.
pub const SCRUB_PERIOD_SECS_DEFAULT: u64 = 7 * 24 * 3600;
/// The scrubber never goes slower than this (so a small data set is still checked often).
pub const SCRUB_MIN_BYTES_PER_SEC: u64 = 1 << 20;
/// A device is failed after this many I/O errors in a row (EIO, ENOENT and failed flushes
/// fail it at once).
pub const DEVICE_FAIL_AFTER_ERRORS_DEFAULT: u32 = 3;
pub const HEALTH_PROBE_MS_DEFAULT: u64 = 5_000;
/// How often an idle repair task looks at its queue.
pub const REPAIR_POLL_MS_DEFAULT: u64 = 200;

#[derive(Debug, Clone)]
pub struct HealConfig {
    /// Run the per-tablet repair task (rebuilds what reads, the scrubber and failed devices
    /// queue).
    pub repair: bool,
    /// Run the per-tablet scrubber.
    pub scrub: bool,
    /// Scrub rate per tablet in bytes/s read from the devices; 0 = adapt to the data size so a
    /// pass takes `scrub_period_secs` (never below `SCRUB_MIN_BYTES_PER_SEC`).
    pub scrub_bytes_per_sec: u64,
    pub scrub_period_secs: u64,
    /// Period of the device health probe (stat + superblock read); 0 = no probe.
    pub health_probe_ms: u64,
    pub repair_poll_ms: u64,
    pub device_fail_after_errors: u32,
    pub io_shares: IoShares,
}

impl Default for HealConfig {
    fn default() -> Self {
        HealConfig {
            repair: true,
            scrub: true,
            scrub_bytes_per_sec: 0,
            scrub_period_secs: SCRUB_PERIOD_SECS_DEFAULT,
            health_probe_ms: HEALTH_PROBE_MS_DEFAULT,
            repair_poll_ms: REPAIR_POLL_MS_DEFAULT,
            device_fail_after_errors: DEVICE_FAIL_AFTER_ERRORS_DEFAULT,
            io_shares: IoShares::default(),
        }
    }
}

/// EIO (the device failed the I/O), ENOENT (a segment file or the device's superblock
/// vanished), ENXIO and ENODEV (the device is gone) fail a device at once. Matched on the
/// errno the kernel gave (`StorageError::Os`), never on text.
pub fn is_fatal_io(e: &Error) -> bool {
    matches!(e.errno(), Some(libc::EIO | libc::ENOENT | libc::ENXIO | libc::ENODEV))
}

/// ENOSPC and EDQUOT: the device (or its filesystem, or a quota) is full. A full device is
/// *full*, not failing: it never counts towards failing it, so no rebuild starts onto the
/// other devices (which share its fate more often than not). The I/O itself still fails and
/// its request with it, so nothing it carried is acknowledged.
pub fn is_no_space(e: &Error) -> bool {
    matches!(e.errno(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// One device as the engine sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealth {
    pub index: u16,
    pub zone: String,
    pub path: Option<std::path::PathBuf>,
    pub healthy: bool,
    /// I/O errors seen on this device since start (all cores).
    pub io_errors: u64,
}

/// The node's health: devices, redundancy and the progress of self-healing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthStatus {
    pub devices: Vec<DeviceHealth>,
    /// Erasure-coded objects with at least one shard on a failed device.
    pub objects_below_redundancy: u64,
    /// Objects waiting in the repair queues.
    pub repairs_queued: u64,
    /// Objects whose repair waits for room: no zone-safe placement on the healthy devices
    /// (retried when a device comes back or is replaced). Counted below redundancy too.
    pub repairs_waiting: u64,
    /// Parts rebuilt (in place or re-placed) since start.
    pub repaired_parts: u64,
    pub repaired_stripes: u64,
    pub repair_failures: u64,
    pub scrubbed_bytes: u64,
    pub scrub_errors: u64,
    /// Completed scrub passes (minimum over tablets).
    pub scrub_passes: u64,
    /// The background I/O shares in force (percent of the device bytes while clients are busy).
    pub io_shares: IoShares,
    /// The scrubber's period: the whole data set is re-read once per this many seconds.
    pub scrub_period_secs: u64,
}

/// What the probe finds at a device's path: blocking calls (stat, a superblock read), for a
/// helper thread (`Core::shared.blocking`).
fn probe_device(path: Option<std::path::PathBuf>, set_id: u128, dev: u16) -> std::result::Result<(), String> {
    let Some(path) = path else {
        return Err("no path is known for this device".into());
    };
    let md = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", path.display()));
    }
    let sbp = path.join(SUPERBLOCK_FILE);
    let bytes = std::fs::read(&sbp).map_err(|e| format!("{}: {e}", sbp.display()))?;
    let sb = Superblock::decode(&bytes).map_err(|e| format!("{}: {e}", sbp.display()))?;
    if sb.set_id != set_id || sb.device_index as usize != dev as usize {
        return Err(format!(
            "{} belongs to another set or slot (set {:032x} index {}, expected {:032x} index {dev})",
            sbp.display(),
            sb.set_id,
            sb.device_index,
            set_id
        ));
    }
    Ok(())
}

/// A write, a flush and a read of a probe file on the device: the open on a helper thread, the
/// I/O on the ring (where the test failpoints apply).
async fn probe_io(core: &Core, dev: u16) -> std::result::Result<(), String> {
    let Some(path) = core.paths.borrow().get(dev as usize).cloned().flatten() else { return Err("no path".into()) };
    let p = path.join(format!(".health-probe-{}", core.id));
    let opened = {
        let p = p.clone();
        core.shared.blocking.run(move || crate::io::DevFile::open_std(&p, true, false)).await
    };
    let f = opened.and_then(|f| crate::io::DevFile::from_std(f, &p, false)).map_err(|e| e.to_string())?;
    let stamp = vec![0xa5u8; 4096];
    f.write_vec_at(stamp.clone(), 0).await.map_err(|e| e.to_string())?;
    f.sync_data().await.map_err(|e| e.to_string())?;
    let back = f.read_vec_at(4096, 0).await.map_err(|e| e.to_string())?;
    if back != stamp {
        return Err(format!("{}: read back differs from what was written", p.display()));
    }
    Ok(())
}

/// Probe every device periodically (on core 0 only) and broadcast changes. The stat and the
/// superblock read run on a helper thread: a failing device can take seconds to answer (or
/// never answer), and the core goes on serving meanwhile.
pub fn start_probe(core: &Rc<Core>) {
    let weak: Weak<Core> = Rc::downgrade(core);
    let period = Duration::from_millis(core.shared.heal.health_probe_ms);
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(period).await;
            let Some(core) = weak.upgrade() else { return };
            if core.stopping() {
                return;
            }
            for dev in 0..core.shared.set.device_count() as u16 {
                if core.replacing.borrow()[dev as usize] {
                    continue; // `Engine::replace_device` decides this one
                }
                let up = core.healthy.borrow()[dev as usize];
                let path = core.paths.borrow().get(dev as usize).cloned().flatten();
                let set_id = core.shared.set.set_id;
                let mut r = match core.shared.blocking.run(move || Ok(probe_device(path, set_id, dev))).await {
                    Ok(r) => r,
                    // The helpers stopped: the engine is shutting down, not the device failing.
                    Err(_) => return,
                };
                if r.is_ok() && !up {
                    // Coming back needs a working write, flush and read, not just a readable
                    // superblock: a device failed for I/O errors would otherwise flap.
                    r = probe_io(&core, dev).await;
                }
                if core.replacing.borrow()[dev as usize] {
                    continue; // a replacement started while the probe waited on the device
                }
                match r {
                    Ok(()) if !up => core.ctx.mark_device(dev, true, "the health probe read its superblock"),
                    Err(why) if up => core.ctx.mark_device(dev, false, &format!("health probe: {why}")),
                    _ => {}
                }
            }
        }
    });
}
