//! `tessera-bench`: load generator for Tessera.
//!
//! Workloads are subcommands. `engine` drives the storage engine in-process against the raw
//! disk rate; S3-over-HTTP workloads (put, get, mixed, list, multipart, with SigV4) belong
//! beside it as further subcommands sharing `stats` for histograms, tables and JSON.

mod engine_mode;
mod raw;
mod stats;

use clap::{Parser, Subcommand};

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
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let r = match cli.cmd {
        Cmd::Engine(a) => engine_mode::run(a),
    };
    if let Err(e) = r {
        eprintln!("tessera-bench: {e}");
        std::process::exit(1);
    }
}
