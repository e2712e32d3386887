//! Tessera's S3 protocol layer: routing, authentication, checksums, XML and errors.
//! Pure and runtime-free; the server wires these to hyper and the engine.

pub mod admin;
pub mod auth;
pub mod body;
pub mod checksum;
pub mod config;
pub mod doctor;
pub mod engine_error;
pub mod error;
pub mod handler;
pub mod http_util;
pub mod ops;
pub mod router;
pub mod server;
pub mod unhonoured;
pub mod xml;
