//! Stripe geometry and the erasure code: k data shards + m parity shards per stripe, a CRC32C
//! per shard kept in the object's metadata. Pure functions over our aligned buffers, so the
//! micro-benchmarks measure exactly what the write and read paths run.

use crate::buf::AlignedBuf;
use crate::error::{Error, Result, StorageError};
use crate::util::{align_up, ALIGN_BYTES};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Bytes per shard of a stripe for `data_len` bytes of data: the data split over k shards,
/// rounded up to 4 KiB so every shard write is O_DIRECT-aligned.
pub fn shard_len_for(data_len: usize, k: usize, chunk_bytes: usize) -> usize {
    let per = data_len.div_ceil(k).max(1);
    (align_up(per as u64, ALIGN_BYTES as u64) as usize).min(chunk_bytes)
}

pub fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// A reusable encoder and decoder (one per core: they hold working memory).
pub struct Codec {
    enc: Option<ReedSolomonEncoder>,
    dec: Option<ReedSolomonDecoder>,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    pub fn new() -> Codec {
        Codec { enc: None, dec: None }
    }

    /// Fill `parity` (m buffers) from `data` (k buffers, each `shard_len` bytes long).
    pub fn encode(&mut self, data: &[AlignedBuf], parity: &mut [AlignedBuf]) -> Result<()> {
        let (k, m) = (data.len(), parity.len());
        let len = data[0].len();
        debug_assert!(data.iter().all(|d| d.len() == len), "data shards must have equal length");
        let rs = |e: reed_solomon_simd::Error| Error::Storage(StorageError::Io(format!("erasure encode: {e}")));
        let enc = match self.enc.as_mut() {
            Some(e) => {
                e.reset(k, m, len).map_err(rs)?;
                e
            }
            None => self.enc.insert(ReedSolomonEncoder::new(k, m, len).map_err(rs)?),
        };
        for d in data {
            enc.add_original_shard(d.as_slice()).map_err(rs)?;
        }
        let out = enc.encode().map_err(rs)?;
        for (p, r) in parity.iter_mut().zip(out.recovery_iter()) {
            p.clear();
            p.extend_from(r);
            debug_assert_eq!(p.len(), len);
        }
        Ok(())
    }

    /// Rebuild the missing data shards. `shards[i]` is `Some` for every shard (data and parity)
    /// that was read and verified; at least k must be present. Missing data shards are filled
    /// into the buffers provided by `make_buf`.
    pub fn reconstruct(
        &mut self,
        k: usize,
        m: usize,
        shard_len: usize,
        shards: &mut [Option<AlignedBuf>],
        mut make_buf: impl FnMut() -> AlignedBuf,
    ) -> Result<()> {
        debug_assert_eq!(shards.len(), k + m);
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < k {
            return Err(
                StorageError::Unreadable(format!("only {present} of {} shards readable, {k} needed", k + m)).into()
            );
        }
        if shards[..k].iter().all(|s| s.is_some()) {
            return Ok(());
        }
        let rs = |e: reed_solomon_simd::Error| Error::Storage(StorageError::Io(format!("erasure decode: {e}")));
        let dec = match self.dec.as_mut() {
            Some(d) => {
                d.reset(k, m, shard_len).map_err(rs)?;
                d
            }
            None => self.dec.insert(ReedSolomonDecoder::new(k, m, shard_len).map_err(rs)?),
        };
        for (i, s) in shards.iter().enumerate() {
            if let Some(b) = s {
                if i < k {
                    dec.add_original_shard(i, b.as_slice()).map_err(rs)?;
                } else {
                    dec.add_recovery_shard(i - k, b.as_slice()).map_err(rs)?;
                }
            }
        }
        let out = dec.decode().map_err(rs)?;
        for (i, data) in out.restored_original_iter() {
            let mut b = make_buf();
            b.clear();
            b.extend_from(data);
            shards[i] = Some(b);
        }
        if shards[..k].iter().any(|s| s.is_none()) {
            return Err(StorageError::Unreadable("decoder did not restore every data shard".into()).into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(bytes: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::alloc(bytes.len());
        b.extend_from(bytes);
        b
    }

    #[test]
    fn any_m_lost_shards_are_rebuilt() {
        let (k, m, len) = (4, 2, 8192);
        let data: Vec<AlignedBuf> = (0..k).map(|i| buf(&vec![i as u8 * 31 + 1; len])).collect();
        let mut parity: Vec<AlignedBuf> = (0..m).map(|_| AlignedBuf::alloc(len)).collect();
        let mut c = Codec::new();
        c.encode(&data, &mut parity).unwrap();
        for a in 0..k + m {
            for b in a + 1..k + m {
                let mut shards: Vec<Option<AlignedBuf>> =
                    data.iter().chain(parity.iter()).map(|s| Some(buf(s.as_slice()))).collect();
                shards[a] = None;
                shards[b] = None;
                c.reconstruct(k, m, len, &mut shards, || AlignedBuf::alloc(len)).unwrap();
                for i in 0..k {
                    assert_eq!(shards[i].as_ref().unwrap().as_slice(), data[i].as_slice());
                }
            }
        }
        let mut shards: Vec<Option<AlignedBuf>> = vec![None, None, None, Some(buf(&[0; 8192])), None, None];
        assert!(matches!(
            c.reconstruct(k, m, len, &mut shards, || AlignedBuf::alloc(len)),
            Err(Error::Storage(StorageError::Unreadable(_)))
        ));
    }

    #[test]
    fn md5_many_matches_md5_over_arbitrary_splits() {
        use md5::Digest;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 55, 56, 63, 64, 65, 1000, 4096, 100_003, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ (len as u8)).collect();
            let want: [u8; 16] = md5::Md5::digest(&data).into();
            let mut st = md5_many::Md5State::new();
            let mut off = 0;
            while off < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = ((x % 70_000) as usize + 1).min(len - off);
                st.update(&data[off..off + n]);
                off += n;
            }
            assert_eq!(st.finalize(), want, "length {len}");
        }
    }

    #[test]
    fn shard_len_is_aligned_and_bounded() {
        assert_eq!(shard_len_for(1, 4, 262144), 4096);
        assert_eq!(shard_len_for(4 * 4096 + 1, 4, 262144), 8192);
        assert_eq!(shard_len_for(4 << 20, 4, 262144), 262144);
    }
}
