//! Tessera's S3 protocol layer: routing, authentication, checksums, XML and errors.
//! Pure and runtime-free; the server wires these to hyper and the engine.

pub mod auth;
pub mod checksum;
pub mod error;
pub mod http_util;
pub mod router;
pub mod xml;
