//! Request bodies decoded and checked as they stream, without doing any I/O.
//!
//! The server reads the body's frames off its connection and hands each to
//! [`BodyDecoder::feed`], which undoes aws-chunked framing (checking each chunk's signature)
//! and returns the payload bytes the frame completes, already counted into the signed payload
//! SHA-256, Content-MD5 and `x-amz-checksum-*` digests. [`BodyDecoder::finish`] then checks
//! the length, the payload hash and the checksums (a trailer's included); only when it
//! returns `Ok` may the server commit what it stored, so a bad body is never committed.

use bytes::Bytes;
use http::HeaderMap;

use crate::auth::chunked::ChunkedDecoder;
use crate::auth::sigv4::{AuthContext, PayloadHashVerifier, PayloadMode};
use crate::checksum::{BodyVerifier, ChecksumAlgorithm, ChecksumRequest};
use crate::error::{S3Error, S3ErrorCode};

/// One request body's decoder and verifier.
pub struct BodyDecoder {
    /// Present for the aws-chunked payload modes.
    chunked: Option<ChunkedDecoder>,
    /// Present when the signature covers the payload's SHA-256.
    sha: Option<PayloadHashVerifier>,
    verifier: BodyVerifier,
    request: ChecksumRequest,
    content_length: Option<u64>,
    received_bytes: u64,
}

impl BodyDecoder {
    /// The decoder for a request with these headers, authenticated as `auth`.
    pub fn new(headers: &HeaderMap, auth: &AuthContext) -> Result<BodyDecoder, S3Error> {
        let request = ChecksumRequest::from_headers(headers)?;
        let chunked =
            if auth.payload_mode.is_streaming() { Some(ChunkedDecoder::from_headers(auth, headers)?) } else { None };
        let sha = match auth.payload_mode {
            PayloadMode::Sha256(h) => Some(PayloadHashVerifier::new(h)),
            _ => None,
        };
        let content_length = headers
            .get(http::header::CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()))
            .map(|v| v.ok_or_else(|| S3Error::invalid_argument("Content-Length is not a number")))
            .transpose()?;
        if content_length.is_none() && !headers.contains_key(http::header::TRANSFER_ENCODING) {
            return Err(S3Error::new(S3ErrorCode::MissingContentLength));
        }
        Ok(BodyDecoder {
            chunked,
            sha,
            verifier: BodyVerifier::new(request.clone()),
            request,
            content_length,
            received_bytes: 0,
        })
    }

    /// The Content-MD5 the client sent, decoded.
    pub fn content_md5(&self) -> Option<[u8; 16]> {
        self.request.content_md5
    }

    /// The payload size the client declared, if it did (an aws-chunked body's framing is not
    /// its payload, so its Content-Length declares nothing here).
    pub fn declared_len(&self) -> Option<u64> {
        match &self.chunked {
            Some(_) => None,
            None => self.content_length,
        }
    }

    /// The payload size the client declared, either way: Content-Length for a plain body,
    /// `x-amz-decoded-content-length` for an aws-chunked one.
    pub fn declared_payload_len(&self) -> Option<u64> {
        match &self.chunked {
            Some(dec) => dec.expected_len(),
            None => self.content_length,
        }
    }

    /// Whether the body is declared empty. The server must then not read the connection's
    /// body at all: reading it makes hyper answer a client's `Expect: 100-continue` with a 100
    /// that can arrive after the final response, and a client that reuses the connection then
    /// reads that stray 100 as the next answer.
    pub fn declared_empty(&self) -> bool {
        self.chunked.is_none() && self.content_length == Some(0)
    }

    /// One frame of the body as received. Returns the payload bytes it completes (slices of
    /// `frame`, none empty), already counted into every digest.
    pub fn feed(&mut self, frame: &Bytes) -> Result<Vec<Bytes>, S3Error> {
        let mut payload = match &mut self.chunked {
            Some(dec) => {
                let mut out = Vec::new();
                let mut input = &frame[..];
                while let Some(p) = dec.next(&mut input)? {
                    out.push(frame.slice_ref(p));
                }
                out
            }
            None => vec![frame.clone()],
        };
        payload.retain(|p| !p.is_empty());
        for p in &payload {
            self.received_bytes += p.len() as u64;
            if let Some(s) = &mut self.sha {
                s.update(p);
            }
            self.verifier.update(p);
        }
        Ok(payload)
    }

    /// After the last frame: checks the length, the payload hash and the checksums. Returns the
    /// checksum to store with the object (algorithm and base64 value), if the client asked for one.
    pub fn finish(self) -> Result<Option<(ChecksumAlgorithm, String)>, S3Error> {
        let declared = self.declared_len();
        let BodyDecoder { chunked, sha, verifier, request, received_bytes, .. } = self;
        let trailers = match chunked {
            Some(d) => d.finish()?,
            None => Vec::new(),
        };
        if let Some(n) = declared {
            if received_bytes != n {
                return Err(S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    format!("You did not provide the number of bytes specified by the Content-Length HTTP header ({received_bytes} of {n})"),
                ));
            }
        }
        if let Some(s) = sha {
            s.finish()?;
        }
        let trailer_value = request.algorithm.and_then(|alg| {
            trailers.iter().find(|(k, _)| k.eq_ignore_ascii_case(alg.header_name())).map(|(_, v)| v.clone())
        });
        let digests = verifier.finish(trailer_value.as_deref())?;
        Ok(digests.checksum_base64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    /// A request signed with `UNSIGNED-PAYLOAD`: only the headers' digests check the body.
    fn unsigned() -> AuthContext {
        AuthContext {
            access_key: "AK".into(),
            region: "us-east-1".into(),
            signing_key: [0; 32],
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            seed_signature: String::new(),
            payload_mode: PayloadMode::Unsigned,
            presigned: false,
        }
    }

    #[test]
    fn a_plain_body_passes_through_and_its_length_is_checked() {
        let h = headers(&[("content-length", "5")]);
        let mut d = BodyDecoder::new(&h, &unsigned()).expect("decoder");
        assert_eq!(d.declared_len(), Some(5));
        assert!(!d.declared_empty());
        let got = d.feed(&Bytes::from_static(b"hello")).expect("feed");
        assert_eq!(got, vec![Bytes::from_static(b"hello")]);
        assert!(d.finish().expect("finish").is_none());

        let mut short = BodyDecoder::new(&h, &unsigned()).expect("decoder");
        short.feed(&Bytes::from_static(b"hell")).expect("feed");
        assert_eq!(short.finish().expect_err("short").code, S3ErrorCode::IncompleteBody);
    }

    #[test]
    fn content_md5_and_checksums_are_verified_at_finish() {
        // MD5("hello") = 5d41402abc4b2a76b9719d911017c592, base64 XUFAKrxLKna5cZ2REBfFkg==
        let good = headers(&[("content-length", "5"), ("content-md5", "XUFAKrxLKna5cZ2REBfFkg==")]);
        let mut d = BodyDecoder::new(&good, &unsigned()).expect("decoder");
        assert!(d.content_md5().is_some());
        d.feed(&Bytes::from_static(b"hello")).expect("feed");
        d.finish().expect("matching Content-MD5");

        let mut d = BodyDecoder::new(&good, &unsigned()).expect("decoder");
        d.feed(&Bytes::from_static(b"hellx")).expect("feed");
        assert_eq!(d.finish().expect_err("bad md5").code, S3ErrorCode::BadDigest);

        // CRC32C("hello") = 0x9a71bb4c
        let crc = headers(&[("content-length", "5"), ("x-amz-checksum-crc32c", "mnG7TA==")]);
        let mut d = BodyDecoder::new(&crc, &unsigned()).expect("decoder");
        d.feed(&Bytes::from_static(b"hello")).expect("feed");
        let stored = d.finish().expect("matching crc32c").expect("a checksum to store");
        assert_eq!((stored.0, stored.1.as_str()), (ChecksumAlgorithm::Crc32c, "mnG7TA=="));
    }

    #[test]
    fn a_body_without_a_length_or_chunked_transfer_is_refused() {
        let e = BodyDecoder::new(&HeaderMap::new(), &unsigned()).err().expect("no length");
        assert_eq!(e.code, S3ErrorCode::MissingContentLength);
        let empty = BodyDecoder::new(&headers(&[("content-length", "0")]), &unsigned()).expect("decoder");
        assert!(empty.declared_empty());
    }
}
