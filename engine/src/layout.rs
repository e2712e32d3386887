//! The device set and erasure-coding layout, and the zone-safety rule that format enforces.

use crate::error::{Result, StorageError};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Largest k + m a layout may have (shard indexes in extents are u8, devices per stripe are
/// bounded by the number of devices in one node).
pub const MAX_SHARDS_PER_STRIPE: usize = 32;
/// Default number of partitions of the key space, fixed at format time.
pub const DEFAULT_PARTITIONS: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub zone: String,
    pub path: PathBuf,
}

impl DeviceSpec {
    pub fn new(zone: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        DeviceSpec { zone: zone.into(), path: path.into() }
    }

    /// Parse `ZONE=PATH` as given on the command line.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once('=') {
            Some((z, p)) if !z.is_empty() && !p.is_empty() => Ok(DeviceSpec::new(z, p)),
            _ => {
                Err(StorageError::Layout(format!("device {s:?} must be written ZONE=PATH, e.g. z1=/mnt/nvme0")).into())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub k: usize,
    pub m: usize,
    pub devices: Vec<DeviceSpec>,
    pub partitions: u32,
    /// Number of tablets (slices of the key space, each with its own log and segment sets);
    /// each core runs one or more.
    pub tablets: u32,
}

impl Layout {
    /// The embedded default: 6 directory devices under `root` in 3 zones, EC 4+2.
    pub fn embedded(root: &std::path::Path, tablets: u32) -> Layout {
        let devices =
            (0..6).map(|i| DeviceSpec::new(format!("z{}", i / 2 + 1), root.join(format!("dev{i}")))).collect();
        Layout { k: 4, m: 2, devices, partitions: DEFAULT_PARTITIONS, tablets: tablets.max(1) }
    }

    /// Check the layout can keep every stripe zone-safe: at most `m` shards of a stripe in one
    /// zone, each shard on its own device. Errors say what to change.
    pub fn check(&self) -> Result<()> {
        let (k, m) = (self.k, self.m);
        if k == 0 || m == 0 {
            return Err(StorageError::Layout(format!(
                "EC {k}+{m} is not allowed: k and m must both be at least 1 (m=0 cannot survive any device loss)"
            ))
            .into());
        }
        if k + m > MAX_SHARDS_PER_STRIPE {
            return Err(StorageError::Layout(format!(
                "EC {k}+{m} has more than {MAX_SHARDS_PER_STRIPE} shards per stripe"
            ))
            .into());
        }
        if self.partitions == 0 || self.tablets == 0 || self.tablets > self.partitions {
            return Err(
                StorageError::Layout("partitions and tablets must be positive, tablets <= partitions".into()).into()
            );
        }
        let mut paths = std::collections::HashSet::new();
        for d in &self.devices {
            if !paths.insert(d.path.clone()) {
                return Err(StorageError::Layout(format!("device {} is listed twice", d.path.display())).into());
            }
        }
        let zones = zone_counts(self.devices.iter().map(|d| d.zone.as_str()));
        let usable: usize = zones.values().map(|&c| c.min(m)).sum();
        if usable < k + m {
            let have: Vec<String> = zones.iter().map(|(z, c)| format!("{z}:{c}")).collect();
            return Err(StorageError::Layout(format!(
                "EC {k}+{m} is not zone-safe on these devices (devices per zone: {}): a stripe needs {} devices \
                 with at most {m} in any one zone, but only {usable} can be used that way. Add devices in other \
                 zones, spread the devices over more zones, or choose a smaller k or a larger m.",
                have.join(", "),
                k + m
            ))
            .into());
        }
        Ok(())
    }
}

pub fn zone_counts<'a>(zones: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for z in zones {
        *m.entry(z.to_string()).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(k: usize, m: usize, zones: &[&str]) -> Layout {
        let devices = zones.iter().enumerate().map(|(i, z)| DeviceSpec::new(*z, format!("/d{i}"))).collect();
        Layout { k, m, devices, partitions: 64, tablets: 2 }
    }

    #[test]
    fn embedded_default_is_zone_safe() {
        Layout::embedded(std::path::Path::new("/x"), 2).check().unwrap();
    }

    #[test]
    fn format_refuses_too_many_shards_per_zone() {
        // 4+2 over two zones of three: each zone would have to hold 3 shards > m.
        let e = layout(4, 2, &["a", "a", "a", "b", "b", "b"]).check().unwrap_err();
        assert!(e.to_string().contains("not zone-safe"), "{e}");
        // Same devices, 2+2 fits (2 per zone).
        layout(2, 2, &["a", "a", "a", "b", "b", "b"]).check().unwrap();
        // A single zone never works.
        assert!(layout(1, 1, &["a", "a"]).check().is_err());
        assert!(layout(4, 0, &["a", "b", "c", "d"]).check().is_err());
    }
}
