//! The HTTP server: one listening socket (every core accepts from a duplicate), hyper 1.x HTTP/1.1 connections on
//! each core's own event loop (over TLS when configured, see `tls`), graceful shutdown on
//! SIGINT/SIGTERM, the TLS certificate re-read on SIGHUP.

use crate::config::{credentials, ServerConfig};
use crate::handler::{handle, Server};
use crate::ops::Ctx;
use engine::{Engine, EngineConfig};
use futures::future::{select, Either};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use monoio_compat::hyper::{MonoioIo, MonoioTimer};
use s3::xml::Owner;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE_SECS: u64 = 30;
const LISTEN_BACKLOG: i32 = 1024;
/// Open connections one core serves at most; past it a new connection is answered 503
/// SlowDown and closed (each holds hyper's read and write buffers while idle).
pub const CONNECTIONS_PER_CORE_MAX: usize = 4096;
// (Both defaults; `tessera server --connections-per-core-max / --requests-per-core-max`.)
/// Requests one core runs at once at most; past it a request is answered 503 SlowDown before
/// its body is read. A request in flight holds at most its body channel (8 chunks) and one
/// PUT's stripe buffers (1 MiB) on its owner core, so this bounds a core's request memory.
pub const REQUESTS_IN_FLIGHT_PER_CORE_MAX: usize = 1024;

/// The one listening socket of this server. Not SO_REUSEPORT: with it, a second process (a
/// second tessera on another data directory, or anything else of the same user) could bind
/// the same port, join the group and be handed a share of this server's connections. Every
/// core accepts from a duplicate of this socket instead (one accept queue, taken from by
/// whichever core is free). SO_REUSEADDR only lets a restart bind over old TIME_WAITs.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s.into())
}

/// Per-core connection registry (for graceful shutdown and the connection bound) and the
/// count of requests in flight on this core.
struct Conns {
    next: Cell<u64>,
    stop: RefCell<HashMap<u64, futures::channel::oneshot::Sender<()>>>,
    requests: Cell<usize>,
    connections_max: usize,
    requests_max: usize,
}

/// Counts a request in flight on its core while it lives.
struct InFlight(Rc<Conns>);

impl InFlight {
    fn enter(conns: &Rc<Conns>) -> Option<InFlight> {
        let n = conns.requests.get();
        if n >= conns.requests_max {
            return None;
        }
        conns.requests.set(n + 1);
        Some(InFlight(conns.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests.set(self.0.requests.get() - 1);
    }
}

/// Answer a connection past the bound with a fixed 503 SlowDown and close it.
async fn refuse_connection(mut stream: monoio::net::TcpStream) {
    use monoio::io::AsyncWriteRentExt;
    let (rid, body) = crate::handler::slow_down_xml("this server's core has too many open connections");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\nServer: Tessera\r\nx-amz-request-id: {rid}\r\n\r\n{body}",
        body.len()
    );
    let _ = monoio::time::timeout(Duration::from_secs(5), stream.write_all(head.into_bytes())).await;
}

/// Serve one connection (plain or TLS) until it ends; on a stop request, let hyper finish
/// the request in flight and close.
async fn serve_connection<I>(
    srv: Arc<Server>,
    core: usize,
    conns: Rc<Conns>,
    io: I,
    peer: SocketAddr,
    conn_info: crate::ops::ConnInfo,
    stop: futures::channel::oneshot::Receiver<()>,
) where
    I: monoio::io::poll_io::AsyncRead + monoio::io::poll_io::AsyncWrite + Unpin + 'static,
{
    let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        // Where the request came from and whether over TLS, for the policy conditions that ask.
        req.extensions_mut().insert(conn_info);
        let srv = srv.clone();
        let in_flight = InFlight::enter(&conns);
        async move {
            let Some(_in_flight) = in_flight else {
                if let Some(m) = srv.probe.metrics.get(core) {
                    m.requests_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return Ok::<_, Infallible>(crate::handler::slow_down());
            };
            Ok::<_, Infallible>(handle(&srv, core, peer, req).await)
        }
    });
    let conn = http1::Builder::new()
        .timer(MonoioTimer)
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(MonoioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    if let Either::Right((stopping, _)) = select(conn.as_mut(), stop).await {
        if stopping.is_ok() {
            conn.as_mut().graceful_shutdown();
        }
        let _ = conn.await;
    }
}

/// How long a client has to finish its TLS handshake (a bound on what a silent connection
/// holds before it is an HTTP connection with hyper's own header timeout).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client connection that counts the bytes it reads and writes into its core's counters.
struct Counted<T> {
    io: T,
    srv: Arc<Server>,
    core: usize,
}

impl<T> Counted<T> {
    fn add(&self, pick: fn(&crate::metrics::CoreMetrics) -> &std::sync::atomic::AtomicU64, n: usize) {
        if let Some(m) = self.srv.probe.metrics.get(self.core) {
            pick(m).fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl<T: monoio::io::poll_io::AsyncRead + Unpin> monoio::io::poll_io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut monoio::io::poll_io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.add(|m| &m.bytes_in, n);
        }
        r
    }
}

impl<T: monoio::io::poll_io::AsyncWrite + Unpin> monoio::io::poll_io::AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.add(|m| &m.bytes_out, n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.add(|m| &m.bytes_out, n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn serve_core(
    srv: Arc<Server>,
    core: usize,
    listener: std::net::TcpListener,
    stop: flume::Receiver<()>,
    done: std::sync::mpsc::Sender<()>,
    bounds: (usize, usize),
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let listener = match monoio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot serve on this core: {e}");
            let _ = done.send(());
            return;
        }
    };
    let conns = Rc::new(Conns {
        next: Cell::new(0),
        stop: RefCell::new(HashMap::new()),
        requests: Cell::new(0),
        connections_max: bounds.0,
        requests_max: bounds.1,
    });
    loop {
        let accept = std::pin::pin!(listener.accept());
        let stopping = std::pin::pin!(stop.recv_async());
        match select(accept, stopping).await {
            Either::Left((Ok((stream, peer)), _)) => {
                let _ = stream.set_nodelay(true);
                let Some(metrics) = srv.probe.metrics.get(core) else { break };
                if conns.stop.borrow().len() >= conns.connections_max {
                    // (Plain text even on a TLS listener: past the bound no handshake is spent.)
                    metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    monoio::spawn(refuse_connection(stream));
                    continue;
                }
                metrics.connections_accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Ok(io) = stream.try_into_poll_io() else { continue };
                let srv = srv.clone();
                let conns = conns.clone();
                let tls = tls.clone();
                monoio::spawn(async move {
                    let holder = srv.clone();
                    let Some(metrics) = holder.probe.metrics.get(core) else { return };
                    let _open = crate::metrics::Raised::new(&metrics.connections_open);
                    let io = Counted { io, srv: srv.clone(), core };
                    let id = conns.next.get();
                    conns.next.set(id + 1);
                    let (tx, rx) = futures::channel::oneshot::channel();
                    conns.stop.borrow_mut().insert(id, tx);
                    match tls {
                        None => {
                            let info = crate::ops::ConnInfo { peer: Some(peer.ip()), tls: false };
                            serve_connection(srv, core, conns.clone(), io, peer, info, rx).await
                        }
                        Some(acceptor) => match monoio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await
                        {
                            Ok(Ok(tls_io)) => {
                                let info = crate::ops::ConnInfo { peer: Some(peer.ip()), tls: true };
                                serve_connection(srv, core, conns.clone(), tls_io, peer, info, rx).await
                            }
                            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                    }
                    conns.stop.borrow_mut().remove(&id);
                });
            }
            Either::Left((Err(e), _)) => {
                tracing::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
            Either::Right(_) => break,
        }
    }
    drop(listener);
    // Ask every connection to finish its request in flight and close.
    for (_, tx) in conns.stop.borrow_mut().drain() {
        let _ = tx.send(());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(SHUTDOWN_GRACE_SECS);
    while Rc::strong_count(&conns) > 1 && std::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = done.send(());
}

pub fn run(cfg: ServerConfig) -> Result<(), String> {
    let first_start = crate::config::is_absent_or_empty(&cfg.data);
    std::fs::create_dir_all(&cfg.data).map_err(|e| format!("cannot create {}: {e}", cfg.data.display()))?;
    // Held until this function returns (and by the kernel until the process ends, however it
    // ends): a second server on the same data directory is refused before it formats, reads the
    // credentials or opens a device. `Engine::open` locks each device directory the same way.
    let _data_lock = engine::dirlock::DirLock::acquire(&cfg.data, "data directory").map_err(|e| e.to_string())?;
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cores = if cfg.cores == 0 { ncpu } else { cfg.cores };
    let layout = cfg.layout(cores as u32);
    if crate::config::check_start(&cfg, &layout, first_start)? {
        engine::format(&layout).map_err(|e| format!("format failed: {e}"))?;
        tracing::info!("formatted {} devices, EC {}+{}", layout.devices.len(), layout.k, layout.m);
    }
    let (creds, source) = credentials(&cfg.data).map_err(|e| format!("credentials: {e}"))?;
    let mut ecfg = EngineConfig::new(layout.devices.clone());
    ecfg.cores = cores;
    ecfg.pin = cfg.pin;
    ecfg.segment_bytes = cfg.segment_mib.max(1) << 20;
    ecfg.heal.io_shares = cfg.io_shares;
    ecfg.log_direct = !cfg.log_buffered;
    ecfg.set_chunk_bytes(cfg.chunk_bytes);
    ecfg.stripes_in_flight = cfg.stripes_in_flight;
    ecfg.heal.scrub_period_secs = cfg.scrub_period_secs;
    if cfg.md5_single_stream {
        ecfg.md5_batch_min_lanes = usize::MAX;
    }
    let engine = Engine::open(ecfg).map_err(|e| format!("cannot open the device set: {e}"))?;
    for (i, d) in engine.io_drivers().iter().enumerate() {
        if d.starts_with("io_uring") {
            tracing::info!("core {i}: I/O driver {d}");
        } else {
            tracing::warn!("core {i}: I/O driver {d} — NOT io_uring; fine for tests, not for production");
        }
    }
    let addr: SocketAddr = cfg.listen.parse().map_err(|e| format!("--listen {:?}: {e}", cfg.listen))?;
    let first = bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = first.local_addr().map_err(|e| e.to_string())?;
    let mut listeners = Vec::with_capacity(engine.cores());
    for _ in 1..engine.cores() {
        listeners.push(first.try_clone().map_err(|e| format!("cannot share the listener on {addr}: {e}"))?);
    }
    listeners.push(first);
    let policies = futures::executor::block_on(crate::access::Policies::load(&engine))?;
    let users = futures::executor::block_on(crate::users::Users::load(&engine, &creds.access_key))?;
    let owner = Owner { id: owner_id(&creds.access_key), display_name: "tessera".into() };
    let srv = Arc::new(Server {
        ctx: Ctx {
            engine: engine.clone(),
            region: cfg.region.clone(),
            owner,
            policies: Arc::new(policies),
            users: Arc::new(users),
        },
        creds: creds.clone(),
        domain: cfg.domain.clone(),
        probe: crate::probe::ProbeState {
            metrics: (0..engine.cores()).map(|_| crate::metrics::CoreMetrics::default()).collect(),
            metrics_token: cfg.metrics_token.clone(),
            segment_bytes: cfg.segment_mib.max(1) << 20,
            started: std::time::Instant::now(),
        },
        access_log: cfg.access_log,
    });
    let certs = match &cfg.tls {
        Some(files) => Some(crate::tls::CertStore::open(files.clone())?),
        None => None,
    };
    let acceptor = certs.as_ref().map(|c| c.acceptor()).transpose()?;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut stops = Vec::new();
    for (core, l) in listeners.into_iter().enumerate() {
        let (stop_tx, stop_rx) = flume::bounded(1);
        stops.push(stop_tx);
        let srv = srv.clone();
        let done = done_tx.clone();
        let bounds = (cfg.connections_per_core_max, cfg.requests_per_core_max);
        let tls = acceptor.clone();
        engine
            .spawn_on(core, move || serve_core(srv, core, l, stop_rx, done, bounds, tls))
            .map_err(|e| e.to_string())?;
    }
    let set = engine.device_set();
    if source == "generated" {
        println!(
            "Generated root credentials (stored in {}):",
            cfg.data.join(crate::config::CREDENTIALS_FILE).display()
        );
    }
    println!("  AWS_ACCESS_KEY_ID={}", creds.access_key);
    // The secret is printed once, when it is made: stdout of a service lands in its journal,
    // and a secret the operator already has (the environment, the stored file) need not.
    match source {
        "generated" => println!("  AWS_SECRET_ACCESS_KEY={}", creds.secret_key),
        "stored" => println!(
            "  (secret key: in {}, not printed again)",
            cfg.data.join(crate::config::CREDENTIALS_FILE).display()
        ),
        _ => println!("  (secret key: from TESSERA_SECRET_KEY, not printed)"),
    }
    let drivers = engine.io_drivers();
    let driver = if drivers.iter().all(|d| d == &drivers[0]) { drivers[0].clone() } else { drivers.join(",") };
    println!(
        "tessera ready: {}://{addr} cores={} devices={} zones={} ec={}+{} io={driver} credentials={source}",
        if certs.is_some() { "https" } else { "http" },
        engine.cores(),
        set.device_count(),
        set.zone_names.len(),
        set.k,
        set.m,
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // SIGHUP is taken too: it re-reads the TLS certificate, and never kills the node.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // Ready once serving and once a SIGTERM would drain rather than kill.
    let scheme = if certs.is_some() { "https" } else { "http" };
    crate::notify::tell(&format!("READY=1\nSTATUS=serving S3 on {scheme}://{addr}\nMAINPID={}", std::process::id()));
    for sig in signals.forever() {
        if sig != SIGHUP {
            tracing::info!("signal {sig}: stopping");
            break;
        }
        match &certs {
            Some(c) => match c.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate re-read; new connections present it"),
                Err(e) => tracing::error!("SIGHUP: {e}; still presenting the previous certificate"),
            },
            None => tracing::warn!(
                "SIGHUP: nothing to reload (no TLS; credentials and log level are read at start); still serving"
            ),
        }
    }
    crate::notify::tell("STOPPING=1\nSTATUS=draining connections");
    for s in &stops {
        let _ = s.send(());
    }
    for _ in 0..stops.len() {
        if done_rx.recv_timeout(Duration::from_secs(SHUTDOWN_GRACE_SECS + 5)).is_err() {
            break;
        }
    }
    if let Ok(stats) = futures::executor::block_on(engine.stats()) {
        let (c, r, us) = stats
            .iter()
            .fold((0u64, 0u64, 0u64), |a, s| (a.0 + s.log_commits, a.1 + s.log_records, a.2 + s.log_commit_us));
        let ck: u64 = stats.iter().map(|s| s.checkpoints).sum();
        let recycled: u64 = stats.iter().map(|s| s.log_files_recycled).sum();
        let peak: u64 = stats.iter().map(|s| s.pool_peak_bytes).sum();
        tracing::info!(
            "buffers: peak {:.1} MiB over all cores (sum of each core's peak)",
            peak as f64 / (1u64 << 20) as f64
        );
        tracing::info!(
            "log: {c} group commits of {:.1} records on average, {:.2} ms each; {ck} checkpoints ({recycled} mirror files recycled)",
            r as f64 / c.max(1) as f64,
            us as f64 / 1000.0 / c.max(1) as f64
        );
    }
    engine.shutdown();
    println!("tessera stopped");
    Ok(())
}

/// The bucket owner's id that listings show (ListBuckets, `fetch-owner`): the xxh3 of the root
/// access key in hex, the same on every build and every start (std's `DefaultHasher` promises
/// neither across Rust releases).
fn owner_id(access_key: &str) -> String {
    format!("{:x}", xxhash_rust::xxh3::xxh3_64(access_key.as_bytes()))
}

#[cfg(test)]
mod tests {
    /// Pinned: a client that stored the owner id sees the same one after an upgrade.
    #[test]
    fn the_owner_id_is_the_xxh3_of_the_access_key() {
        assert_eq!(super::owner_id("TESSERATESTACCESSKEY"), "e138ab79ae2cf510");
        assert_eq!(super::owner_id(""), format!("{:x}", 0x2d06_8005_38d3_94c2_u64));
    }
}
