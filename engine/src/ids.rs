//! Typed ids for what the engine would otherwise pass around as bare integers: a device of the
//! set, a segment file on a device, a block in a segment. Plain `Copy` values with no cost;
//! records on disk keep their integers (`record.rs`), and code wraps them where it reads them.

use crate::util::ALIGN_BYTES;

/// A device of the set, by its index (the superblock's `device_index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u16);

impl DeviceId {
    /// Its slot in the per-device vectors (`CoreCtx::healthy`, `CoreCtx::paths`, ...).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One of a tablet's segment files on a device (`seg-NNNNNNNNNN.dat`); a segment is named by
/// its device and this id together, `(DeviceId, SegmentId)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub u32);

/// A block of `ALIGN_BYTES` in a segment file: where an extent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockIndex(pub u32);

impl BlockIndex {
    /// The block's byte offset in its segment file (aligned for O_DIRECT).
    pub fn offset_bytes(self) -> u64 {
        self.0 as u64 * ALIGN_BYTES as u64
    }

    /// The block that starts at byte `offset` of a segment file (a multiple of `ALIGN_BYTES`).
    pub fn at_offset(offset: u64) -> BlockIndex {
        debug_assert!(offset.is_multiple_of(ALIGN_BYTES as u64), "extents start on a block boundary");
        BlockIndex(u32::try_from(offset / ALIGN_BYTES as u64).expect("a segment is shorter than 2^32 blocks"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_index_and_its_offset_round_trip() {
        assert_eq!(BlockIndex(0).offset_bytes(), 0);
        assert_eq!(BlockIndex(3).offset_bytes(), 3 * 4096);
        // The largest block a u32 can name lies far past 4 GiB: no overflow in u64.
        assert_eq!(BlockIndex(u32::MAX).offset_bytes(), u32::MAX as u64 * 4096);
        assert_eq!(BlockIndex::at_offset(5 * 4096), BlockIndex(5));
    }
}
