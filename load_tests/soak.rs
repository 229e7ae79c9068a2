//! `soak`: mixed load for a bounded time, with patients reconnecting into new sessions, then a
//! check that the server's resident memory and open descriptors come back to where they were
//! before the load.
//!
//! The baseline is taken after a short warm-up with the same load (not on a freshly started
//! server), so that one-off growth (allocator arenas, connection pools, lazily built caches) is
//! not mistaken for a leak.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::provider::{FakeProvider, ProviderArgs};
use crate::server::{Model, Placement, ProcessStats, ServerArgs, ServerUnderTest, process_stats};
use crate::stats::Table;
use crate::texts;
use crate::traffic::{NurseRecord, PatientSession, Record, Traffic, TrafficArgs, run_nurse};

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Length of the load, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Length of the warm-up load before the baseline, in seconds.
    #[arg(long, default_value_t = 10)]
    pub warmup_secs: u64,
    /// Concurrent patients; each opens a new session after every `--messages-per-session`.
    #[arg(long, default_value_t = 50)]
    pub patients: usize,
    #[arg(long, default_value_t = 5)]
    pub messages_per_session: usize,
    /// Quiet time after each load before measuring.
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Resident memory may end this much above the baseline, in MiB.
    #[arg(long, default_value_t = 16)]
    pub rss_tolerance_mib: u64,
    /// Open descriptors (not counting keep-alive connections to the provider) may end this many
    /// above the baseline.
    #[arg(long, default_value_t = 2)]
    pub fd_tolerance: usize,
    /// Errors tolerated before the exit status says failure.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

struct Load {
    record: Record,
    nurses: Vec<NurseRecord>,
    peak: ProcessStats,
    sessions: u64,
}

/// Runs patients (new session every `messages_per_session`) and nurses for `length`, sampling
/// the server every second.
async fn load_for(
    args: &SoakArgs,
    traffic: &Arc<Traffic>,
    length: Duration,
    pid: u32,
    provider_port: u16,
) -> anyhow::Result<Load> {
    let stop_nurses = CancellationToken::new();
    let mut nurses = Vec::new();
    for index in 0..args.traffic.nurses {
        let (ready, connected) = tokio::sync::oneshot::channel();
        nurses.push(tokio::spawn(run_nurse(
            Arc::clone(traffic),
            index,
            stop_nurses.clone(),
            ready,
        )));
        connected
            .await
            .context("a nurse task ended before connecting")?
            .context("a nurse socket did not connect")?;
    }
    let until = Instant::now() + length;
    let mut patients = Vec::new();
    for patient in 0..args.patients {
        let traffic = Arc::clone(traffic);
        let per_session = args.messages_per_session.max(1);
        let ramp = traffic.args.ramp_delay(patient, args.patients);
        patients.push(tokio::spawn(async move {
            tokio::time::sleep(ramp).await;
            let mut record = Record::default();
            let mut sessions = 0u64;
            let mut index = 0usize;
            let subject = format!("load-{}-patient-{patient}", traffic.run_id);
            while Instant::now() < until {
                let mut session = match PatientSession::open(&traffic, &subject).await {
                    Ok(session) => session,
                    Err(error) => {
                        record.error(format!("patient socket did not open: {error:#}"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                sessions += 1;
                for _ in 0..per_session {
                    if session.gone || Instant::now() >= until {
                        break;
                    }
                    let planned =
                        texts::planned(traffic.args.seed, patient, index, traffic.args.red_ratio);
                    session
                        .exchange(&traffic, &format!("m{index}"), planned, &mut record)
                        .await;
                    index += 1;
                    if traffic.args.think_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(traffic.args.think_ms)).await;
                    }
                }
                session.verify(&traffic, &mut record).await;
                session.close().await;
            }
            (record, sessions)
        }));
    }
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut peak = ProcessStats::default();
            while sampling.load(Ordering::Relaxed) {
                if let Ok(now) = process_stats(pid, Some(provider_port)) {
                    peak.rss_bytes = peak.rss_bytes.max(now.rss_bytes);
                    peak.open_fds = peak.open_fds.max(now.open_fds);
                    peak.provider_connections =
                        peak.provider_connections.max(now.provider_connections);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            peak
        })
    };
    let hard_deadline = tokio::time::Instant::now()
        + length
        + Duration::from_secs(args.traffic.message_timeout_secs.saturating_mul(2) + 10);
    let mut record = Record::default();
    let mut sessions = 0;
    for patient in patients {
        let abort = patient.abort_handle();
        match tokio::time::timeout_at(hard_deadline, patient).await {
            Ok(Ok((patient_record, patient_sessions))) => {
                record.merge(patient_record);
                sessions += patient_sessions;
            }
            Ok(Err(_)) => record.error("a patient task panicked"),
            Err(_) => {
                abort.abort();
                record.error("hard time limit hit: a patient task was aborted");
            }
        }
    }
    let settle = Instant::now();
    while traffic.book.pending() > 0 && settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_nurses.cancel();
    let mut nurse_records = Vec::new();
    for nurse in nurses {
        if let Ok(nurse_record) = nurse.await {
            nurse_records.push(nurse_record);
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or_default();
    Ok(Load {
        record,
        nurses: nurse_records,
        peak,
        sessions,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `soak` and prints its report; returns whether the run passed.
///
/// # Errors
/// The setup failed, or the server's process cannot be read.
pub async fn run(args: SoakArgs, json_output: bool) -> anyhow::Result<bool> {
    anyhow::ensure!(args.patients > 0, "--patients must be at least 1");
    let fake = FakeProvider::start(&args.provider)?;
    let checked = texts::check(&fake.reply, args.provider.chunk_chars)?;
    let server = ServerUnderTest::start(
        &args.server,
        Placement::Child,
        Model::Fake(&fake.base_url()),
        args.messages_per_session as u64 * 4 + 16,
    )
    .await?;
    let Some(pid) = server.pid else {
        bail!("the server's process id is unknown: pass --server-pid with --target");
    };
    let in_process = server.is_in_process();
    if !json_output {
        eprintln!(
            "soak: {} patients for {} s (after a {} s warm-up) against {}",
            args.patients, args.duration_secs, args.warmup_secs, server.description
        );
    }
    let server = Arc::new(server);
    let settle = Duration::from_secs(args.settle_secs);

    let warm_traffic = Arc::new(Traffic::new(Arc::clone(&server), args.traffic.clone()));
    let warm = load_for(
        &args,
        &warm_traffic,
        Duration::from_secs(args.warmup_secs),
        pid,
        fake.port,
    )
    .await?;
    let warm_lost = warm_traffic.book.pending() as u64;
    drop(warm_traffic);
    // A fresh book and fresh subjects: the figures below are the soak's alone.
    let traffic = Arc::new(Traffic::new(Arc::clone(&server), args.traffic.clone()));
    tokio::time::sleep(settle).await;
    let before = process_stats(pid, Some(fake.port))?;
    let started = Instant::now();
    let other_load = crate::server::OtherLoad::start(&[std::process::id(), pid]);
    let load = load_for(
        &args,
        &traffic,
        Duration::from_secs(args.duration_secs),
        pid,
        fake.port,
    )
    .await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let other_cores = other_load.cores();
    tokio::time::sleep(settle).await;
    let after = process_stats(pid, Some(fake.port))?;

    let book = Arc::clone(&traffic.book);
    let description = server.description.clone();
    drop(traffic);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    fake.stop().await;

    let mut record = load.record;
    record.merge_counts(warm.record);
    let nurse_errors: u64 = load
        .nurses
        .iter()
        .chain(warm.nurses.iter())
        .flat_map(|nurse| nurse.errors.values())
        .sum();
    let errors = record.error_count() + nurse_errors;
    let escalations_lost = book.pending() as u64 + warm_lost;
    let dropped = record.dropped() + escalations_lost;
    let own_fds = |stats: &ProcessStats| stats.open_fds - stats.provider_connections;
    let fds_ok = own_fds(&after) <= own_fds(&before) + args.fd_tolerance;
    let rss_ok = after.rss_bytes <= before.rss_bytes + args.rss_tolerance_mib * 1024 * 1024;
    let passed = fds_ok && rss_ok && dropped == 0 && errors <= args.max_errors && !in_process;
    let mut table = Table::new();
    table.row("ack latency", &record.ack);
    table.row("alert latency", &record.alert);
    table.row("escalation latency (nurse socket)", &book.latencies());
    table.row("time to first token", &record.first_token);
    table.row("gap between chunks", &record.gaps);

    let report = json!({
        "mode": "soak",
        "machine": crate::server::machine(),
        "other_processes_cpu_cores": other_cores,
        "server": description,
        "policy_version": checked.policy_version,
        "settings": {
            "duration_secs": args.duration_secs, "warmup_secs": args.warmup_secs,
            "patients": args.patients, "messages_per_session": args.messages_per_session,
            "red_ratio": args.traffic.red_ratio, "nurses": args.traffic.nurses,
            "settle_secs": args.settle_secs,
            "rss_tolerance_mib": args.rss_tolerance_mib, "fd_tolerance": args.fd_tolerance,
        },
        "server_rss_bytes": {"before": before.rss_bytes, "peak": load.peak.rss_bytes, "after": after.rss_bytes},
        "server_open_fds": {
            "before": before.open_fds, "peak": load.peak.open_fds, "after": after.open_fds,
            "provider_connections_before": before.provider_connections,
            "provider_connections_after": after.provider_connections,
        },
        "rss_ok": rss_ok, "fds_ok": fds_ok,
        "latency": table.to_json(),
        "counts": {
            "load_seconds": load_seconds,
            "sessions": load.sessions, "sent": record.sent, "acked": record.acked,
            "replies_completed": record.replies_completed, "sessions_verified": record.sessions_verified,
            "messages_per_second": record.acked as f64 / load_seconds.max(1e-9),
            "escalations_seen": book.seen(),
        },
        "errors": {"total": errors, "patients": record.errors, "examples": record.examples},
        "dropped": {
            "total": dropped,
            "acked_not_stored": record.acked_not_stored,
            "replies_never_completed": record.replies_incomplete,
            "replies_not_stored": record.replies_not_stored,
            "escalations_never_seen_by_a_nurse": escalations_lost,
        },
        "passed": passed,
    });
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(passed);
    }
    println!("\nCarebridge soak — {description}");
    println!(
        "{} patients for {:.0} s: {} sessions, {} messages acked, {:.1} messages/s, {} replies completed, {} sessions verified by resume",
        args.patients,
        load_seconds,
        load.sessions,
        record.acked,
        record.acked as f64 / load_seconds.max(1e-9),
        record.replies_completed,
        record.sessions_verified
    );
    println!();
    print!("{}", table.render());
    println!();
    println!(
        "server RSS: {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after ({:+.1} MiB; tolerance +{} MiB): {}",
        mib(before.rss_bytes),
        mib(load.peak.rss_bytes),
        mib(after.rss_bytes),
        mib(after.rss_bytes) - mib(before.rss_bytes),
        args.rss_tolerance_mib,
        if rss_ok { "ok" } else { "NOT BACK" }
    );
    println!(
        "server open fds: {} before, {} peak, {} after; of which keep-alive connections to the provider: {} before, {} after; without them {} -> {} (tolerance +{}): {}",
        before.open_fds,
        load.peak.open_fds,
        after.open_fds,
        before.provider_connections,
        after.provider_connections,
        own_fds(&before),
        own_fds(&after),
        args.fd_tolerance,
        if fds_ok { "ok" } else { "NOT BACK" }
    );
    if args.server.redis_url.is_none() {
        println!(
            "note: the memory store keeps every session it was given, so part of any growth is the {} sessions' stored conversations",
            load.sessions + warm.sessions
        );
    }
    if let Some(cores) = other_cores {
        println!(
            "other processes on this machine used {cores:.2} cores on average during the load"
        );
    }
    println!("errors: {errors} (allowed {})", args.max_errors);
    for (kind, count) in &record.errors {
        println!("  {count:>6}  {kind}");
        if let Some(example) = record.examples.get(kind) {
            println!("          e.g. {example}");
        }
    }
    for nurse in load.nurses.iter().chain(warm.nurses.iter()) {
        for (kind, count) in &nurse.errors {
            println!("  {count:>6}  {kind}");
        }
    }
    println!(
        "dropped: {dropped} (acked but not stored {}, replies never completed {}, replies not stored {}, escalations never seen {})",
        record.acked_not_stored,
        record.replies_incomplete,
        record.replies_not_stored,
        escalations_lost
    );
    if in_process {
        println!(
            "note: in-process, memory and descriptors include the clients; use --server child"
        );
    }
    println!("{}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}
