//! Counters of the HTTP side, one set per core, and the Prometheus text exposition of them
//! together with the engine's own counters (`GET /metrics`, see `probe`).
//!
//! Each core writes only its own [`CoreMetrics`] (relaxed atomic adds on memory no other core
//! writes: no shared cache line on the request path); a scrape reads every core's and sums
//! them. The exposition format is written by `prometheus-client` (the Prometheus project's
//! Rust client) through its `Collector` interface, from a snapshot taken at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use s3::router::Endpoint;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The operations requests are counted by: every S3 `Endpoint`, the admin and probe calls, and
/// `Unrouted` for requests answered before an operation was known (authentication failures,
/// malformed requests, the in-flight bound).
pub const OPS: [&str; 35] = [
    "ListBuckets",
    "CreateBucket",
    "HeadBucket",
    "DeleteBucket",
    "GetBucketLocation",
    "GetBucketVersioning",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "ListMultipartUploads",
    "DeleteObjects",
    "PutObject",
    "CopyObject",
    "GetObject",
    "HeadObject",
    "DeleteObject",
    "CreateMultipartUpload",
    "UploadPart",
    "UploadPartCopy",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",
    "GetObjectTagging",
    "NotImplemented",
    "AdminStatus",
    "AdminReplaceDevice",
    "HealthLive",
    "HealthReady",
    "Metrics",
    "Unrouted",
    "PutBucketPolicy",
    "GetBucketPolicy",
    "DeleteBucketPolicy",
    "PostObject",
    "AdminUsers",
];

/// An index into [`OPS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op(u8);

impl Op {
    pub const ADMIN_STATUS: Op = Op(24);
    pub const ADMIN_REPLACE: Op = Op(25);
    pub const HEALTH_LIVE: Op = Op(26);
    pub const HEALTH_READY: Op = Op(27);
    pub const METRICS: Op = Op(28);
    pub const UNROUTED: Op = Op(29);
    pub const ADMIN_USERS: Op = Op(34);

    pub fn of(ep: &Endpoint) -> Op {
        Op(match ep {
            Endpoint::ListBuckets => 0,
            Endpoint::CreateBucket { .. } => 1,
            Endpoint::HeadBucket { .. } => 2,
            Endpoint::DeleteBucket { .. } => 3,
            Endpoint::GetBucketLocation { .. } => 4,
            Endpoint::GetBucketVersioning { .. } => 5,
            Endpoint::ListObjects { .. } => 6,
            Endpoint::ListObjectsV2 { .. } => 7,
            Endpoint::ListObjectVersions { .. } => 8,
            Endpoint::ListMultipartUploads { .. } => 9,
            Endpoint::DeleteObjects { .. } => 10,
            Endpoint::PutObject { .. } => 11,
            Endpoint::CopyObject { .. } => 12,
            Endpoint::GetObject { .. } => 13,
            Endpoint::HeadObject { .. } => 14,
            Endpoint::DeleteObject { .. } => 15,
            Endpoint::CreateMultipartUpload { .. } => 16,
            Endpoint::UploadPart { .. } => 17,
            Endpoint::UploadPartCopy { .. } => 18,
            Endpoint::CompleteMultipartUpload { .. } => 19,
            Endpoint::AbortMultipartUpload { .. } => 20,
            Endpoint::ListParts { .. } => 21,
            Endpoint::GetObjectTagging { .. } => 22,
            Endpoint::NotImplemented(_) => 23,
            Endpoint::PutBucketPolicy { .. } => 30,
            Endpoint::GetBucketPolicy { .. } => 31,
            Endpoint::DeleteBucketPolicy { .. } => 32,
            Endpoint::PostObject { .. } => 33,
        })
    }

    pub fn name(self) -> &'static str {
        OPS[self.0 as usize]
    }
}

/// The HTTP statuses counted one by one; any other is counted as `other`.
const STATUSES: [u16; 17] = [200, 204, 206, 304, 400, 401, 403, 404, 405, 409, 411, 412, 416, 500, 501, 503, 507];
const STATUS_SLOTS: usize = STATUSES.len() + 1;

/// Upper bounds of the latency histogram's buckets, in seconds (+Inf is the last slot).
const LATENCY_BOUNDS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const LATENCY_SLOTS: usize = LATENCY_BOUNDS.len() + 1;

/// One core's counters of the HTTP side. Written by that core only.
pub struct CoreMetrics {
    requests: [[AtomicU64; STATUS_SLOTS]; OPS.len()],
    latency: [[AtomicU64; LATENCY_SLOTS]; OPS.len()],
    latency_sum_us: [AtomicU64; OPS.len()],
    /// Bytes read from and written to client sockets (headers and bodies).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Connections refused at the per-core bound (503 SlowDown).
    pub connections_refused: AtomicU64,
    /// Requests refused at the per-core in-flight bound (503 SlowDown).
    pub requests_refused: AtomicU64,
    pub connections_open: AtomicU64,
    pub requests_in_flight: AtomicU64,
}

impl Default for CoreMetrics {
    fn default() -> CoreMetrics {
        CoreMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_sum_us: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            requests_refused: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            requests_in_flight: AtomicU64::new(0),
        }
    }
}

impl CoreMetrics {
    /// One answered request: its operation, status and the time to its response head.
    pub fn request(&self, op: Op, status: u16, took: Duration) {
        let op = op.0 as usize;
        let slot = STATUSES.iter().position(|s| *s == status).unwrap_or(STATUSES.len());
        self.requests[op][slot].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BOUNDS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BOUNDS.len());
        self.latency[op][bucket].fetch_add(1, Relaxed);
        self.latency_sum_us[op].fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }
}

/// A gauge the caller raises while it lives (open connections, requests in flight).
pub struct Raised<'a>(&'a AtomicU64);

impl<'a> Raised<'a> {
    pub fn new(g: &'a AtomicU64) -> Raised<'a> {
        g.fetch_add(1, Relaxed);
        Raised(g)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// One device at scrape time.
#[derive(Debug, Clone)]
pub struct DeviceSample {
    pub index: u16,
    pub zone: String,
    pub healthy: bool,
    pub io_errors: u64,
    /// The device's filesystem, from statvfs: (size, bytes free to tessera); `None` when the
    /// device has no path or its filesystem cannot be asked.
    pub fs: Option<(u64, u64)>,
}

/// Everything one scrape shows, summed over the cores.
#[derive(Debug, Default)]
pub struct Snapshot {
    requests: Vec<[u64; STATUS_SLOTS]>,
    latency: Vec<[u64; LATENCY_SLOTS]>,
    latency_sum_us: Vec<u64>,
    bytes_in: u64,
    bytes_out: u64,
    connections_accepted: u64,
    connections_refused: u64,
    requests_refused: u64,
    connections_open: u64,
    requests_in_flight: u64,
    pub devices: Vec<DeviceSample>,
    pub engine: Vec<engine::CoreStats>,
    pub health: engine::HealthStatus,
    pub ready: bool,
    pub uptime_secs: f64,
}

impl Snapshot {
    /// Sum the cores' counters.
    pub fn of_cores(cores: &[CoreMetrics]) -> Snapshot {
        let mut s = Snapshot {
            requests: vec![[0; STATUS_SLOTS]; OPS.len()],
            latency: vec![[0; LATENCY_SLOTS]; OPS.len()],
            latency_sum_us: vec![0; OPS.len()],
            ..Default::default()
        };
        for c in cores {
            for op in 0..OPS.len() {
                for (i, v) in c.requests[op].iter().enumerate() {
                    s.requests[op][i] += v.load(Relaxed);
                }
                for (i, v) in c.latency[op].iter().enumerate() {
                    s.latency[op][i] += v.load(Relaxed);
                }
                s.latency_sum_us[op] += c.latency_sum_us[op].load(Relaxed);
            }
            s.bytes_in += c.bytes_in.load(Relaxed);
            s.bytes_out += c.bytes_out.load(Relaxed);
            s.connections_accepted += c.connections_accepted.load(Relaxed);
            s.connections_refused += c.connections_refused.load(Relaxed);
            s.requests_refused += c.requests_refused.load(Relaxed);
            s.connections_open += c.connections_open.load(Relaxed);
            s.requests_in_flight += c.requests_in_flight.load(Relaxed);
        }
        s
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String cannot fail, and every value is a number we hold.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!("metrics exposition failed: {e}");
        }
        out
    }
}

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Send + Sync>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// The sum over cores of one engine counter.
fn engine_sum(s: &Snapshot, f: impl Fn(&engine::CoreStats) -> u64) -> u64 {
    s.engine.iter().map(f).sum()
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Requests.
        {
            let mut m = e.encode_descriptor(
                "tessera_requests",
                "HTTP requests answered, by operation and status",
                None,
                MetricType::Counter,
            )?;
            for (op, slots) in self.requests.iter().enumerate() {
                for (i, n) in slots.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let status = STATUSES.get(i).map(|s| s.to_string()).unwrap_or_else(|| "other".into());
                    let labels = [("operation", OPS[op].to_string()), ("status", status)];
                    ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "tessera_request_duration_seconds",
                "Time from a request's arrival to its response head, by operation",
                None,
                MetricType::Histogram,
            )?;
            for (op, slots) in self.latency.iter().enumerate() {
                let count: u64 = slots.iter().sum();
                if count == 0 {
                    continue;
                }
                let buckets: Vec<(f64, u64)> =
                    LATENCY_BOUNDS.iter().copied().chain([f64::INFINITY]).zip(slots.iter().copied()).collect();
                let labels = [("operation", OPS[op])];
                m.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    self.latency_sum_us[op] as f64 / 1e6,
                    count,
                    &buckets,
                    None,
                )?;
            }
        }
        counter(&mut e, "tessera_received_bytes", "Bytes read from client connections", self.bytes_in)?;
        counter(&mut e, "tessera_sent_bytes", "Bytes written to client connections", self.bytes_out)?;
        counter(&mut e, "tessera_connections_accepted", "Client connections accepted", self.connections_accepted)?;
        counter(
            &mut e,
            "tessera_connections_refused",
            "Connections refused at the per-core bound (503 SlowDown)",
            self.connections_refused,
        )?;
        counter(
            &mut e,
            "tessera_requests_refused",
            "Requests refused at the per-core in-flight bound (503 SlowDown)",
            self.requests_refused,
        )?;
        gauge(&mut e, "tessera_connections_open", "Open client connections", self.connections_open)?;
        gauge(&mut e, "tessera_requests_in_flight", "Requests being served", self.requests_in_flight)?;
        gauge(&mut e, "tessera_ready", "1 when the node can acknowledge writes (as /health/ready)", self.ready as u64)?;
        gauge(&mut e, "tessera_uptime_seconds", "Seconds since the server started", self.uptime_secs)?;

        // Devices.
        {
            let mut m = e.encode_descriptor(
                "tessera_device_healthy",
                "1 if the device is in service",
                None,
                MetricType::Gauge,
            )?;
            for d in &self.devices {
                let labels = [("device", d.index.to_string()), ("zone", d.zone.clone())];
                ConstGauge::new(d.healthy as u64).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "tessera_device_io_errors",
                "I/O errors on the device since start (a full device's refusals are not errors)",
                None,
                MetricType::Counter,
            )?;
            for d in &self.devices {
                let labels = [("device", d.index.to_string()), ("zone", d.zone.clone())];
                ConstCounter::new(d.io_errors).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, pick) in [
            (
                "tessera_device_filesystem_size_bytes",
                "Size of the filesystem holding the device",
                (|fs: (u64, u64)| fs.0) as fn((u64, u64)) -> u64,
            ),
            (
                "tessera_device_filesystem_free_bytes",
                "Bytes free on the filesystem holding the device (devices sharing one filesystem show the same)",
                |fs: (u64, u64)| fs.1,
            ),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for d in &self.devices {
                if let Some(fs) = d.fs {
                    let labels = [("device", d.index.to_string()), ("zone", d.zone.clone())];
                    ConstGauge::new(pick(fs)).encode(m.encode_family(&labels)?)?;
                }
            }
        }

        // The engine.
        let h = &self.health;
        gauge(&mut e, "tessera_objects", "Objects stored (all tablets)", engine_sum(self, |c| c.objects))?;
        gauge(&mut e, "tessera_segment_files", "Segment files open", engine_sum(self, |c| c.segment_files))?;
        gauge(
            &mut e,
            "tessera_objects_below_redundancy",
            "Erasure-coded objects with a shard on a failed device",
            h.objects_below_redundancy,
        )?;
        gauge(&mut e, "tessera_repairs_queued", "Objects waiting in the repair queues", h.repairs_queued)?;
        gauge(
            &mut e,
            "tessera_repairs_waiting_for_room",
            "Objects whose repair waits for a zone-safe placement",
            h.repairs_waiting,
        )?;
        counter(&mut e, "tessera_repaired_stripes", "Stripes rebuilt by repair", h.repaired_stripes)?;
        counter(&mut e, "tessera_repaired_parts", "Parts rewritten by repair", h.repaired_parts)?;
        counter(
            &mut e,
            "tessera_repaired_bytes",
            "Client bytes covered by rebuilt stripes",
            engine_sum(self, |c| c.repaired_bytes),
        )?;
        counter(&mut e, "tessera_repair_failures", "Repairs that failed", h.repair_failures)?;
        counter(&mut e, "tessera_scrubbed_bytes", "Bytes the scrubber read and verified", h.scrubbed_bytes)?;
        counter(&mut e, "tessera_scrub_errors", "Bad or missing shards the scrubber found", h.scrub_errors)?;
        gauge(&mut e, "tessera_scrub_passes", "Completed scrub passes (minimum over tablets)", h.scrub_passes)?;
        counter(&mut e, "tessera_degraded_reads", "Reads that rebuilt data", engine_sum(self, |c| c.degraded_reads))?;
        counter(
            &mut e,
            "tessera_no_space_refusals",
            "Device writes refused because a device was full (ENOSPC, EDQUOT)",
            engine_sum(self, |c| c.no_space_errors),
        )?;
        counter(&mut e, "tessera_compacted_bytes", "Bytes compaction moved", engine_sum(self, |c| c.compacted_bytes))?;
        counter(
            &mut e,
            "tessera_log_commits",
            "Group commits of the metadata log",
            engine_sum(self, |c| c.log_commits),
        )?;
        counter(
            &mut e,
            "tessera_log_committed_records",
            "Records the group commits carried (divide by commits: batch size)",
            engine_sum(self, |c| c.log_records),
        )?;
        let commit_secs = engine_sum(self, |c| c.log_commit_us) as f64 / 1e6;
        ConstCounter::new(commit_secs).encode(e.encode_descriptor(
            "tessera_log_commit_duration_seconds",
            "Time group commits took in total (divide by commits: commit latency)",
            None,
            MetricType::Counter,
        )?)?;
        counter(&mut e, "tessera_checkpoints", "Log checkpoints written", engine_sum(self, |c| c.checkpoints))?;
        gauge(
            &mut e,
            "tessera_buffer_pool_peak_bytes",
            "Most I/O buffer bytes held at once (sum of each core's peak)",
            engine_sum(self, |c| c.pool_peak_bytes),
        )?;
        counter(
            &mut e,
            "tessera_buffer_pool_overflow_allocations",
            "Buffers allocated past the pool",
            engine_sum(self, |c| c.pool_overflow_allocs),
        )?;
        Ok(())
    }
}
