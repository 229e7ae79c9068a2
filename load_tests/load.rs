//! The Carebridge load generator (`docs/performance.md` has the figures and the commands).
//!
//! `cargo run --release --example load -- <mode> [options]`, where the mode is:
//! * `mixed`: patients send routine and red-flag messages while nurses watch the queue; reports
//!   ack, alert, escalation, time-to-first-token and chunk-gap percentiles, throughput, errors and
//!   dropped messages, and compares time to first token with the same streams read straight from
//!   the fake provider.
//! * `idle`: holds thousands of idle patient sockets and reports the server's memory per socket.
//! * `soak`: bounded mixed load, then checks that memory and descriptors return to the baseline.
//! * `provider`: only the fake provider, for an external server tested with `--target`.
//! * `rtt`: idle round trips through the server against a plain loopback echo.
//! * `faults`: two replicas on a throwaway Redis; Redis is killed and restarted, then a replica is
//!   killed, while patients retry and resume; every session's log is checked afterwards.
//!
//! Modules:
//! * `provider`: the fake OpenAI-compatible server (real SSE) and the direct stream reader.
//! * `relay`: a bare WebSocket relay in front of the provider, the transport floor for `mixed`.
//! * `server`: the server under test (in-process, child process or external) and `/proc` figures.
//! * `client`: the WebSocket client; `traffic`: patients, nurses and what they measure.
//! * `texts`: the messages, checked against the shipped policies; `stats`: percentiles.
//! * `redis`: a throwaway `redis-server` that can be killed and restarted (for `faults`).
//! * `retrying`: a patient that resends until acked and resumes on another replica;
//!   `log_check`: what `faults` checks in each session's log.
//!
//! Everything stays on loopback, is bounded in count and time, and stops by itself. The exit
//! status is 0 when the run passed, 1 when it ran but failed (lost messages, errors, a target
//! missed), 2 when it could not run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod faults;
mod idle;
mod log_check;
mod mixed;
mod provider;
mod redis;
mod relay;
mod retrying;
mod rtt;
mod server;
mod soak;
mod stats;
mod texts;
mod traffic;

#[derive(Parser)]
#[command(name = "load", about = "Load tests for Carebridge (loopback only)")]
struct Cli {
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Routine and red-flag messages from many patients, nurses on the queue, and the same number
    /// of streams read straight from the fake provider for comparison.
    Mixed(Box<mixed::MixedArgs>),
    /// Many idle patient sockets; the server's resident memory per socket.
    Idle(Box<idle::IdleArgs>),
    /// Bounded load, then memory and descriptors back at their baseline.
    Soak(Box<soak::SoakArgs>),
    /// Round trips through the server, idle, against a plain loopback echo: the transport floor.
    Rtt(Box<rtt::RttArgs>),
    /// Two replicas on a throwaway Redis: Redis killed and restarted, then a replica killed,
    /// under load; every acked message must be stored once and every red flag escalated.
    Faults(Box<faults::FaultsArgs>),
    /// Only the fake provider, to point an external Carebridge (`--target`) at it.
    Provider(Box<provider::ServeArgs>),
    /// Only the bare WebSocket relay (the child process of `mixed --server child`).
    #[command(hide = true)]
    RelayServe(Box<relay::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.mode {
            Mode::Mixed(args) => mixed::run(*args, cli.json).await,
            Mode::Idle(args) => idle::run(*args, cli.json).await,
            Mode::Soak(args) => soak::run(*args, cli.json).await,
            Mode::Rtt(args) => rtt::run(*args, cli.json).await,
            Mode::Faults(args) => faults::run(*args, cli.json).await,
            Mode::Provider(args) => provider::serve(*args).await,
            Mode::RelayServe(args) => relay::serve(*args).await,
        }
    });
    // Sockets and child processes are closed by now; do not wait for stray tasks.
    runtime.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
