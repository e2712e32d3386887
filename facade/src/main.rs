//! `tessera`: the S3-compatible object server.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tessera::config::{parse_ec, ServerConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: an S3-compatible object store (thread-per-core, erasure-coded, O_DIRECT)",
    long_about = "Tessera serves the S3 REST API from one machine's devices. Objects are erasure-coded \
                  (k data + m parity shards) over devices labelled with zones, so any m devices or a whole \
                  zone can fail without losing data.\n\n\
                  Quick start: `tessera server` formats ./tessera-data (6 directory devices in 3 zones, EC 4+2) \
                  on first start, listens on 127.0.0.1:9000 and prints the root credentials."
)]
struct Cli {
    /// Log lines on stderr as `text` (colours only when stderr is a terminal and NO_COLOR is
    /// unset) or `json` (one object per line). TESSERA_LOG sets the level, e.g. `warn` or
    /// `info,tessera::access=off`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr, filtered by TESSERA_LOG (default `info`).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init()
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the S3 server. Formats only the embedded default, and only on a first start (the
    /// data directory absent or empty); explicit devices are formatted by `tessera format`.
    Server {
        /// A TOML file of these flags (keys without the --; devices as [[device]] tables with
        /// zone and path); flags on the command line override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on (one socket, owned by this process; every core accepts from it).
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// Data directory: holds the credentials file and, by default, the 6 embedded devices.
        #[arg(long, default_value = "./tessera-data")]
        data: PathBuf,
        /// A device as ZONE=PATH (repeatable). Replaces the embedded device layout. The devices
        /// must have been formatted (`tessera format`): the server never formats them.
        #[arg(long = "device", value_name = "ZONE=PATH")]
        devices: Vec<String>,
        /// Erasure coding as K+M: checked against the set's (a start with another is refused);
        /// 4+2 when the embedded default is formatted on a first start.
        #[arg(long)]
        ec: Option<String>,
        /// Cores to run (one pinned thread each); 0 means every CPU.
        #[arg(long, default_value_t = 0)]
        cores: usize,
        /// Do not pin core threads to CPUs (for machines shared with other work, where a pinned
        /// thread waits for its CPU instead of moving to an idle one).
        #[arg(long)]
        no_pin: bool,
        /// Domain for virtual-hosted-style requests (BUCKET.DOMAIN).
        #[arg(long)]
        domain: Option<String>,
        /// Region reported to clients (any region is accepted in signatures).
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Size of each preallocated segment file in MiB (space is reserved per shard and device).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
        segment_mib: u64,
        /// Bytes of each shard of a stripe, in KiB, for objects written from now on (a multiple
        /// of 4). With --stripes-in-flight it sets the buffers a large request holds: at 4+2,
        /// 64 KiB and 2 make at most 1 MiB; larger is faster on some disks and costs memory.
        #[arg(long, default_value_t = (engine::DEFAULT_CHUNK_BYTES >> 10) as u32, value_parser = parse_chunk_kib)]
        chunk_kib: u32,
        /// Stripes of one object written at once while its body streams in.
        #[arg(long, default_value_t = engine::DEFAULT_STRIPES_IN_FLIGHT as u32, value_parser = clap::value_parser!(u32).range(1..=16))]
        stripes_in_flight: u32,
        /// Hash every PUT's ETag MD5 alone instead of batching a core's concurrent PUTs over
        /// SIMD lanes (for measuring the batcher; slower).
        #[arg(long)]
        md5_single_stream: bool,
        /// Append to the metadata log through the page cache and fdatasync each mirror, instead
        /// of O_DIRECT|O_DSYNC writes (for measuring the default; slower).
        #[arg(long)]
        log_buffered: bool,
        /// Percent of the device bytes repair (rebuild) may move while clients are busy; the
        /// foreground keeps the rest. When clients are idle, background work runs at full speed.
        #[arg(long, default_value_t = engine::IoShares::default().repair_percent, value_parser = clap::value_parser!(u32).range(1..=99))]
        repair_share: u32,
        /// Percent of the device bytes the scrubber may move while clients are busy.
        #[arg(long, default_value_t = engine::IoShares::default().scrub_percent, value_parser = clap::value_parser!(u32).range(1..=99))]
        scrub_share: u32,
        /// Percent of the device bytes compaction may move while clients are busy.
        #[arg(long, default_value_t = engine::IoShares::default().compaction_percent, value_parser = clap::value_parser!(u32).range(1..=99))]
        compaction_share: u32,
        /// The scrubber re-reads and verifies every shard once per this many hours (its rate
        /// adapts to the data size).
        #[arg(long, default_value_t = engine::SCRUB_PERIOD_SECS_DEFAULT / 3600, value_parser = clap::value_parser!(u64).range(1..))]
        scrub_period_hours: u64,
        /// Open connections one core serves at most; past it a connection gets 503 SlowDown.
        #[arg(long, default_value_t = tessera::server::CONNECTIONS_PER_CORE_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        connections_per_core_max: usize,
        /// Requests one core runs at once at most; past it a request gets 503 SlowDown before
        /// its body is read.
        #[arg(long, default_value_t = tessera::server::REQUESTS_IN_FLIGHT_PER_CORE_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        requests_per_core_max: usize,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key). Both files are read
        /// again on SIGHUP: renew a certificate without a restart.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require `Authorization: Bearer TOKEN` on GET /metrics (default: no token; the
        /// metrics hold no paths, keys or bucket names). Prefer TESSERA_METRICS_TOKEN, which
        /// other users cannot read from the process list.
        #[arg(long, env = "TESSERA_METRICS_TOKEN", hide_env_values = true)]
        metrics_token: Option<String>,
        /// Do not log a line per request (target `tessera::access`, level info: time, remote
        /// address, request id, method, path, operation, status, bytes in and out, duration).
        #[arg(long)]
        no_access_log: bool,
    },
    /// Format a new, empty device set: the embedded default under --data, or the --device
    /// list. Refuses devices that already hold a tessera device; changes nothing then.
    Format {
        /// Data directory (the embedded devices live under it unless --device is given).
        #[arg(long, default_value = "./tessera-data")]
        data: PathBuf,
        /// A device as ZONE=PATH (repeatable); PATH is created if missing.
        #[arg(long = "device", value_name = "ZONE=PATH")]
        devices: Vec<String>,
        /// Erasure coding as K+M (data+parity shards), fixed for the life of the set.
        #[arg(long, default_value = "4+2")]
        ec: String,
        /// Tablets (slices of the key space, each with its own log) to format for: the cores
        /// the server will run; 0 means every CPU of this machine.
        #[arg(long, default_value_t = 0)]
        cores: usize,
    },
    /// Show the server's health: devices, objects below full redundancy, rebuild and scrub
    /// progress. Exits 0 when fully healthy, 2 when degraded, 1 when it cannot ask. Signs with TESSERA_ACCESS_KEY/TESSERA_SECRET_KEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
    Status {
        /// The server's endpoint (http://HOST:PORT).
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        endpoint: String,
        /// Region to sign for (the server accepts any).
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Print the raw JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Operate on the devices of a running server.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Manage users, their access keys and identity policies on a running server. Signs with
    /// TESSERA_ACCESS_KEY/TESSERA_SECRET_KEY (the root user's keys).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
        /// The server's endpoint (http://HOST:PORT).
        #[arg(long, global = true, default_value = "http://127.0.0.1:9000")]
        endpoint: String,
        /// Region to sign for (the server accepts any).
        #[arg(long, global = true, default_value = "us-east-1")]
        region: String,
        /// Print the server's JSON answers (for scripts) instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Check this machine against the bare-metal playbook (tuning/README.md); exit 1 on any FAIL.
    Doctor {
        /// Also check the embedded device directories under DIR (O_DIRECT, filesystem type).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also check a device as ZONE=PATH (repeatable).
        #[arg(long = "device", value_name = "ZONE=PATH")]
        devices: Vec<String>,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user with one access key (printed once, with its secret). A new user may do
    /// nothing until an identity policy or a bucket policy allows it.
    Create { name: String },
    /// List users and their access keys (never secrets).
    List,
    /// Delete a user: its keys are refused from the next request on.
    Delete { name: String },
    /// Create, delete, disable or enable a user's access keys.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Put, get or delete a user's identity policy (IAM JSON, no Principal).
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create another key for NAME (at most two); printed once, with its secret.
    Create { name: String },
    /// Delete key KEY of NAME.
    Delete { name: String, key: String },
    /// Disable key KEY of NAME: refused from the next request on, until enabled.
    Disable { name: String, key: String },
    /// Enable a disabled key.
    Enable { name: String, key: String },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Set NAME's identity policy from the JSON document in FILE.
    Put { name: String, file: PathBuf },
    /// Print NAME's identity policy.
    Get { name: String },
    /// Delete NAME's identity policy.
    Delete { name: String },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Put a new, empty device in the place of a failed one and rebuild onto it.
    #[command(long_about = "Put a new, empty device in the place of a failed (or failing) one, on the running \
                  server, and get back to full redundancy with no further step.\n\n\
                  The server takes device N out of service (if it has not already: its logs move to other \
                  devices, new writes avoid it), formats PATH into N's slot (same set, same index, same \
                  zone), brings it into service, and its repair task rebuilds every shard the old device \
                  held (or re-places them). `tessera status` shows the progress: 'Objects below redundancy' \
                  falls to 0; --wait follows it here.\n\n\
                  PATH is a directory on the server's machine: an empty one, or a path that does not exist \
                  yet under an existing parent (it is created). It may be the old device's own path once \
                  the failed device is gone from it (e.g. a new disk mounted at the same mount point). A \
                  path holding tessera data (a superblock of any device, or other files) is refused unless \
                  --force, which erases tessera's files there. If PATH differs from the old path, start \
                  the server with --device ZONE=PATH from then on.\n\n\
                  Signs with TESSERA_ACCESS_KEY/TESSERA_SECRET_KEY (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).\n\n\
                  Example: tessera device replace --device 4 --path /mnt/nvme7 --wait 3600")]
    Replace {
        /// The device to replace, by number as `tessera status` shows it (4 or dev4).
        #[arg(long, value_name = "N")]
        device: String,
        /// The new, empty device (a directory on the server's machine).
        #[arg(long, value_name = "PATH")]
        path: PathBuf,
        /// Format PATH even if it holds tessera data (its tessera files are erased).
        #[arg(long)]
        force: bool,
        /// Wait up to SECS for the node to be fully redundant again, printing progress
        /// (exit 1 if it is not by then). 0 = return at once.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        wait: u64,
        /// The server's endpoint (http://HOST:PORT).
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        endpoint: String,
        /// Region to sign for (the server accepts any).
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
}

/// `--chunk-kib`: 4 to 4096, a multiple of 4 (shards are written O_DIRECT in 4 KiB blocks).
fn parse_chunk_kib(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("{s:?} is not a number of KiB"))?;
    if !(4..=4096).contains(&v) || !v.is_multiple_of(4) {
        return Err(format!("{v} KiB: a chunk is 4 to 4096 KiB, a multiple of 4"));
    }
    Ok(v)
}

fn main() {
    use clap::CommandFactory;
    let command = Cli::command();
    let argv = match command.find_subcommand("server") {
        Some(server) => tessera::config_file::expand(std::env::args_os().collect(), server),
        None => Ok(std::env::args_os().collect()),
    };
    let argv = argv.unwrap_or_else(|e| {
        eprintln!("tessera: {e}");
        std::process::exit(2)
    });
    let cli = Cli::parse_from(argv);
    init_logs(cli.log_format);
    let result = match cli.cmd {
        Cmd::Server {
            config: _,
            listen,
            data,
            devices,
            ec,
            cores,
            no_pin,
            domain,
            region,
            segment_mib,
            chunk_kib,
            stripes_in_flight,
            md5_single_stream,
            log_buffered,
            repair_share,
            scrub_share,
            compaction_share,
            scrub_period_hours,
            connections_per_core_max,
            requests_per_core_max,
            tls_cert,
            tls_key,
            metrics_token,
            no_access_log,
        } => (|| {
            let (k, m) = match &ec {
                Some(ec) => parse_ec(ec)?,
                None => (4, 2),
            };
            let devices = devices
                .iter()
                .map(|d| engine::DeviceSpec::parse(d).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            tessera::server::run(ServerConfig {
                listen,
                data,
                devices,
                k,
                m,
                ec_given: ec.is_some(),
                cores,
                pin: !no_pin,
                domain,
                region,
                segment_mib,
                chunk_bytes: chunk_kib as usize * 1024,
                stripes_in_flight: stripes_in_flight as usize,
                md5_single_stream,
                log_buffered,
                io_shares: engine::IoShares {
                    repair_percent: repair_share,
                    scrub_percent: scrub_share,
                    compaction_percent: compaction_share,
                },
                scrub_period_secs: scrub_period_hours.saturating_mul(3600),
                connections_per_core_max,
                requests_per_core_max,
                tls: tls_cert.zip(tls_key).map(|(cert, key)| tessera::tls::TlsFiles { cert, key }),
                metrics_token: metrics_token.filter(|t| !t.is_empty()),
                access_log: !no_access_log,
            })
        })(),
        Cmd::Format { data, devices, ec, cores } => (|| {
            let (k, m) = parse_ec(&ec)?;
            let devices = devices
                .iter()
                .map(|d| engine::DeviceSpec::parse(d).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            tessera::config::format_cli(&data, devices, k, m, cores)
        })(),
        Cmd::Status { endpoint, region, json } => {
            tessera::cli::admin::run_status_cli(&endpoint, &region, json).map(|code| {
                if code != 0 {
                    std::process::exit(code)
                }
            })
        }
        Cmd::Device { cmd: DeviceCmd::Replace { device, path, force, wait, endpoint, region } } => {
            tessera::cli::admin::run_replace_cli(&tessera::cli::admin::ReplaceCli {
                endpoint,
                region,
                device,
                path,
                force,
                wait_secs: wait,
            })
        }
        Cmd::User { cmd, endpoint, region, json } => {
            use tessera::cli::users::UserCommand as U;
            let cmd = match cmd {
                UserCmd::Create { name } => U::Create { name },
                UserCmd::List => U::List,
                UserCmd::Delete { name } => U::Delete { name },
                UserCmd::Key { cmd: KeyCmd::Create { name } } => U::KeyCreate { name },
                UserCmd::Key { cmd: KeyCmd::Delete { name, key } } => U::KeyDelete { name, key },
                UserCmd::Key { cmd: KeyCmd::Disable { name, key } } => U::KeyStatus { name, key, active: false },
                UserCmd::Key { cmd: KeyCmd::Enable { name, key } } => U::KeyStatus { name, key, active: true },
                UserCmd::Policy { cmd: PolicyCmd::Put { name, file } } => U::PolicyPut { name, file },
                UserCmd::Policy { cmd: PolicyCmd::Get { name } } => U::PolicyGet { name },
                UserCmd::Policy { cmd: PolicyCmd::Delete { name } } => U::PolicyDelete { name },
            };
            tessera::cli::users::run(&endpoint, &region, json, cmd)
        }
        Cmd::Doctor { data, devices } => (|| {
            let devices = devices
                .iter()
                .map(|d| engine::DeviceSpec::parse(d).map(|s| (s.zone, s.path)).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            std::process::exit(tessera::cli::doctor::run(&tessera::cli::doctor::DoctorOptions { data, devices }))
        })(),
    };
    if let Err(e) = result {
        eprintln!("tessera: {e}");
        std::process::exit(1);
    }
}
