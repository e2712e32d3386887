//! `engine::superblock::Superblock::decode` and `decode_table`, with round trips:
//! whatever decodes re-encodes to bytes that decode to the same value.
//! Input: `[tablets: u32 le][bytes...]`; the bytes go to both decoders. The CRC32C trailer
//! would stop the fuzzer at the checksum, so each decoder is also given the bytes with a
//! correct CRC appended (a corrupt-but-checksummed file, as a buggy writer would leave).
#![no_main]

use engine::superblock::{decode_table, encode_table, Superblock};
use libfuzzer_sys::fuzz_target;

fn with_crc(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v.extend_from_slice(&crc32c::crc32c(b).to_le_bytes());
    v
}

fn superblock(b: &[u8]) {
    if let Ok(sb) = Superblock::decode(b) {
        let again = Superblock::decode(&sb.encode()).expect("an encoded superblock decodes");
        assert_eq!(again, sb, "superblock round trip");
        assert!((sb.device_index as usize) < sb.zones.len());
    }
}

fn table(b: &[u8], tablets: u32) {
    if let Ok(t) = decode_table(b, tablets) {
        assert!(t.iter().all(|&s| (s as u32) < tablets));
        let again = decode_table(&encode_table(&t), tablets).expect("an encoded table decodes");
        assert_eq!(again, t, "partition table round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, rest @ ..] = data else { return };
    let tablets = u32::from_le_bytes([*a, *b, *c, *d]);
    superblock(rest);
    table(rest, tablets);
    let fixed = with_crc(rest);
    superblock(&fixed);
    table(&fixed, tablets);
});
