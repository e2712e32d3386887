//! `tessera`: the server binary's library. The hyper HTTP/1.1 server on each core's monoio
//! event loop ([`server`]), one request from authentication to response ([`handler`], one
//! module per family of S3 operations in [`ops`]), request and response bodies between hyper
//! and the engine ([`body`]), how engine errors read to a client ([`engine_error`]), the admin
//! endpoints and their JSON documents ([`admin`]), the unauthenticated health and metrics
//! endpoints ([`probe`], counting in [`metrics`]) and the server's configuration ([`config`]);
//! and the operator's commands that do not run the server ([`cli`]: `doctor`, and the admin
//! client behind `status` and `device replace`).
//!
//! The S3 protocol itself (routing, SigV4, aws-chunked, checksums, XML, errors) is the
//! runtime-free `tessera-s3` crate (`s3`); the storage is `tessera-engine` (`engine`). This is
//! a library, not only a binary, so the end-to-end tests can build the same `main.rs` and call
//! the admin client.

pub mod access;
pub mod admin;
pub mod body;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod engine_error;
pub mod handler;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod probe;
pub mod server;
pub mod tls;
pub mod users;
pub mod users_admin;
