//! `s3::auth::chunked::ChunkedDecoder` in each streaming payload mode.
//!
//! Input: `[mode][flags][nsplits][split sizes...][body...]`.
//! - mode % 3: STREAMING-AWS4-HMAC-SHA256-PAYLOAD, ...-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER.
//! - flags bit 0: pass `decoded_len` (the next two bytes, little-endian) or `None`.
//! - flags bit 1: *synthesize*: the body is not fed raw. The harness builds a well-formed,
//!   correctly signed aws-chunked body whose payload is the body bytes up to the first 0xFF and
//!   whose trailers are the `name:value` lines after it, cut into chunks at the split sizes,
//!   and checks the decoder returns exactly that payload and those trailers. This is an
//!   oracle (AWS's documented chunk and trailer string-to-sign, written out again here), and
//!   it gets the fuzzer past the signatures it cannot forge.
//! The (raw or built) body is fed to `next` in pieces at the split sizes, then `finish()`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3::auth::chunked::ChunkedDecoder;
use s3::auth::sigv4::{sha256_hex, sign, signing_key, AuthContext, PayloadMode, EMPTY_SHA256_HEX};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20130524T000000Z";
const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const MAX_SPLITS: usize = 16;

fn ctx(mode: PayloadMode) -> AuthContext {
    AuthContext {
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        region: "us-east-1".into(),
        signing_key: signing_key(SECRET, "20130524", "us-east-1", "s3"),
        amz_date: AMZ_DATE.into(),
        scope: SCOPE.into(),
        seed_signature: SEED.into(),
        payload_mode: mode,
        presigned: false,
    }
}

/// The body a well-behaved client sends for `payload` cut at `cuts`, with `trailers`.
fn build_body(c: &AuthContext, payload: &[u8], cuts: &[usize], trailers: &[(String, String)]) -> Vec<u8> {
    let key = c.signing_key;
    let signed = c.payload_mode != PayloadMode::StreamingUnsignedTrailer;
    let with_trailers = c.payload_mode != PayloadMode::StreamingSigned;
    let mut previous = c.seed_signature.clone();
    let mut chunk = |out: &mut Vec<u8>, data: &[u8]| {
        out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
        if signed {
            let sts = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{EMPTY_SHA256_HEX}\n{}",
                c.amz_date,
                c.scope,
                sha256_hex(data)
            );
            previous = sign(&key, &sts);
            out.extend_from_slice(format!(";chunk-signature={previous}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !data.is_empty() {
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    };
    let mut out = Vec::new();
    let mut rest = payload;
    for &cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (data, tail) = rest.split_at(cut.clamp(1, rest.len()));
        chunk(&mut out, data);
        rest = tail;
    }
    if !rest.is_empty() {
        chunk(&mut out, rest);
    }
    chunk(&mut out, &[]);
    if with_trailers {
        let mut canonical = String::new();
        for (n, v) in trailers {
            out.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
            canonical.push_str(&format!("{n}:{v}\n"));
        }
        if signed {
            let sts = format!(
                "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{}",
                c.amz_date,
                c.scope,
                sha256_hex(canonical.as_bytes())
            );
            out.extend_from_slice(format!("x-amz-trailer-signature:{}\r\n", sign(&key, &sts)).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Trailer lines a client could legitimately send: lowercase names, trimmed printable values.
fn trailers_from(text: &[u8]) -> Vec<(String, String)> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (n, v) = line.split_once(':')?;
            let name_ok = (1..=64).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && n != "x-amz-trailer-signature";
            let v = v.trim();
            let value_ok = v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            (name_ok && value_ok).then(|| (n.to_string(), v.to_string()))
        })
        .take(8)
        .collect()
}

/// Feeds `body` in pieces at `cuts`; returns the payload and `finish()`'s result.
fn decode(mut dec: ChunkedDecoder, body: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Vec<(String, String)>), String> {
    let mut payload = Vec::new();
    let mut pieces = Vec::new();
    let mut rest = body;
    for &cut in cuts.iter().cycle().take(if cuts.is_empty() { 0 } else { 4 * MAX_SPLITS }) {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    for piece in pieces {
        let mut input = piece;
        loop {
            let before = input.len();
            match dec.next(&mut input) {
                Ok(Some(data)) => {
                    assert!(!data.is_empty() || before == 0, "next returned an empty run");
                    payload.extend_from_slice(data);
                }
                Ok(None) => {
                    assert!(input.is_empty(), "next returned None with input left");
                    break;
                }
                Err(e) => return Err(e.to_string()),
            }
            assert!(input.len() < before, "next made no progress");
        }
    }
    let decoded = dec.decoded_len();
    assert_eq!(decoded, payload.len() as u64, "decoded_len disagrees with the bytes returned");
    let trailers = dec.finish().map_err(|e| e.to_string())?;
    Ok((payload, trailers))
}

fuzz_target!(|data: &[u8]| {
    let [mode, flags, nsplits, rest @ ..] = data else { return };
    let mode = match mode % 3 {
        0 => PayloadMode::StreamingSigned,
        1 => PayloadMode::StreamingSignedTrailer,
        _ => PayloadMode::StreamingUnsignedTrailer,
    };
    let nsplits = (*nsplits as usize % (MAX_SPLITS + 1)).min(rest.len());
    let (splits, rest) = rest.split_at(nsplits);
    let cuts: Vec<usize> = splits.iter().map(|&b| b as usize).collect();
    let (decoded_len, body) = if flags & 1 != 0 && rest.len() >= 2 {
        (Some(u16::from_le_bytes([rest[0], rest[1]]) as u64), &rest[2..])
    } else {
        (None, rest)
    };
    let c = ctx(mode.clone());

    if flags & 2 == 0 {
        let Ok(dec) = ChunkedDecoder::new(&c, decoded_len) else { return };
        if let Ok((payload, _)) = decode(dec, body, &cuts) {
            assert!(payload.len() <= body.len());
            if let Some(len) = decoded_len {
                assert_eq!(payload.len() as u64, len, "finish accepted a body of the wrong length");
            }
        }
        return;
    }

    // Synthesize: a valid body must decode to exactly what was encoded.
    let (payload, trailer_text) = match body.iter().position(|&b| b == 0xFF) {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    let trailers = if mode == PayloadMode::StreamingSigned { Vec::new() } else { trailers_from(trailer_text) };
    let wire = build_body(&c, payload, &cuts, &trailers);
    let dec = ChunkedDecoder::new(&c, Some(payload.len() as u64)).expect("streaming mode");
    let (got, got_trailers) =
        decode(dec, &wire, &cuts).unwrap_or_else(|e| panic!("a well-formed {mode:?} body was refused: {e}"));
    assert_eq!(got, payload, "payload differs");
    assert_eq!(got_trailers, trailers, "trailers differ");
});
