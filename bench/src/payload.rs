//! Object sizes and contents, derived from the key and the seed so that any GET can be checked
//! against what was PUT without remembering anything per object.
//!
//! Every object's bytes are a slice of one pool built at start: random bytes
//! (`--random-payload`, each key starting at its own offset) or a fixed pattern. A PUT sends the
//! slice as it is (no copy, no generation cost on the hot path) and a verified GET compares
//! what it receives with the same slice.

use crate::stats;
use rand::{RngCore, SeedableRng};

/// Distinct starting offsets of random objects in the pool (8-byte steps).
const RANDOM_OFFSETS: u64 = 8192;
const FIXED_PATTERN: &[u8] = b"tessera-bench fixed payload; ";

/// `--size`: one size (`4KiB`) or a uniform range (`1KiB-1MiB`), bounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeDist {
    pub min: u64,
    pub max: u64,
}

impl SizeDist {
    pub fn parse(s: &str) -> Result<SizeDist, String> {
        match s.split_once('-') {
            None => stats::parse_size(s).map(|n| SizeDist { min: n, max: n }),
            Some((a, b)) => {
                let (min, max) = (stats::parse_size(a)?, stats::parse_size(b)?);
                if min > max {
                    return Err(format!("size range {s:?} runs backwards: write it as MIN-MAX"));
                }
                Ok(SizeDist { min, max })
            }
        }
    }

    pub fn describe(&self) -> String {
        if self.min == self.max {
            engine::util::human_bytes(self.min)
        } else {
            format!("{}-{}", engine::util::human_bytes(self.min), engine::util::human_bytes(self.max))
        }
    }

    pub fn mean(&self) -> u64 {
        self.min / 2 + self.max / 2
    }
}

/// A well-mixed 64-bit hash of a key and the seed (FNV-1a folded through splitmix64).
pub fn key_hash(seed: u64, key: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in key.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

pub struct Content {
    pool: Vec<u8>,
    random: bool,
    seed: u64,
    pub sizes: SizeDist,
}

impl Content {
    pub fn new(sizes: SizeDist, random: bool, seed: u64) -> Content {
        let len = (sizes.max + if random { RANDOM_OFFSETS * 8 } else { 0 }) as usize;
        let mut pool = vec![0u8; len];
        if random {
            rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut pool);
        } else {
            for (i, b) in pool.iter_mut().enumerate() {
                *b = FIXED_PATTERN[i % FIXED_PATTERN.len()];
            }
        }
        Content { pool, random, seed, sizes }
    }

    pub fn size_of(&self, key: &str) -> u64 {
        let span = self.sizes.max - self.sizes.min;
        if span == 0 {
            return self.sizes.min;
        }
        self.sizes.min + key_hash(self.seed ^ 0x5157, key) % (span + 1)
    }

    /// The bytes a PUT of `key` sends and a GET of `key` must return.
    pub fn of(&self, key: &str) -> &[u8] {
        let off = if self.random { (key_hash(self.seed, key) % RANDOM_OFFSETS * 8) as usize } else { 0 };
        &self.pool[off..off + self.size_of(key) as usize]
    }
}

/// Standard base64 (for the one checksum header we send; not worth a dependency).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_ranges_parse_and_stay_in_bounds() {
        assert_eq!(SizeDist::parse("4KiB"), Ok(SizeDist { min: 4096, max: 4096 }));
        let d = SizeDist::parse("1KiB-1MiB").expect("valid range");
        assert_eq!((d.min, d.max), (1024, 1 << 20));
        assert!(SizeDist::parse("2MiB-1MiB").is_err());
        let c = Content::new(SizeDist { min: 10, max: 5000 }, true, 7);
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let k = format!("k{i}");
            let n = c.size_of(&k);
            assert!((10..=5000).contains(&n));
            assert_eq!(c.of(&k).len() as u64, n);
            seen.insert(n);
        }
        assert!(seen.len() > 100, "sizes should vary: {}", seen.len());
    }

    #[test]
    fn contents_are_a_function_of_key_and_seed() {
        let a = Content::new(SizeDist { min: 4096, max: 4096 }, true, 1);
        let b = Content::new(SizeDist { min: 4096, max: 4096 }, true, 1);
        assert_eq!(a.of("x"), b.of("x"));
        assert_ne!(a.of("x"), a.of("y"));
        let f = Content::new(SizeDist { min: 100, max: 100 }, false, 1);
        assert_eq!(f.of("x"), f.of("y"));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
