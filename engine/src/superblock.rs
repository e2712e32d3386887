//! Device superblocks and the persisted partition table: formatting a device set and opening
//! it again, checking every device belongs to the same set.

use crate::codec::{Dec, Enc};
use crate::error::{io_at, Error, Result, StorageError};
use crate::layout::{DeviceSpec, Layout};
use std::io::Write;
use std::path::{Path, PathBuf};

const SB_MAGIC: &[u8; 8] = b"TESSERA\x01";
const TABLE_MAGIC: &[u8; 8] = b"TSPTABL\x01";
/// Version 2 added `seg_base` (replacement devices); version 1 superblocks are still read.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_VERSION_V1: u32 = 1;
pub const SUPERBLOCK_FILE: &str = "tessera.sb";
pub const TABLE_FILE: &str = "partitions.tbl";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub format_version: u32,
    pub set_id: u128,
    pub node_id: u128,
    pub device_index: u16,
    pub k: u8,
    pub m: u8,
    pub partitions: u32,
    /// Tablets (key-space units) the partitions map to; encoded where the field called `shards`
    /// was before the rename (the same u32, same place).
    pub tablets: u32,
    /// Zone label of every device of the set, by device index.
    pub zones: Vec<String>,
    pub created_unix_ms: u64,
    /// Segment ids below this on this device were lost with the device it replaced: the index
    /// may still point at them, and their shards are rebuilt (0 on a device of the original
    /// format).
    pub seg_base: u32,
}

impl Superblock {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new();
        e.fixed(SB_MAGIC);
        e.u32(self.format_version);
        e.u128(self.set_id);
        e.u128(self.node_id);
        e.u16(self.device_index);
        e.u8(self.k);
        e.u8(self.m);
        e.u32(self.partitions);
        e.u32(self.tablets);
        e.u16(self.zones.len() as u16);
        for z in &self.zones {
            e.str(z);
        }
        e.u64(self.created_unix_ms);
        if self.format_version >= 2 {
            e.u32(self.seg_base);
        }
        let crc = crc32c::crc32c(&e.buf);
        e.u32(crc);
        e.buf
    }

    pub fn decode(b: &[u8]) -> Result<Superblock> {
        if b.len() < 12 || &b[..8] != SB_MAGIC {
            return Err(StorageError::Corrupt("not a tessera superblock (bad magic)".into()).into());
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != want {
            return Err(StorageError::Corrupt("superblock checksum mismatch".into()).into());
        }
        let mut d = Dec::new(&body[8..]);
        let format_version = d.u32()?;
        if format_version != FORMAT_VERSION && format_version != FORMAT_VERSION_V1 {
            return Err(StorageError::Corrupt(format!(
                "superblock format version {format_version}, this build reads {FORMAT_VERSION}"
            ))
            .into());
        }
        let set_id = d.u128()?;
        let node_id = d.u128()?;
        let device_index = d.u16()?;
        let k = d.u8()?;
        let m = d.u8()?;
        let partitions = d.u32()?;
        let tablets = d.u32()?;
        let n = d.u16()? as usize;
        let mut zones = Vec::with_capacity(n);
        for _ in 0..n {
            zones.push(d.str()?);
        }
        let created_unix_ms = d.u64()?;
        let seg_base = if format_version >= 2 { d.u32()? } else { 0 };
        let sb = Superblock {
            format_version,
            set_id,
            node_id,
            device_index,
            k,
            m,
            partitions,
            tablets,
            zones,
            created_unix_ms,
            seg_base,
        };
        if sb.device_index as usize >= sb.zones.len()
            || sb.k == 0
            || sb.m == 0
            || sb.tablets == 0
            || sb.partitions < sb.tablets
        {
            return Err(StorageError::Corrupt("superblock fields out of range".into()).into());
        }
        Ok(sb)
    }
}

/// Write `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_at(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_at(&tmp, e))?;
    f.sync_all().map_err(|e| io_at(&tmp, e))?;
    std::fs::rename(&tmp, &dst).map_err(|e| io_at(&dst, e))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_at(dir, e))
}

pub fn encode_table(table: &[u16]) -> Vec<u8> {
    let mut e = Enc::new();
    e.fixed(TABLE_MAGIC);
    e.u32(table.len() as u32);
    for &s in table {
        e.u16(s);
    }
    let crc = crc32c::crc32c(&e.buf);
    e.u32(crc);
    e.buf
}

pub fn decode_table(b: &[u8], tablets: u32) -> Result<Vec<u16>> {
    if b.len() < 16 || &b[..8] != TABLE_MAGIC {
        return Err(StorageError::Corrupt("not a partition table".into()).into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(StorageError::Corrupt("partition table checksum mismatch".into()).into());
    }
    let mut d = Dec::new(&body[8..]);
    let n = d.u32()? as usize;
    let mut t = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let s = d.u16()?;
        if s as u32 >= tablets {
            return Err(StorageError::Corrupt(format!("partition table names tablet {s} of {tablets}")).into());
        }
        t.push(s);
    }
    Ok(t)
}

fn now_ms() -> u64 {
    crate::util::unix_ms()
}

/// Format a device set. Refuses zone-unsafe layouts and devices that already hold a superblock.
pub fn format(layout: &Layout) -> Result<u128> {
    layout.check()?;
    for d in &layout.devices {
        let sb = d.path.join(SUPERBLOCK_FILE);
        if sb.exists() {
            return Err(StorageError::Layout(format!(
                "device {}={} is already formatted; remove it from the device list or delete its contents to reuse it",
                d.zone,
                d.path.display()
            ))
            .into());
        }
    }
    let set_id: u128 = rand::random();
    let node_id: u128 = rand::random();
    let zones: Vec<String> = layout.devices.iter().map(|d| d.zone.clone()).collect();
    // Round-robin partitions over tablets; a table so it can later be rebalanced.
    let table: Vec<u16> = (0..layout.partitions).map(|p| (p % layout.tablets) as u16).collect();
    let table_bytes = encode_table(&table);
    for (i, d) in layout.devices.iter().enumerate() {
        std::fs::create_dir_all(&d.path).map_err(|e| io_at(&d.path, e))?;
        if !d.path.is_dir() {
            return Err(StorageError::Layout(format!("device {} must be a directory", d.path.display())).into());
        }
        let sb = Superblock {
            format_version: FORMAT_VERSION,
            set_id,
            node_id,
            device_index: i as u16,
            k: layout.k as u8,
            m: layout.m as u8,
            partitions: layout.partitions,
            tablets: layout.tablets,
            zones: zones.clone(),
            created_unix_ms: now_ms(),
            seg_base: 0,
        };
        write_atomic(&d.path, TABLE_FILE, &table_bytes)?;
        // The superblock goes last: a device with a superblock is fully formatted.
        write_atomic(&d.path, SUPERBLOCK_FILE, &sb.encode())?;
    }
    Ok(set_id)
}

/// The device set as found at open.
#[derive(Debug, Clone)]
pub struct DeviceSet {
    pub set_id: u128,
    pub node_id: u128,
    pub k: usize,
    pub m: usize,
    pub partitions: u32,
    pub tablets: u32,
    pub zone_names: Vec<String>,
    /// Zone number per device index (index into a sorted list of zone names).
    pub zones: Vec<u16>,
    /// Path per device index; `None` where no device of the set was found for that index.
    pub paths: Vec<Option<PathBuf>>,
    /// Whether each device opened (superblock read and checked).
    pub healthy: Vec<bool>,
    /// Per device index: its superblock's `seg_base` (0 where the device did not open).
    pub seg_base: Vec<u32>,
    pub table: Vec<u16>,
}

impl DeviceSet {
    pub fn device_count(&self) -> usize {
        self.zones.len()
    }

    pub fn path(&self, dev: u16) -> Option<&Path> {
        self.paths.get(dev as usize).and_then(|p| p.as_deref())
    }
}

/// Open a device set: read every superblock, check they agree, tolerate missing devices.
pub fn open(specs: &[DeviceSpec]) -> Result<DeviceSet> {
    let mut found: Vec<(Superblock, &DeviceSpec)> = Vec::new();
    let mut missing: Vec<(&DeviceSpec, String)> = Vec::new();
    for d in specs {
        let p = d.path.join(SUPERBLOCK_FILE);
        match std::fs::read(&p).map_err(|e| io_at(&p, e)).and_then(|b| Superblock::decode(&b)) {
            Ok(sb) => found.push((sb, d)),
            Err(e) => missing.push((d, e.to_string())),
        }
    }
    let Some((first, _)) = found.first().cloned() else {
        return Err(StorageError::Layout(
            "no formatted device found: format the devices first (tessera server formats the embedded default on first start)".into(),
        ).into());
    };
    let mut paths: Vec<Option<PathBuf>> = vec![None; first.zones.len()];
    let mut seg_base: Vec<u32> = vec![0; first.zones.len()];
    for (sb, d) in &found {
        if sb.set_id != first.set_id {
            return Err(StorageError::Layout(format!(
                "device {}={} belongs to another set ({:032x}, expected {:032x}): remove it from the device list or reformat it",
                d.zone,
                d.path.display(),
                sb.set_id,
                first.set_id
            )).into());
        }
        if sb.zones != first.zones || sb.k != first.k || sb.m != first.m || sb.tablets != first.tablets {
            return Err(
                StorageError::Layout(format!("device {} disagrees with the set's layout", d.path.display())).into()
            );
        }
        let i = sb.device_index as usize;
        if paths[i].is_some() {
            return Err(
                StorageError::Layout(format!("two devices claim index {i} of the set ({})", d.path.display())).into()
            );
        }
        if sb.zones[i] != d.zone {
            return Err(StorageError::Layout(format!(
                "device {} was formatted in zone {:?} but is listed in zone {:?}",
                d.path.display(),
                sb.zones[i],
                d.zone
            ))
            .into());
        }
        paths[i] = Some(d.path.clone());
        seg_base[i] = sb.seg_base;
    }
    let healthy: Vec<bool> = paths.iter().map(|p| p.is_some()).collect();
    // A device we could not read is matched to the first free index of its zone so that a
    // later repair knows where it belongs.
    for (d, why) in &missing {
        tracing::warn!("device {}={} is unavailable: {why}", d.zone, d.path.display());
        if let Some(i) = (0..paths.len()).find(|&i| paths[i].is_none() && first.zones[i] == d.zone) {
            paths[i] = Some(d.path.clone());
        }
    }
    let mut zone_names: Vec<String> = first.zones.clone();
    zone_names.sort();
    zone_names.dedup();
    let zones: Vec<u16> =
        first.zones.iter().map(|z| zone_names.iter().position(|n| n == z).unwrap_or(0) as u16).collect();
    let mut table = None;
    for (i, p) in paths.iter().enumerate() {
        let Some(p) = p.as_ref().filter(|_| healthy[i]) else { continue };
        let tp = p.join(TABLE_FILE);
        if let Ok(t) = std::fs::read(&tp).map_err(Error::from).and_then(|b| decode_table(&b, first.tablets)) {
            if t.len() == first.partitions as usize {
                table = Some(t);
                break;
            }
        }
    }
    let table = table.ok_or_else(|| StorageError::Layout("no readable partition table on any device".into()))?;
    Ok(DeviceSet {
        set_id: first.set_id,
        node_id: first.node_id,
        k: first.k as usize,
        m: first.m as usize,
        partitions: first.partitions,
        tablets: first.tablets,
        zone_names,
        zones,
        paths,
        healthy,
        seg_base,
        table,
    })
}

/// Every reason `format_replacement` would refuse `path`, checked without writing anything
/// (so that a replacement is refused before the device it replaces is taken out of service).
pub fn check_replacement(
    set: &DeviceSet,
    current_paths: &[Option<PathBuf>],
    index: u16,
    path: &Path,
    force: bool,
) -> Result<()> {
    let i = index as usize;
    if i >= set.device_count() {
        return Err(
            StorageError::Layout(format!("no device {index} in this set (it has {})", set.device_count())).into()
        );
    }
    for (j, p) in current_paths.iter().enumerate() {
        if j != i && p.as_deref().is_some_and(|p| same_path(p, path)) {
            return Err(StorageError::Layout(format!(
                "{} is the path of device {j} of this set: a replacement needs its own empty device",
                path.display()
            ))
            .into());
        }
    }
    let sbp = path.join(SUPERBLOCK_FILE);
    match std::fs::read(&sbp) {
        Ok(bytes) => {
            let what = match Superblock::decode(&bytes) {
                Ok(sb) if sb.set_id != set.set_id => format!("a device of another set ({:032x})", sb.set_id),
                Ok(sb) if sb.device_index == index => {
                    format!("device {index} of this set (the device being replaced)")
                }
                Ok(sb) => format!("device {} of this set", sb.device_index),
                Err(e) => format!("an unreadable tessera superblock ({e})"),
            };
            if !force {
                return Err(StorageError::Layout(format!(
                    "{} holds {what}: refusing to format over it; use an empty device, or pass --force to \
                     erase tessera's data there",
                    path.display()
                ))
                .into());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(&sbp, e)),
    }
    if path.exists() {
        if !path.is_dir() {
            return Err(StorageError::Layout(format!("{} is not a directory", path.display())).into());
        }
        let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(path)
            .map_err(|e| io_at(path, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| io_at(path, e))?;
        if !entries.is_empty() && !force {
            let names: Vec<String> =
                entries.iter().take(5).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            return Err(StorageError::Layout(format!(
                "{} is not empty (holds {}): a replacement device must be empty; pass --force to erase \
                 tessera's files there",
                path.display(),
                names.join(", ")
            ))
            .into());
        }
    } else if path.parent().is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        // Only the last component would be created: a missing parent is more likely a typo or
        // an unmounted device than something to create.
        return Err(StorageError::Layout(format!(
            "{}: its parent directory does not exist (a typo, or a device not mounted?)",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// Format `path` as the replacement of device `index` of `set`: a superblock with the set's
/// id and that index (and the set's zones, EC and partition table), the tablet directories, and
/// `seg_base` (segment ids below it were lost with the old device).
///
/// Creates `path` if its parent exists. Refuses, unless `force`: a path that holds a tessera
/// superblock (of this set's device `index` itself, of another device of the set, or of another
/// set), and a non-empty directory. `force` removes tessera's own files there first (superblock,
/// partition table, tablet directories), nothing else. Never accepts the path of another slot.
pub fn format_replacement(
    set: &DeviceSet,
    current_paths: &[Option<PathBuf>],
    index: u16,
    path: &Path,
    seg_base: u32,
    force: bool,
) -> Result<()> {
    check_replacement(set, current_paths, index, path, force)?;
    if path.exists() {
        let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(path)
            .map_err(|e| io_at(path, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| io_at(path, e))?;
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name == SUPERBLOCK_FILE
                || name == TABLE_FILE
                // Tablet directories (`segment::tablet_dir`: on-disk name kept from before the rename).
                || name.starts_with("shard-")
                || name.starts_with(".health-probe-")
                || name.starts_with(&format!(".{SUPERBLOCK_FILE}"))
                || name.starts_with(&format!(".{TABLE_FILE}"));
            if ours {
                let p = e.path();
                let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                r.map_err(|err| io_at(&p, err))?;
            }
        }
    } else {
        // Only the last component is created: a missing parent is more likely a typo or an
        // unmounted device than something to create.
        std::fs::create_dir(path).map_err(|e| io_at(path, e))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    for s in 0..set.tablets {
        let sd = crate::segment::tablet_dir(path, s);
        std::fs::create_dir(&sd).map_err(|e| io_at(&sd, e))?;
    }
    sync_dir(path)?;
    write_atomic(path, TABLE_FILE, &encode_table(&set.table))?;
    let sb = Superblock {
        format_version: FORMAT_VERSION,
        set_id: set.set_id,
        node_id: set.node_id,
        device_index: index,
        k: set.k as u8,
        m: set.m as u8,
        partitions: set.partitions,
        tablets: set.tablets,
        zones: set.zones.iter().map(|z| set.zone_names.get(*z as usize).cloned().unwrap_or_default()).collect(),
        created_unix_ms: now_ms(),
        seg_base,
    };
    // The superblock goes last: a device with a superblock is fully formatted.
    write_atomic(path, SUPERBLOCK_FILE, &sb.encode())
}

pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trips_and_detects_flips() {
        let sb = Superblock {
            format_version: FORMAT_VERSION,
            set_id: 7,
            node_id: 9,
            device_index: 1,
            k: 4,
            m: 2,
            partitions: 64,
            tablets: 2,
            zones: vec!["a".into(), "b".into()],
            created_unix_ms: 5,
            seg_base: 12,
        };
        let b = sb.encode();
        assert_eq!(Superblock::decode(&b).unwrap(), sb);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(Superblock::decode(&c).is_err(), "flip at {i} not detected");
        }
        assert!(Superblock::decode(&b[..b.len() - 1]).is_err());
        // A version 1 superblock (before `seg_base`) still reads, with no lost segments.
        let v1 = Superblock { format_version: 1, seg_base: 0, ..sb.clone() };
        let b1 = v1.encode();
        assert_eq!(b1.len() + 4, b.len());
        assert_eq!(Superblock::decode(&b1).unwrap(), v1);
    }

    #[test]
    fn format_replacement_refuses_tessera_data_unless_forced_and_keeps_other_files() {
        let t1 = tempfile::tempdir().unwrap();
        let t2 = tempfile::tempdir().unwrap();
        let l1 = Layout::embedded(t1.path(), 2);
        let l2 = Layout::embedded(t2.path(), 2);
        format(&l1).unwrap();
        format(&l2).unwrap();
        let set = open(&l1.devices).unwrap();
        // A device of another set, with an operator's file next to it.
        let foreign = &l2.devices[0].path;
        std::fs::write(foreign.join("notes.txt"), b"keep me").unwrap();
        let e = format_replacement(&set, &set.paths, 2, foreign, 7, false).unwrap_err();
        assert!(e.to_string().contains("another set"), "{e}");
        // Another slot's path is never accepted, even forced.
        let e = format_replacement(&set, &set.paths, 2, &l1.devices[3].path, 7, true).unwrap_err();
        assert!(e.to_string().contains("path of device 3"), "{e}");
        // A missing parent is not created.
        let e = format_replacement(&set, &set.paths, 2, &t1.path().join("no/such"), 7, true).unwrap_err();
        assert!(e.to_string().contains("parent directory does not exist"), "{e}");
        assert!(!t1.path().join("no").exists(), "a missing parent was created");
        format_replacement(&set, &set.paths, 2, foreign, 7, true).unwrap();
        assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"keep me");
        let sb = Superblock::decode(&std::fs::read(foreign.join(SUPERBLOCK_FILE)).unwrap()).unwrap();
        assert_eq!((sb.set_id, sb.device_index, sb.seg_base), (set.set_id, 2, 7));
        assert_eq!(sb.zones, vec!["z1", "z1", "z2", "z2", "z3", "z3"]);
        assert!(crate::segment::tablet_dir(foreign, 1).is_dir());
        // The set opens with the replacement in slot 2.
        let mut devs = l1.devices.clone();
        devs[2].path = foreign.clone();
        let again = open(&devs).unwrap();
        assert_eq!(again.seg_base[2], 7);
        assert_eq!(again.healthy, vec![true; 6]);
    }

    #[test]
    fn open_refuses_a_device_of_another_set() {
        let t1 = tempfile::tempdir().unwrap();
        let t2 = tempfile::tempdir().unwrap();
        let l1 = Layout::embedded(t1.path(), 1);
        let l2 = Layout::embedded(t2.path(), 1);
        format(&l1).unwrap();
        format(&l2).unwrap();
        assert!(format(&l1).is_err(), "formatting twice must be refused");
        let mut mixed = l1.devices.clone();
        mixed[5] = l2.devices[5].clone();
        let e = open(&mixed).unwrap_err();
        assert!(e.to_string().contains("belongs to another set"), "{e}");
        let set = open(&l1.devices).unwrap();
        assert_eq!(set.healthy, vec![true; 6]);
    }
}
