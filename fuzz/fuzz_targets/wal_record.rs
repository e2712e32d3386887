//! `engine::wal::read_frames` and `engine::record::Record::decode`.
//! Input: `[gen: u64 le][offset: u64 le][bytes...]`. The bytes are decoded as one record and
//! read as a log; they are also wrapped in a valid frame (so the CRC does not stop the
//! fuzzer). Checks: a decoded record re-encodes to a record that decodes equal; read_frames'
//! valid prefix is within the input, its records are in order, and re-framing them gives
//! back a prefix of the same length.
#![no_main]

use engine::record::Record;
use engine::wal::{frame_into, read_frames, set_inline_pos, FRAME_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fn record(b: &[u8], gen: u64, off: u64) {
    if let Ok(r) = Record::decode(b, gen, off) {
        let enc = r.encode();
        let again = Record::decode(&enc, gen, off).expect("an encoded record decodes");
        assert_eq!(again, r, "record round trip");
    }
}

fn frames(b: &[u8], gen: u64) {
    let (recs, valid) = read_frames(b, gen);
    assert!(valid as usize <= b.len(), "valid prefix {valid} beyond {} bytes", b.len());
    let mut rebuilt = Vec::new();
    let mut last = None;
    for (off, r) in &recs {
        assert!(last.is_none_or(|l| l < *off), "offsets not increasing");
        last = Some(*off);
        assert_eq!(*off as usize, rebuilt.len(), "record offset is not where its frame starts");
        let payload = r.encode();
        let mut copy = r.clone();
        set_inline_pos(&mut copy, gen, *off, (FRAME_HEADER_BYTES + payload.len()) as u32);
        assert_eq!(&copy, r, "inline position not set from the frame");
        frame_into(&mut rebuilt, gen, &payload);
    }
    // Lengths only: the decoder accepts a few non-canonical encodings (any non-zero tag for a
    // checksum's presence or `aborted`), so the bytes themselves need not match.
    assert_eq!(rebuilt.len() as u64, valid, "re-framed records differ in length from the valid prefix");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let gen = u64::from_le_bytes(data[..8].try_into().unwrap());
    let off = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let body = &data[16..];
    record(body, gen, off);
    frames(body, gen);
    let mut framed = Vec::new();
    frame_into(&mut framed, gen, body);
    frames(&framed, gen);
});
