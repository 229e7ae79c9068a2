//! `idle`: holds many idle patient sockets (each with a session) and reports the server's resident
//! memory per socket. The server runs as a child process by default so that its memory is
//! measured without the ten thousand client sockets of this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use carebridge::auth::Role;
use clap::Args;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::client::{Buffers, Client, Incoming};
use crate::server::{Model, Placement, ProcessStats, ServerArgs, ServerUnderTest, process_stats};

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Idle patient sockets to hold.
    #[arg(long, default_value_t = 10_000)]
    pub sockets: usize,
    /// Sockets being opened at once (the server's accept backlog is finite).
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// How long to hold them all open; above the server's 5 s heartbeat, so every socket has
    /// been pinged (and its pong read) while held.
    #[arg(long, default_value_t = 12)]
    pub hold_secs: u64,
    /// Open bare sockets without `hello` (no session).
    #[arg(long)]
    pub no_hello: bool,
    /// Memory budget per socket, in KiB.
    #[arg(long, default_value_t = 64)]
    pub budget_kib: u64,
    /// Open, hold and close the sockets this many times: memory that keeps growing from round to
    /// round is a leak, memory that settles is reused.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Give up opening sockets after this long.
    #[arg(long, default_value_t = 300)]
    pub time_limit_secs: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Open files this process and the server need beyond the sockets themselves.
const FD_HEADROOM: u64 = 256;

fn check_fd_limit(pid: u32, needed: u64, whose: &str) -> anyhow::Result<()> {
    match crate::server::open_file_limits(pid) {
        (Some(soft), hard) if soft < needed => bail!(
            "{whose} may open {soft} files (RLIMIT_NOFILE soft limit; hard limit {}), but {needed} are needed: run `ulimit -n {needed}` in this shell first{}",
            hard.map_or("unlimited".into(), |hard| hard.to_string()),
            if hard.is_some_and(|hard| hard < needed) {
                " (the hard limit is lower too: raise it in /etc/security/limits.conf or the container's settings, or pass a smaller --sockets)"
            } else {
                ""
            }
        ),
        _ => Ok(()),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `idle` and prints its report; returns whether the run passed.
///
/// # Errors
/// Too few file descriptors, or a server that does not start.
pub async fn run(args: IdleArgs, json_output: bool) -> anyhow::Result<bool> {
    let own_pid = std::process::id();
    let in_process = args.server.target.is_none()
        && args.server.server.unwrap_or(Placement::Child) == Placement::InProcess;
    // In process, both ends of every socket are in this process.
    let per_socket_fds = if in_process { 2 } else { 1 };
    check_fd_limit(
        own_pid,
        args.sockets as u64 * per_socket_fds + FD_HEADROOM,
        "this process",
    )?;
    let server = ServerUnderTest::start(&args.server, Placement::Child, Model::Demo, 64).await?;
    let Some(pid) = server.pid else {
        bail!("the server's process id is unknown: pass --server-pid with --target");
    };
    if pid != own_pid {
        check_fd_limit(pid, args.sockets as u64 + FD_HEADROOM, "the server")?;
    }
    if !json_output {
        eprintln!(
            "idle: {} sockets against {}",
            args.sockets, server.description
        );
    }
    let server = Arc::new(server);
    let hello = !args.no_hello;

    // Warm-up: lazily built state (thread-locals, the first session) is not per-socket cost.
    let (warm_sender, mut warm_results) = mpsc::channel(64);
    let warm_stop = CancellationToken::new();
    let warm_dropped = Arc::new(AtomicU64::new(0));
    let mut warm_tasks = Vec::new();
    for index in 0..20 {
        warm_tasks.push(tokio::spawn(hold_socket(
            Arc::clone(&server),
            format!("warm-{index}"),
            hello,
            Arc::new(Semaphore::new(20)),
            warm_sender.clone(),
            warm_stop.clone(),
            Arc::clone(&warm_dropped),
        )));
    }
    drop(warm_sender);
    while warm_results.recv().await.is_some() {}
    warm_stop.cancel();
    for task in warm_tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = process_stats(pid, None)?;

    let other_load = crate::server::OtherLoad::start(&[own_pid, pid]);
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        rounds.push(open_hold_close(&args, &server, pid, hello, round).await?);
    }
    let other_cores = other_load.cores();
    let client_rss = rounds.iter().filter_map(|round| round.client_rss).max();
    let description = server.description.clone();
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    let Some(first) = rounds.first() else {
        bail!("no round ran");
    };
    let (opened, failed, open_seconds) = (first.opened, first.failed, first.open_seconds);
    let first_failure = rounds.iter().find_map(|round| round.first_failure.clone());
    let dropped_while_held: u64 = rounds.iter().map(|round| round.dropped).sum();
    let all_opened = rounds
        .iter()
        .all(|round| round.opened == args.sockets as u64);
    let (at_open, peak, closed) = (first.at_open, first.peak, first.closed);
    // Freed memory is reused, but not all of it at once (the allocator's free lists fragment), so
    // the figure settles over a few rounds; what must not happen is growth between the last two.
    let last_peak = rounds
        .last()
        .map_or(peak.rss_bytes, |round| round.peak.rss_bytes);
    let previous_peak = rounds
        .len()
        .checked_sub(2)
        .and_then(|index| rounds.get(index))
        .map_or(peak.rss_bytes, |round| round.peak.rss_bytes);
    let leak_allowance = previous_peak / 20 + 8 * 1024 * 1024;
    let rounds_ok = last_peak <= previous_peak + leak_allowance;
    let growth = peak.rss_bytes.saturating_sub(before.rss_bytes);
    let per_socket = growth.checked_div(opened).unwrap_or(0);
    let budget = args.budget_kib * 1024;
    let passed =
        all_opened && rounds_ok && dropped_while_held == 0 && per_socket <= budget && !in_process;
    let report = json!({
        "mode": "idle",
        "machine": crate::server::machine(),
        "other_processes_cpu_cores": other_cores,
        "server": description,
        "sockets": args.sockets, "hello": hello,
        "opened": opened, "failed": failed, "first_failure": first_failure,
        "open_seconds": open_seconds,
        "dropped_while_held": dropped_while_held,
        "server_rss_bytes": {
            "before": before.rss_bytes, "all_open": at_open.rss_bytes, "peak_while_held": peak.rss_bytes,
            "after_close": closed.rss_bytes,
            "rounds": rounds.iter().map(|round| json!({
                "all_open": round.at_open.rss_bytes, "peak_while_held": round.peak.rss_bytes,
                "after_close": round.closed.rss_bytes, "opened": round.opened,
            })).collect::<Vec<_>>(),
        },
        "rounds_ok": rounds_ok,
        "server_open_fds": {
            "before": before.open_fds, "all_open": at_open.open_fds, "after_close": closed.open_fds,
        },
        "bytes_per_socket": per_socket,
        "budget_bytes_per_socket": budget,
        "client_rss_bytes": client_rss,
        "in_process": in_process,
        "passed": passed,
    });
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(passed);
    }
    println!("\nCarebridge idle sockets — {description}");
    println!(
        "{} of {} sockets opened in {:.1} s ({} failed{}), {}",
        opened,
        args.sockets,
        open_seconds,
        failed,
        first_failure
            .as_deref()
            .map_or(String::new(), |error| format!("; first: {error}")),
        if hello {
            "each with a session (hello)"
        } else {
            "bare (no hello)"
        },
    );
    println!(
        "server RSS: {:.1} MiB before, {:.1} MiB all open, {:.1} MiB peak while held {} s, {:.1} MiB after close",
        mib(before.rss_bytes),
        mib(at_open.rss_bytes),
        mib(peak.rss_bytes),
        args.hold_secs,
        mib(closed.rss_bytes)
    );
    println!(
        "server open fds: {} before, {} all open, {} after close",
        before.open_fds, at_open.open_fds, closed.open_fds
    );
    println!(
        "per socket: {:.1} KiB (budget {} KiB); sockets closed by the server while held: {dropped_while_held}",
        per_socket as f64 / 1024.0,
        args.budget_kib
    );
    for (index, round) in rounds.iter().enumerate().skip(1) {
        println!(
            "round {}: {} opened, server RSS {:.1} MiB all open, {:.1} MiB peak, {:.1} MiB after close",
            index + 1,
            round.opened,
            mib(round.at_open.rss_bytes),
            mib(round.peak.rss_bytes),
            mib(round.closed.rss_bytes)
        );
    }
    if rounds.len() > 1 {
        println!(
            "last round's peak {:.1} MiB against the round before's {:.1} MiB (allowed +{:.1} MiB): {}",
            mib(last_peak),
            mib(previous_peak),
            mib(leak_allowance),
            if rounds_ok {
                "ok, memory is reused"
            } else {
                "GROWING"
            }
        );
    }
    if let Some(rss) = client_rss {
        println!(
            "load generator RSS (client side, for reference): {:.1} MiB",
            mib(rss)
        );
    }
    if let Some(cores) = other_cores {
        println!(
            "other processes on this machine used {cores:.2} cores on average while sockets were open"
        );
    }
    if in_process {
        println!(
            "note: in-process, the RSS includes the client sockets; use --server child for the figure"
        );
    }
    println!("{}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}

/// What one round of open, hold, close saw.
struct Round {
    opened: u64,
    failed: u64,
    first_failure: Option<String>,
    open_seconds: f64,
    at_open: ProcessStats,
    /// Highest resident memory while held.
    peak: ProcessStats,
    closed: ProcessStats,
    dropped: u64,
    client_rss: Option<u64>,
}

/// Opens `--sockets` sockets, holds them `--hold-secs`, closes them, measuring the server.
async fn open_hold_close(
    args: &IdleArgs,
    server: &Arc<ServerUnderTest>,
    pid: u32,
    hello: bool,
    round: usize,
) -> anyhow::Result<Round> {
    let stop = CancellationToken::new();
    let dropped = Arc::new(AtomicU64::new(0));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (sender, mut results) = mpsc::channel::<Result<(), String>>(1024);
    let mut tasks = Vec::with_capacity(args.sockets);
    let opening = Instant::now();
    for index in 0..args.sockets {
        tasks.push(tokio::spawn(hold_socket(
            Arc::clone(server),
            format!("idle-{}-{round}-{index}", &run_id[..8]),
            hello,
            Arc::clone(&gate),
            sender.clone(),
            stop.clone(),
            Arc::clone(&dropped),
        )));
    }
    drop(sender);
    let mut opened = 0u64;
    let mut failed = 0u64;
    let mut first_failure: Option<String> = None;
    let open_deadline = tokio::time::Instant::now() + Duration::from_secs(args.time_limit_secs);
    loop {
        match tokio::time::timeout_at(open_deadline, results.recv()).await {
            Ok(Some(Ok(()))) => opened += 1,
            Ok(Some(Err(error))) => {
                failed += 1;
                first_failure.get_or_insert(error);
            }
            Ok(None) => break,
            Err(_) => {
                first_failure.get_or_insert(format!(
                    "time limit of {} s reached while opening",
                    args.time_limit_secs
                ));
                break;
            }
        }
        if opened + failed == args.sockets as u64 {
            break;
        }
    }
    let open_seconds = opening.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_open = process_stats(pid, None)?;
    let mut peak = at_open;
    let hold_until = Instant::now() + Duration::from_secs(args.hold_secs);
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = process_stats(pid, None)?;
        if now.rss_bytes > peak.rss_bytes {
            peak = now;
        }
    }
    let client_rss = process_stats(std::process::id(), None)
        .map(|stats| stats.rss_bytes)
        .ok();
    let dropped_while_held = dropped.load(Ordering::Relaxed);
    stop.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let closed = process_stats(pid, None).unwrap_or_default();
    Ok(Round {
        opened,
        failed,
        first_failure,
        open_seconds,
        at_open,
        peak,
        closed,
        dropped: dropped_while_held,
        client_rss,
    })
}

/// Opens one socket (waiting for a slot in `gate`), says hello, reports, then holds it idle,
/// answering pings, until `stop`.
async fn hold_socket(
    server: Arc<ServerUnderTest>,
    subject: String,
    hello: bool,
    gate: Arc<Semaphore>,
    opened: mpsc::Sender<Result<(), String>>,
    stop: CancellationToken,
    dropped: Arc<AtomicU64>,
) {
    let permit = gate.acquire_owned().await;
    let client = open_idle(&server, &subject, hello).await;
    drop(permit);
    let mut client = match client {
        Ok(client) => {
            let _ = opened.send(Ok(())).await;
            client
        }
        Err(error) => {
            let _ = opened.send(Err(format!("{error:#}"))).await;
            return;
        }
    };
    drop(opened);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                client.close().await;
                return;
            }
            incoming = client.next(Duration::from_secs(3600)) => match incoming {
                Incoming::Closed(_) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Incoming::Frame(_) | Incoming::TimedOut => {}
            },
        }
    }
}

async fn open_idle(server: &ServerUnderTest, subject: &str, hello: bool) -> anyhow::Result<Client> {
    let token = server.token(subject, Role::Patient)?;
    let url = format!("{}/v1/chat", server.ws_base);
    let mut client = Client::connect(&url, &token, Buffers::Small).await?;
    if hello {
        client.send(&json!({"type": "hello"})).await?;
        client
            .wait_for("welcome", Duration::from_secs(30))
            .await
            .context("no welcome after hello")?;
    }
    Ok(client)
}
