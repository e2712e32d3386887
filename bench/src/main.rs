//! `tessera-bench`: load generator for Tessera.
//!
//! Workloads are subcommands. `engine` drives the storage engine in-process against the raw
//! disk rate; `put`, `get`, `mixed`, `list`, `multipart` and `delete` load any S3 server over
//! HTTP/1.1 with SigV4 (`s3_mode`). All share `stats` for histograms, tables and JSON.

mod engine_mode;
mod heal_share;
mod http;
mod index_mem;
mod null_server;
mod payload;
mod plot;
mod raw;
mod s3_mode;
#[cfg(test)]
mod s3_tests;
mod sigv4;
mod stats;

use s3_mode::{Common, ListArgs, MixedArgs, MultipartArgs, Workload};

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: index_mem::CountingAlloc = index_mem::CountingAlloc;

#[derive(Parser, Debug)]
#[command(name = "tessera-bench", version, about = "Tessera load generator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Engine-direct (no HTTP): raw O_DIRECT baseline, then large and small PUT/GET.
    Engine(engine_mode::EngineArgs),
    /// S3 PutObject of --size objects, cycling over --objects keys (overwriting).
    Put(Common),
    /// S3 GetObject of random keys among --objects (PUT first).
    Get(Common),
    /// GET/HEAD/PUT/DELETE mix (45/30/15/10 by default) over --objects keys.
    Mixed(MixedArgs),
    /// ListObjectsV2 over a bucket of --objects keys; reports keys/s.
    List(ListArgs),
    /// Multipart uploads of --size objects in --part-size parts, parts in parallel.
    Multipart(MultipartArgs),
    /// Foreground throughput alone and while a failed device is rebuilt, against the share
    /// the I/O scheduler promises it (engine-direct).
    HealShare(heal_share::HealShareArgs),
    /// Heap bytes per object of a tablet's in-memory index (no I/O).
    IndexMemory(index_mem::IndexMemArgs),
    /// DeleteObject of --objects keys (PUT first).
    Delete(Common),
    /// An HTTP server that stores nothing: the request-rate ceiling to compare a server with.
    NullServer(null_server::NullArgs),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let r = match cli.cmd {
        Cmd::Engine(a) => engine_mode::run(a),
        Cmd::IndexMemory(a) => index_mem::run(a),
        Cmd::NullServer(a) => null_server::run(a),
        Cmd::HealShare(a) => heal_share::run(a),
        Cmd::Put(c) => s3_mode::main(c, Workload::Put),
        Cmd::Get(c) => s3_mode::main(c, Workload::Get),
        Cmd::Delete(c) => s3_mode::main(c, Workload::Delete),
        Cmd::Mixed(a) => {
            if a.get_pct + a.head_pct + a.put_pct + a.delete_pct != 100 {
                eprintln!("tessera-bench: --get-pct, --head-pct, --put-pct and --delete-pct must add up to 100");
                std::process::exit(2);
            }
            let w = Workload::Mixed { get: a.get_pct, head: a.head_pct, put: a.put_pct, delete: a.delete_pct };
            s3_mode::main(a.common, w)
        }
        Cmd::List(a) => s3_mode::main(a.common, Workload::List { max_keys: a.max_keys }),
        Cmd::Multipart(a) => s3_mode::main(
            a.common,
            Workload::Multipart { part_size: a.part_size, part_concurrency: a.part_concurrency },
        ),
    };
    if let Err(e) = r {
        eprintln!("tessera-bench: {e}");
        std::process::exit(1);
    }
}
