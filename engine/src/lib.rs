//! Tessera's storage engine: thread-per-core, shared-nothing, erasure-coded object storage on
//! O_DIRECT segment files, with a mirrored metadata write-ahead log per tablet.
//!
//! Start with [`Engine::open`]; see `shared/ARCHITECTURE.md` for the design and its invariants.

pub mod api;
pub mod blocking;
pub mod buf;
pub mod codec;
mod core;
pub mod dirlock;
mod engine;
pub mod error;
pub mod heal;
pub mod ids;
pub mod index;
pub mod io;
pub mod layout;
pub mod md5batch;
pub mod placement;
pub mod record;
pub mod sched;
pub mod segment;
pub mod stripe;
pub mod superblock;
mod tablet;
pub mod util;
pub mod wal;

pub use api::*;
pub use engine::{
    format, Engine, EngineConfig, ReplaceReport, DEFAULT_CHUNK_BYTES, DEFAULT_POOL_BUFFERS, DEFAULT_SEGMENT_BYTES,
    DEFAULT_STRIPES_IN_FLIGHT,
};
pub use error::{Error, RequestError, Result, StorageError};
pub use heal::{DeviceHealth, HealConfig, HealthStatus, SCRUB_PERIOD_SECS_DEFAULT};
pub use layout::{DeviceSpec, Layout};
pub use record::{ObjectHeaders, StoredChecksum};
pub use sched::{IoClass, IoShares};
pub use tablet::{COMPACT_LIVE_PERCENT, INLINE_MAX_BYTES};
