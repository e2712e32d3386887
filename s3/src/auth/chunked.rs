//! An incremental decoder of `aws-chunked` request bodies.
//!
//! Feed it the body as it arrives, in slices of any size; it hands back the payload bytes
//! (borrowed from the input, never copied), checks each chunk's signature in the signed
//! modes, collects the trailers and checks the trailer signature.
//!
//! Payload bytes of a chunk are released before that chunk's signature is verified at
//! its end: a caller must not make an object visible until [`ChunkedDecoder::finish`]
//! succeeds (a PUT is acknowledged only at its end anyway).
//!
//! Wire format: `hex-size[;chunk-signature=sig]\r\n<data>\r\n` ... `0[;chunk-signature=sig]\r\n`
//! then, with trailers, `name:value\r\n`... (and `x-amz-trailer-signature:sig\r\n`), then `\r\n`.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::sigv4::{sign, signatures_equal, AuthContext, PayloadMode, EMPTY_SHA256_HEX};
use crate::error::{S3Error, S3ErrorCode};

/// Longest chunk header line accepted (`size;chunk-signature=<64 hex>` is about 90 bytes).
pub const MAX_CHUNK_HEADER_BYTES: usize = 256;
/// Most bytes of trailer lines accepted, all lines together.
pub const MAX_TRAILER_BYTES: usize = 4096;
/// Most trailer lines accepted.
pub const MAX_TRAILER_LINES: usize = 16;

/// Trailer headers: lowercase names and their values, in the order sent.
pub type Trailers = Vec<(String, String)>;

/// The signing material of a signed chunked body.
#[derive(Debug, Clone)]
struct ChunkSigner {
    signing_key: [u8; 32],
    amz_date: String,
    scope: String,
    previous: String,
}

impl ChunkSigner {
    fn chunk_signature(&self, chunk_sha256_hex: &str) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date, self.scope, self.previous, EMPTY_SHA256_HEX, chunk_sha256_hex
        );
        sign(&self.signing_key, &sts)
    }

    fn trailer_signature(&self, canonical_trailers: &str) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(Sha256::digest(canonical_trailers.as_bytes()))
        );
        sign(&self.signing_key, &sts)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading `size[;ext]\r\n`.
    Header,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the `\r\n` after a chunk's data; this many of its bytes seen.
    DataEnd(u8),
    /// Reading trailer lines until an empty one.
    Trailers,
    /// Body complete; any further byte is an error.
    Done,
}

fn incomplete(why: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::IncompleteBody, format!("The aws-chunked body is incomplete: {why}."))
}

fn malformed(why: &str) -> S3Error {
    S3Error::invalid_argument(format!("The aws-chunked body is malformed: {why}."))
}

fn bad_signature(what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::SignatureDoesNotMatch,
        format!("The {what} signature we calculated does not match the signature you provided."),
    )
}

/// Decodes one aws-chunked body. See the module documentation.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    signer: Option<ChunkSigner>,
    with_trailers: bool,
    expected_len: Option<u64>,
    decoded_len: u64,
    /// The current chunk's signature as sent, verified at its end.
    pending_signature: Option<String>,
    chunk_hash: Sha256,
    line: Vec<u8>,
    trailer_bytes: usize,
    trailers: Trailers,
    trailer_signature: Option<String>,
}

impl ChunkedDecoder {
    /// A decoder for a request authenticated as `ctx` whose payload mode is a streaming one.
    /// `decoded_len` is `x-amz-decoded-content-length`, enforced exactly when given.
    pub fn new(ctx: &AuthContext, decoded_len: Option<u64>) -> Result<ChunkedDecoder, S3Error> {
        let signer = ChunkSigner {
            signing_key: ctx.signing_key,
            amz_date: ctx.amz_date.clone(),
            scope: ctx.scope.clone(),
            previous: ctx.seed_signature.clone(),
        };
        let (signer, with_trailers) = match ctx.payload_mode {
            PayloadMode::StreamingSigned => (Some(signer), false),
            PayloadMode::StreamingSignedTrailer => (Some(signer), true),
            PayloadMode::StreamingUnsignedTrailer => (None, true),
            _ => return Err(S3Error::internal("aws-chunked decoding asked for a non-streaming payload")),
        };
        Ok(ChunkedDecoder {
            state: State::Header,
            signer,
            with_trailers,
            expected_len: decoded_len,
            decoded_len: 0,
            pending_signature: None,
            chunk_hash: Sha256::new(),
            line: Vec::new(),
            trailer_bytes: 0,
            trailers: Vec::new(),
            trailer_signature: None,
        })
    }

    /// Like [`new`](Self::new), reading `x-amz-decoded-content-length` (required).
    pub fn from_headers(ctx: &AuthContext, headers: &HeaderMap) -> Result<ChunkedDecoder, S3Error> {
        let len = headers
            .get("x-amz-decoded-content-length")
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::MissingContentLength,
                    "An aws-chunked body needs the x-amz-decoded-content-length header.",
                )
            })?
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| S3Error::invalid_argument("x-amz-decoded-content-length must be a non-negative integer"))?;
        Self::new(ctx, Some(len))
    }

    /// The payload size `x-amz-decoded-content-length` declared, if given.
    pub fn expected_len(&self) -> Option<u64> {
        self.expected_len
    }

    /// Payload bytes decoded so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded_len
    }

    /// Consumes from the front of `input` and returns the next run of payload bytes, or
    /// `None` once `input` is used up. Call until it returns `None`, then feed more.
    pub fn next<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, S3Error> {
        while !input.is_empty() {
            match self.state {
                State::Data(remaining) => {
                    let n = remaining.min(input.len() as u64) as usize;
                    let (data, rest) = input.split_at(n);
                    *input = rest;
                    self.decoded_len += n as u64;
                    if self.expected_len.is_some_and(|e| self.decoded_len > e) {
                        return Err(S3Error::invalid_request(
                            "The aws-chunked body is longer than x-amz-decoded-content-length.",
                        ));
                    }
                    if self.signer.is_some() {
                        self.chunk_hash.update(data);
                    }
                    let left = remaining - n as u64;
                    self.state = if left == 0 { State::DataEnd(0) } else { State::Data(left) };
                    return Ok(Some(data));
                }
                State::DataEnd(seen) => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if input[0] != want {
                        return Err(malformed("chunk data is not followed by CRLF"));
                    }
                    *input = &input[1..];
                    if seen == 0 {
                        self.state = State::DataEnd(1);
                    } else {
                        self.verify_chunk()?;
                        self.state = State::Header;
                    }
                }
                State::Header | State::Trailers => {
                    if let Some(line) = self.take_line(input)? {
                        if self.state == State::Header {
                            self.on_header_line(&line)?;
                        } else {
                            self.on_trailer_line(&line)?;
                        }
                    }
                }
                State::Done => return Err(malformed("bytes after the end of the body")),
            }
        }
        Ok(None)
    }

    /// Call at the end of the body: checks it was complete and returns the trailers
    /// (lowercase names, without `x-amz-trailer-signature`).
    pub fn finish(self) -> Result<Trailers, S3Error> {
        match self.state {
            State::Done => {}
            // A final CRLF some clients leave out: everything that is signed has been seen.
            State::Trailers if self.line.is_empty() && self.trailers_complete() => {}
            _ => return Err(incomplete("the body ended before its final chunk")),
        }
        Ok(self.trailers)
    }

    fn trailers_complete(&self) -> bool {
        self.signer.is_none() || !self.with_trailers || self.trailer_signature.is_some()
    }

    /// Accumulates bytes up to CRLF; returns the line without it when complete.
    fn take_line(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, S3Error> {
        let limit = if self.state == State::Header {
            MAX_CHUNK_HEADER_BYTES
        } else {
            MAX_TRAILER_BYTES.saturating_sub(self.trailer_bytes)
        };
        match input.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                self.line.extend_from_slice(&input[..pos]);
                *input = &input[pos + 1..];
                if self.line.pop() != Some(b'\r') {
                    return Err(malformed("a line does not end with CRLF"));
                }
                if self.line.len() > limit {
                    return Err(malformed("a chunk header or trailer is too long"));
                }
                Ok(Some(std::mem::take(&mut self.line)))
            }
            None => {
                self.line.extend_from_slice(input);
                *input = &[];
                if self.line.len() > limit + 1 {
                    return Err(malformed("a chunk header or trailer is too long"));
                }
                Ok(None)
            }
        }
    }

    fn on_header_line(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let line = std::str::from_utf8(line).map_err(|_| malformed("a chunk header is not text"))?;
        let (size, ext) = match line.split_once(';') {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        let size = size.trim();
        if size.is_empty() || size.len() > 16 {
            return Err(malformed("bad chunk size"));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| malformed("bad chunk size"))?;
        if self.signer.is_some() {
            let sig = ext
                .and_then(|e| e.trim().strip_prefix("chunk-signature="))
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| malformed("a signed chunk needs chunk-signature=<64 hex digits>"))?;
            self.pending_signature = Some(sig);
        }
        if size > 0 {
            self.state = State::Data(size);
            return Ok(());
        }
        // The final, empty chunk.
        self.verify_chunk()?;
        if let Some(expected) = self.expected_len {
            if self.decoded_len != expected {
                return Err(incomplete(&format!(
                    "{} bytes decoded, x-amz-decoded-content-length says {expected}",
                    self.decoded_len
                )));
            }
        }
        // Trailer lines (if any) and the closing empty line follow.
        self.state = State::Trailers;
        Ok(())
    }

    fn verify_chunk(&mut self) -> Result<(), S3Error> {
        let Some(signer) = &mut self.signer else {
            return Ok(());
        };
        let hash = std::mem::replace(&mut self.chunk_hash, Sha256::new()).finalize();
        let expected = signer.chunk_signature(&hex::encode(hash));
        let provided = self.pending_signature.take().unwrap_or_default();
        if !signatures_equal(&expected, &provided) {
            return Err(bad_signature("chunk"));
        }
        signer.previous = expected;
        Ok(())
    }

    fn on_trailer_line(&mut self, line: &[u8]) -> Result<(), S3Error> {
        self.trailer_bytes += line.len() + 2;
        if line.is_empty() {
            if !self.trailers_complete() {
                return Err(malformed("the signed trailer has no x-amz-trailer-signature"));
            }
            self.state = State::Done;
            return Ok(());
        }
        if !self.with_trailers {
            return Err(malformed("trailers sent without x-amz-trailer"));
        }
        if self.trailer_signature.is_some() {
            return Err(malformed("a trailer follows x-amz-trailer-signature"));
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("a trailer is not text"))?;
        let (name, value) = line.split_once(':').ok_or_else(|| malformed("a trailer is not name:value"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        if name == "x-amz-trailer-signature" {
            let Some(signer) = &self.signer else {
                return Err(malformed("an unsigned body carries a trailer signature"));
            };
            let canonical: String = self.trailers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
            let expected = signer.trailer_signature(&canonical);
            if !signatures_equal(&expected, &value.to_ascii_lowercase()) {
                return Err(bad_signature("trailer"));
            }
            self.trailer_signature = Some(value);
            return Ok(());
        }
        if self.trailers.len() >= MAX_TRAILER_LINES {
            return Err(malformed("too many trailers"));
        }
        self.trailers.push((name, value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The signed vectors are AWS's documented examples of streaming uploads: 66560 bytes
    //! of 'a' in chunks of 65536 and 1024 bytes, from 2013-05-24 with the example key.
    use super::*;
    use crate::auth::sigv4::signing_key;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn ctx(mode: PayloadMode, seed: &str) -> AuthContext {
        AuthContext {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            region: "us-east-1".into(),
            signing_key: signing_key(SECRET, "20130524", "us-east-1", "s3"),
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            seed_signature: seed.into(),
            payload_mode: mode,
            presigned: false,
        }
    }

    fn body(sigs: [&str; 3], trailer: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(format!("10000;chunk-signature={}\r\n", sigs[0]).as_bytes());
        b.extend_from_slice(&[b'a'; 65_536]);
        b.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", sigs[1]).as_bytes());
        b.extend_from_slice(&[b'a'; 1024]);
        b.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n", sigs[2]).as_bytes());
        b.extend_from_slice(trailer.as_bytes());
        b.extend_from_slice(b"\r\n");
        b
    }

    const SIGNED_SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const SIGNED: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];
    const TRAILER_SEED: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
    const TRAILER_SIGNED: [&str; 3] = [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ];
    const TRAILER: &str = "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n";

    /// Feeds `body` in pieces of `step` bytes and returns the payload and trailers.
    fn decode(mut dec: ChunkedDecoder, body: &[u8], step: usize) -> Result<(Vec<u8>, Trailers), S3Error> {
        let mut out = Vec::new();
        for piece in body.chunks(step) {
            let mut input = piece;
            while let Some(data) = dec.next(&mut input)? {
                out.extend_from_slice(data);
            }
        }
        Ok((out, dec.finish()?))
    }

    #[test]
    fn aws_signed_streaming_example_decodes_at_any_split() {
        let b = body(SIGNED, "");
        assert_eq!(b.len(), 66_824, "the documented Content-Length");
        for step in [1, 7, 100, 65_536, b.len()] {
            let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, SIGNED_SEED), Some(66_560)).expect("dec");
            let (payload, trailers) = decode(dec, &b, step).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(payload, vec![b'a'; 66_560]);
            assert!(trailers.is_empty());
        }
    }

    #[test]
    fn aws_signed_trailer_example_verifies_the_trailer() {
        let b = body(TRAILER_SIGNED, TRAILER);
        let dec =
            ChunkedDecoder::new(&ctx(PayloadMode::StreamingSignedTrailer, TRAILER_SEED), Some(66_560)).expect("dec");
        let (payload, trailers) = decode(dec, &b, 4096).expect("decodes");
        assert_eq!(payload.len(), 66_560);
        assert_eq!(trailers, vec![("x-amz-checksum-crc32c".to_string(), "sOO8/Q==".to_string())]);
        // A changed trailer value breaks the trailer signature.
        let forged = body(TRAILER_SIGNED, &TRAILER.replace("sOO8/Q==", "AAAAAA=="));
        let dec =
            ChunkedDecoder::new(&ctx(PayloadMode::StreamingSignedTrailer, TRAILER_SEED), Some(66_560)).expect("dec");
        assert_eq!(decode(dec, &forged, 4096).expect_err("forged").code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn a_flipped_payload_byte_fails_its_chunk_signature() {
        let mut b = body(SIGNED, "");
        b[66_000] = b'b'; // inside the second chunk's data
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, SIGNED_SEED), Some(66_560)).expect("dec");
        assert_eq!(decode(dec, &b, 8192).expect_err("tampered").code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn a_wrong_seed_fails_the_first_chunk() {
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, &"0".repeat(64)), None).expect("dec");
        assert_eq!(decode(dec, &body(SIGNED, ""), 8192).expect_err("seed").code, S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn truncated_or_mislength_bodies_are_refused() {
        let b = body(SIGNED, "");
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, SIGNED_SEED), Some(66_560)).expect("dec");
        assert_eq!(decode(dec, &b[..66_000], 8192).expect_err("short").code, S3ErrorCode::IncompleteBody);
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, SIGNED_SEED), Some(66_561)).expect("dec");
        assert_eq!(decode(dec, &b, 8192).expect_err("length").code, S3ErrorCode::IncompleteBody);
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, SIGNED_SEED), Some(1000)).expect("dec");
        assert_eq!(decode(dec, &b, 8192).expect_err("long").code, S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn unsigned_trailer_body_decodes_with_its_checksum() {
        let b = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n";
        for step in [1, 2, b.len()] {
            let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingUnsignedTrailer, ""), Some(3)).expect("dec");
            let (payload, trailers) = decode(dec, b, step).expect("decodes");
            assert_eq!(payload, b"abc");
            assert_eq!(trailers, vec![("x-amz-checksum-crc32".to_string(), "NSRBwg==".to_string())]);
        }
        // Without the final CRLF, still accepted.
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingUnsignedTrailer, ""), Some(3)).expect("dec");
        assert!(decode(dec, &b[..b.len() - 2], 5).is_ok());
    }

    #[test]
    fn malformed_framing_is_refused() {
        let mk = || ChunkedDecoder::new(&ctx(PayloadMode::StreamingUnsignedTrailer, ""), None).expect("dec");
        for bad in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"0\r\n\r\nextra",
            b"0\r\nnocolon\r\n\r\n",
        ] {
            assert_eq!(decode(mk(), bad, 3).expect_err("bad").code, S3ErrorCode::InvalidArgument, "{bad:?}");
        }
        let long_header = vec![b'1'; MAX_CHUNK_HEADER_BYTES + 10];
        assert!(decode(mk(), &long_header, 1000).is_err());
        // Signed chunks must carry a signature.
        let dec = ChunkedDecoder::new(&ctx(PayloadMode::StreamingSigned, SIGNED_SEED), None).expect("dec");
        assert_eq!(decode(dec, b"3\r\nabc\r\n", 100).expect_err("unsigned").code, S3ErrorCode::InvalidArgument);
    }

    #[test]
    fn non_streaming_modes_are_not_chunked() {
        assert!(ChunkedDecoder::new(&ctx(PayloadMode::Unsigned, ""), None).is_err());
    }
}
