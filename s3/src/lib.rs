//! `tessera-s3` (imported as `s3`): the S3 protocol as Tessera speaks it, and nothing else.
//!
//! Method + path + query + headers become one [`router::Endpoint`]; [`auth`] checks SigV4
//! (header and presigned) and decodes aws-chunked bodies; [`body`] and [`checksum`] verify a
//! body's payload hash, Content-MD5 and `x-amz-checksum-*` as it streams; [`xml`] renders
//! responses and parses request documents; [`error`] is the one S3 error type (code, HTTP
//! status, XML body); [`unhonoured`] refuses the request headers Tessera cannot honour yet;
//! [`http_util`] holds ranges, dates and ETags.
//!
//! It is a crate of its own, apart from the `tessera` server, so that what a client sees can be
//! read, unit-tested and fuzzed without a runtime or a storage engine: it depends on neither
//! (no monoio, no hyper, no `tessera-engine`) and does no I/O. The server feeds it `http`
//! types and the body's bytes, and maps engine results onto its errors and XML.

pub mod auth;
pub mod body;
pub mod checksum;
pub mod error;
pub mod http_util;
pub mod router;
pub mod unhonoured;
pub mod xml;
