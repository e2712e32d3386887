//! Streaming checksums of request bodies: Content-MD5 and `x-amz-checksum-*`
//! (CRC32, CRC32C, CRC64NVME, SHA1, SHA256), parsed from headers and checked at the end.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use http::HeaderMap;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::error::{S3Error, S3ErrorCode};

/// The additional checksum algorithms S3 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// The name in `x-amz-sdk-checksum-algorithm` and in XML (`CRC32`, `CRC64NVME`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The header carrying the value: `x-amz-checksum-crc32`, ...
    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The XML element of this checksum in S3 responses (`ChecksumCRC32`, ...).
    pub fn xml_element(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "ChecksumCRC32",
            ChecksumAlgorithm::Crc32c => "ChecksumCRC32C",
            ChecksumAlgorithm::Crc64Nvme => "ChecksumCRC64NVME",
            ChecksumAlgorithm::Sha1 => "ChecksumSHA1",
            ChecksumAlgorithm::Sha256 => "ChecksumSHA256",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// Parses an algorithm name, case-insensitively (`crc32c`, `CRC32C`).
    pub fn from_name(name: &str) -> Option<ChecksumAlgorithm> {
        let name = name.trim();
        Self::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    /// Parses a header name (`x-amz-checksum-crc32c`), case-insensitively.
    pub fn from_header_name(name: &str) -> Option<ChecksumAlgorithm> {
        let name = name.trim();
        Self::ALL.into_iter().find(|a| a.header_name().eq_ignore_ascii_case(name))
    }

    /// The message S3 sends when this checksum does not match.
    pub fn mismatch_error(self) -> S3Error {
        S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!("The {} you specified did not match the calculated checksum.", self.as_str()),
        )
    }
}

enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc_fast::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

/// An incremental checksum of one algorithm.
pub struct Checksummer {
    algorithm: ChecksumAlgorithm,
    state: State,
}

impl Checksummer {
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        let state = match algorithm {
            ChecksumAlgorithm::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            ChecksumAlgorithm::Crc32c => State::Crc32c(0),
            ChecksumAlgorithm::Crc64Nvme => State::Crc64Nvme(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme)),
            ChecksumAlgorithm::Sha1 => State::Sha1(Sha1::new()),
            ChecksumAlgorithm::Sha256 => State::Sha256(Sha256::new()),
        };
        Checksummer { algorithm, state }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(data),
            State::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            State::Crc64Nvme(d) => d.update(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The raw digest (CRCs big-endian, as S3 encodes them).
    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(c) => c.to_be_bytes().to_vec(),
            State::Crc64Nvme(d) => d.finalize().to_be_bytes().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        }
    }

    /// The digest in base64, the form of the `x-amz-checksum-*` headers.
    pub fn finalize_base64(self) -> String {
        BASE64.encode(self.finalize())
    }
}

/// Decodes a base64 checksum value and checks its length for the algorithm.
pub fn decode_checksum_value(algorithm: ChecksumAlgorithm, value: &str) -> Result<Vec<u8>, S3Error> {
    match BASE64.decode(value.trim()) {
        Ok(raw) if raw.len() == algorithm.digest_len() => Ok(raw),
        _ => Err(S3Error::invalid_request(format!("Value for {} header is invalid.", algorithm.header_name()))),
    }
}

/// What the request headers ask to be verified about the body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChecksumRequest {
    /// Decoded Content-MD5.
    pub content_md5: Option<[u8; 16]>,
    /// The additional algorithm to compute, if any.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// Its expected value from a header (decoded), if sent up front.
    pub expected: Option<Vec<u8>>,
    /// True when the value arrives in an aws-chunked trailer (`x-amz-trailer`).
    pub in_trailer: bool,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, S3Error> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            v.to_str().map(Some).map_err(|_| S3Error::invalid_argument(format!("header {name} is not valid ASCII")))
        }
    }
}

impl ChecksumRequest {
    /// Reads Content-MD5, `x-amz-checksum-*`, `x-amz-sdk-checksum-algorithm` and
    /// `x-amz-trailer`. At most one algorithm may be named, and all names must agree.
    pub fn from_headers(headers: &HeaderMap) -> Result<ChecksumRequest, S3Error> {
        let mut req = ChecksumRequest::default();
        if let Some(md5) = header_str(headers, "content-md5")? {
            let raw = BASE64
                .decode(md5.trim())
                .ok()
                .and_then(|raw| <[u8; 16]>::try_from(raw.as_slice()).ok())
                .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidDigest))?;
            req.content_md5 = Some(raw);
        }
        let mut set_algorithm = |alg: ChecksumAlgorithm| -> Result<(), S3Error> {
            match req.algorithm {
                Some(existing) if existing != alg => Err(S3Error::invalid_request(
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                )),
                _ => {
                    req.algorithm = Some(alg);
                    Ok(())
                }
            }
        };
        for alg in ChecksumAlgorithm::ALL {
            if let Some(value) = header_str(headers, alg.header_name())? {
                set_algorithm(alg)?;
                req.expected = Some(decode_checksum_value(alg, value)?);
            }
        }
        if let Some(name) = header_str(headers, "x-amz-trailer")? {
            let alg = ChecksumAlgorithm::from_header_name(name).ok_or_else(|| {
                S3Error::invalid_request(format!(
                    "The value specified in the x-amz-trailer header is not supported: {name}"
                ))
            })?;
            set_algorithm(alg)?;
            req.in_trailer = true;
        }
        if let Some(name) = header_str(headers, "x-amz-sdk-checksum-algorithm")? {
            let alg = ChecksumAlgorithm::from_name(name).ok_or_else(|| {
                S3Error::invalid_request(format!("Value for x-amz-sdk-checksum-algorithm header is invalid: {name}"))
            })?;
            set_algorithm(alg).map_err(|_| {
                S3Error::invalid_request("x-amz-sdk-checksum-algorithm does not match the checksum header sent")
            })?;
        }
        if req.in_trailer && req.expected.is_some() {
            return Err(S3Error::invalid_request("A checksum cannot be sent both as a header and as a trailer."));
        }
        Ok(req)
    }
}

/// The digests computed over a whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDigests {
    /// Computed only when the request sent Content-MD5 (the engine computes the ETag).
    pub md5: Option<[u8; 16]>,
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

impl BodyDigests {
    /// The ETag of a single-part object: hex MD5, unquoted.
    pub fn etag(&self) -> Option<String> {
        self.md5.map(hex::encode)
    }

    /// The additional checksum in base64, with its algorithm.
    pub fn checksum_base64(&self) -> Option<(ChecksumAlgorithm, String)> {
        self.checksum.as_ref().map(|(alg, raw)| (*alg, BASE64.encode(raw)))
    }
}

/// Hashes a body as it streams and checks it against the request at the end.
/// MD5 is always computed: it is the object's ETag.
pub struct BodyVerifier {
    request: ChecksumRequest,
    md5: Option<Md5>,
    extra: Option<Checksummer>,
}

impl BodyVerifier {
    pub fn new(request: ChecksumRequest) -> Self {
        let extra = request.algorithm.map(Checksummer::new);
        BodyVerifier { md5: request.content_md5.map(|_| Md5::new()), request, extra }
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        if let Some(c) = &mut self.extra {
            c.update(data);
        }
    }

    /// Finishes and verifies. `trailer_value` is the base64 value from the aws-chunked
    /// trailer when the request announced one.
    pub fn finish(self, trailer_value: Option<&str>) -> Result<BodyDigests, S3Error> {
        let md5: Option<[u8; 16]> = self.md5.map(|m| m.finalize().into());
        if let (Some(expected), Some(md5)) = (self.request.content_md5, md5) {
            if expected != md5 {
                return Err(S3Error::new(S3ErrorCode::BadDigest)
                    .detail("ExpectedDigest", hex::encode(expected))
                    .detail("CalculatedDigest", hex::encode(md5)));
            }
        }
        let checksum = match self.extra {
            None => None,
            Some(c) => {
                let alg = c.algorithm();
                let got = c.finalize();
                let expected = match (&self.request.expected, trailer_value) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(v)) => Some(decode_checksum_value(alg, v)?),
                    (None, None) if self.request.in_trailer => {
                        return Err(S3Error::invalid_request(format!(
                            "The trailer {} announced in x-amz-trailer was not sent.",
                            alg.header_name()
                        )))
                    }
                    (None, None) => None,
                };
                if let Some(expected) = expected {
                    if expected != got {
                        return Err(alg.mismatch_error());
                    }
                }
                Some((alg, got))
            }
        };
        Ok(BodyDigests { md5, checksum })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(alg: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
        let mut c = Checksummer::new(alg);
        // Feed in uneven pieces: streaming must equal one-shot.
        for piece in data.chunks(3) {
            c.update(piece);
        }
        c.finalize()
    }

    #[test]
    fn crc_check_values_match_the_catalogue() {
        let check = b"123456789";
        assert_eq!(digest(ChecksumAlgorithm::Crc32, check), 0xCBF4_3926u32.to_be_bytes());
        assert_eq!(digest(ChecksumAlgorithm::Crc32c, check), 0xE306_9283u32.to_be_bytes());
        assert_eq!(digest(ChecksumAlgorithm::Crc64Nvme, check), 0xAE8B_1486_0A79_9888u64.to_be_bytes());
    }

    #[test]
    fn sha_digests_match_known_values() {
        assert_eq!(
            hex::encode(digest(ChecksumAlgorithm::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex::encode(digest(ChecksumAlgorithm::Sha1, b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn base64_values_are_what_s3_sends() {
        // From AWS's documented trailer example: 66560 bytes of 'a'.
        let mut c = Checksummer::new(ChecksumAlgorithm::Crc32c);
        c.update(&[b'a'; 66_560]);
        assert_eq!(c.finalize_base64(), "sOO8/Q==");
        let mut c = Checksummer::new(ChecksumAlgorithm::Crc32);
        c.update(b"abc");
        assert_eq!(c.finalize_base64(), "NSRBwg==");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("test header"));
        }
        h
    }

    #[test]
    fn header_checksum_verifies_and_mismatch_is_bad_digest() {
        let req = ChecksumRequest::from_headers(&headers(&[("x-amz-checksum-crc32", "NSRBwg==")])).expect("valid");
        let mut v = BodyVerifier::new(req.clone());
        v.update(b"abc");
        let d = v.finish(None).expect("matches");
        assert_eq!(d.etag(), None, "MD5 is only computed when Content-MD5 was sent");
        assert_eq!(d.checksum_base64(), Some((ChecksumAlgorithm::Crc32, "NSRBwg==".to_string())));
        let mut v = BodyVerifier::new(req);
        v.update(b"abd");
        let e = v.finish(None).expect_err("mismatch");
        assert_eq!(e.code, S3ErrorCode::BadDigest);
        assert_eq!(e.message, "The CRC32 you specified did not match the calculated checksum.");
    }

    #[test]
    fn content_md5_is_checked() {
        let good =
            ChecksumRequest::from_headers(&headers(&[("content-md5", "kAFQmDzST7DWlj99KOF/cg==")])).expect("valid");
        let mut v = BodyVerifier::new(good.clone());
        v.update(b"abc");
        assert!(v.finish(None).is_ok());
        let mut v = BodyVerifier::new(good);
        v.update(b"abcd");
        assert_eq!(v.finish(None).expect_err("bad").code, S3ErrorCode::BadDigest);
        for bad in ["not base64!", "YWJj"] {
            let e = ChecksumRequest::from_headers(&headers(&[("content-md5", bad)])).expect_err(bad);
            assert_eq!(e.code, S3ErrorCode::InvalidDigest);
        }
    }

    #[test]
    fn trailer_checksum_is_checked_at_the_end() {
        let req = ChecksumRequest::from_headers(&headers(&[
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
            ("x-amz-sdk-checksum-algorithm", "CRC32C"),
        ]))
        .expect("valid");
        assert!(req.in_trailer);
        let mut v = BodyVerifier::new(req.clone());
        v.update(&[b'a'; 66_560]);
        assert!(v.finish(Some("sOO8/Q==")).is_ok());
        let v = BodyVerifier::new(req);
        assert_eq!(v.finish(None).expect_err("missing").code, S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn conflicting_or_malformed_checksum_headers_are_refused() {
        let two =
            headers(&[("x-amz-checksum-crc32", "NSRBwg=="), ("x-amz-checksum-sha1", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")]);
        assert_eq!(ChecksumRequest::from_headers(&two).expect_err("two").code, S3ErrorCode::InvalidRequest);
        let disagree = headers(&[("x-amz-checksum-crc32", "NSRBwg=="), ("x-amz-sdk-checksum-algorithm", "SHA256")]);
        assert!(ChecksumRequest::from_headers(&disagree).is_err());
        let short = headers(&[("x-amz-checksum-sha256", "NSRBwg==")]);
        assert!(ChecksumRequest::from_headers(&short).is_err());
        let unknown = headers(&[("x-amz-sdk-checksum-algorithm", "MD4")]);
        assert!(ChecksumRequest::from_headers(&unknown).is_err());
    }

    #[test]
    fn sdk_algorithm_alone_computes_without_expecting() {
        let req =
            ChecksumRequest::from_headers(&headers(&[("x-amz-sdk-checksum-algorithm", "crc64nvme")])).expect("valid");
        let mut v = BodyVerifier::new(req);
        v.update(b"123456789");
        let d = v.finish(None).expect("no expectation");
        assert_eq!(d.checksum.map(|c| c.0), Some(ChecksumAlgorithm::Crc64Nvme));
    }
}
