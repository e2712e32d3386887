//! `s3::http_util::parse_range` + `ByteRange::resolve`, and `engine::RangeSpec::resolve`.
//! Input: `[size: u64 le][Range header text...]`; the engine spec is built from the same
//! parsed header. Invariants: when Ok, start < end <= size, and both layers agree.
#![no_main]

use engine::RangeSpec;
use libfuzzer_sys::fuzz_target;
use s3::http_util::{content_range, parse_range, ByteRange};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let header = String::from_utf8_lossy(&data[8..]);
    // Small sizes matter most (empty objects, one byte): also try the size modulo 16.
    for size in [size, size % 16] {
        let facade = parse_range(&header).map(|r| (r, r.resolve(size)));
        if let Some((r, Ok(range))) = &facade {
            assert!(range.start < range.end && range.end <= size, "{r:?} on {size} gave {range:?}");
            let _ = content_range(range, size);
        }
        let spec = parse_range(&header).map(|r| match r {
            ByteRange::From { first, last } => RangeSpec::FromTo(first, last),
            ByteRange::Suffix(n) => RangeSpec::Suffix(n),
        });
        if let Some(spec) = spec {
            let got = spec.resolve(size);
            if let Ok(r) = &got {
                assert!(r.start < r.end && r.end <= size, "{spec:?} on {size} gave {r:?}");
            }
            let facade = facade.map(|(_, f)| f.ok().map(|f| (f.start, f.end)));
            assert_eq!(facade, Some(got.ok().map(|r| (r.start, r.end))), "facade and engine disagree");
        }
    }
    // The engine directly, on arbitrary values (not only what the header parser produces).
    if data.len() >= 25 {
        let a = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let b = u64::from_le_bytes(data[16..24].try_into().unwrap());
        let spec = match data[24] % 3 {
            0 => RangeSpec::FromTo(a, Some(b)),
            1 => RangeSpec::FromTo(a, None),
            _ => RangeSpec::Suffix(a),
        };
        if let Ok(r) = spec.resolve(size) {
            assert!(r.start < r.end && r.end <= size, "{spec:?} on {size} gave {r:?}");
        }
    }
});
