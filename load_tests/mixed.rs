//! `mixed`: patients send routine and red-flag messages through Carebridge while nurses watch the
//! queue; before that, the same number of streams are read straight from the fake provider, so
//! the report can say what Carebridge adds to the time to first token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

use crate::provider::{self, DirectTiming, FakeProvider, Legs, ProviderArgs};
use crate::relay::{Relay, RelayTimings};
use crate::server::{Model, Placement, ServerArgs, ServerUnderTest};
use crate::stats::{Samples, Table, signed_millis};
use crate::texts::{self, Checked};
use crate::traffic::{NurseRecord, PatientSession, Record, Traffic, TrafficArgs, run_nurse};

#[derive(Args, Debug, Clone)]
pub struct MixedArgs {
    /// Concurrent patient sockets.
    #[arg(long, default_value_t = 100)]
    pub patients: usize,
    /// Messages each patient sends (one at a time: the next after the previous reply ended).
    #[arg(long, default_value_t = 10)]
    pub messages: usize,
    /// Untimed routine messages per patient (and direct streams per reader) before timing starts,
    /// so connection pools and caches are warm.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Hard limit: no new message after this many seconds of timed load.
    #[arg(long, default_value_t = 120)]
    pub time_limit_secs: u64,
    /// Errors tolerated before the exit status says failure.
    #[arg(long, default_value_t = 0)]
    pub max_errors: u64,
    /// Skip the direct (provider-only) comparison.
    #[arg(long)]
    pub no_direct: bool,
    /// Read the direct streams at the same time as the patients send their messages, so that
    /// both see the same machine (the provider then serves twice as many streams at once).
    /// Without it, the direct streams run in a phase of their own before the patients.
    #[arg(long, conflicts_with = "no_direct")]
    pub direct_alongside: bool,
    /// Skip the bare relay (a WebSocket hop in front of the provider that does nothing else, in a
    /// phase of its own before the patients), which shows what the WebSocket legs alone cost.
    #[arg(long)]
    pub no_relay: bool,
    /// Split each time to first token into the way in (message sent to the provider having the
    /// request) and the way out (the provider's first chunk to the first delta), for the direct
    /// readers, the relay and Carebridge. Each timed message then ends with a tag word the fake
    /// provider looks for (lowercase letters that no policy reads).
    #[arg(long)]
    pub legs: bool,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Streams read straight from the provider with the same concurrency and pacing as the patients.
async fn direct_phase(
    args: &MixedArgs,
    fake: &FakeProvider,
) -> anyhow::Result<(Vec<DirectTiming>, u64, Duration)> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("building the direct HTTP client")?;
    let legs = args.legs.then(|| fake.legs());
    let url = format!("{}/chat/completions", fake.base_url());
    let barrier = Arc::new(Barrier::new(args.patients + 1));
    let mut readers = Vec::new();
    for reader in 0..args.patients {
        let (client, url, barrier, legs) = (
            client.clone(),
            url.clone(),
            Arc::clone(&barrier),
            legs.clone(),
        );
        let (warmup, streams, think, seed, ratio) = (
            args.warmup,
            args.messages,
            Duration::from_millis(args.traffic.think_ms),
            args.traffic.seed,
            args.traffic.red_ratio,
        );
        let ramp = args.traffic.ramp_delay(reader, args.patients);
        readers.push(tokio::spawn(async move {
            let mut errors = 0u64;
            for _ in 0..warmup {
                let body = provider::direct_request_body(texts::ROUTINE[0]);
                if provider::read_direct(&client, &url, body).await.is_err() {
                    errors += 1;
                }
            }
            barrier.wait().await;
            tokio::time::sleep(ramp).await;
            let mut timings = Vec::new();
            for index in 0..streams {
                let planned = texts::planned(seed, reader, index, ratio);
                let tag = legs
                    .as_ref()
                    .map(|_| Legs::tag((reader * streams + index) as u64));
                let body = match &tag {
                    Some(tag) => provider::direct_request_body(&format!("{} {tag}", planned.text)),
                    None => provider::direct_request_body(planned.text),
                };
                match provider::read_direct(&client, &url, body).await {
                    Ok(mut timing) if timing.completed => {
                        if let (Some(legs), Some(tag), Some(started), Some(first)) =
                            (&legs, &tag, timing.started, timing.first_token)
                            && let Some((arrived, first_sent)) = legs.take(tag)
                        {
                            timing.way_in = Some(arrived.saturating_duration_since(started));
                            timing.way_out =
                                Some((started + first).saturating_duration_since(first_sent));
                        }
                        timings.push(timing);
                    }
                    _ => errors += 1,
                }
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
            (timings, errors)
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut timings = Vec::new();
    let mut errors = 0;
    for reader in readers {
        let (mut reader_timings, reader_errors) =
            reader.await.context("a direct reader panicked")?;
        timings.append(&mut reader_timings);
        errors += reader_errors;
    }
    Ok((timings, errors, started.elapsed()))
}

struct CarebridgeOutcome {
    record: Record,
    nurses: Vec<NurseRecord>,
    timed_from: Instant,
    planned_messages: u64,
    stopped_by_time_limit: bool,
    hard_limit_hit: bool,
    /// CPU time of the server's process over the timed phase (in-process: with the load).
    cpu: Option<Duration>,
}

async fn carebridge_phase(
    args: &MixedArgs,
    traffic: Arc<Traffic>,
) -> anyhow::Result<CarebridgeOutcome> {
    let stop_nurses = CancellationToken::new();
    let mut nurses = Vec::new();
    for index in 0..args.traffic.nurses {
        let (ready, connected) = tokio::sync::oneshot::channel();
        nurses.push(tokio::spawn(run_nurse(
            Arc::clone(&traffic),
            index,
            stop_nurses.clone(),
            ready,
        )));
        connected
            .await
            .context("a nurse task ended before connecting")?
            .context("a nurse socket did not connect")?;
    }

    let barrier = Arc::new(Barrier::new(args.patients + 1));
    let time_limit = Duration::from_secs(args.time_limit_secs);
    let mut patients = Vec::new();
    for patient in 0..args.patients {
        let (traffic, barrier) = (Arc::clone(&traffic), Arc::clone(&barrier));
        let (warmup, messages, patient_count) = (args.warmup, args.messages, args.patients);
        patients.push(tokio::spawn(async move {
            let mut record = Record::default();
            let mut warm = Record::default();
            let subject = format!("load-{}-patient-{patient}", traffic.run_id);
            let mut session = match PatientSession::open(&traffic, &subject).await {
                Ok(session) => Some(session),
                Err(error) => {
                    record.error(format!("patient socket did not open: {error:#}"));
                    None
                }
            };
            if let Some(session) = session.as_mut() {
                for index in 0..warmup {
                    let message = texts::Planned {
                        text: texts::ROUTINE[index % texts::ROUTINE.len()],
                        red: false,
                    };
                    session
                        .exchange(&traffic, &format!("w{index}"), message, &mut warm)
                        .await;
                }
            }
            record.merge_counts(warm);
            // Every task reaches the barrier, connected or not, or the run would never start.
            barrier.wait().await;
            let started = Instant::now();
            tokio::time::sleep(traffic.args.ramp_delay(patient, patient_count)).await;
            let mut stopped_early = false;
            if let Some(mut session) = session {
                for index in 0..messages {
                    if session.gone {
                        break;
                    }
                    if started.elapsed() >= time_limit {
                        stopped_early = true;
                        break;
                    }
                    let planned =
                        texts::planned(traffic.args.seed, patient, index, traffic.args.red_ratio);
                    session
                        .exchange(&traffic, &format!("m{index}"), planned, &mut record)
                        .await;
                    if traffic.args.think_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(traffic.args.think_ms)).await;
                    }
                }
                session.verify(&traffic, &mut record).await;
                session.close().await;
            }
            (record, stopped_early)
        }));
    }
    let cpu_at = |pid: Option<u32>| {
        pid.and_then(|pid| crate::server::process_stats(pid, None).ok())
            .map(|stats| stats.cpu)
    };
    barrier.wait().await;
    let timed_from = Instant::now();
    let cpu_before = cpu_at(traffic.server.pid);
    // Past the soft limit every patient stops sending; in-flight messages get their own timeout,
    // and this is the bound on all of it.
    let hard_limit = time_limit
        + Duration::from_secs(args.traffic.message_timeout_secs.saturating_mul(2))
        + Duration::from_secs(10);
    let mut record = Record::default();
    let mut stopped_by_time_limit = false;
    let mut hard_limit_hit = false;
    let deadline = tokio::time::Instant::now() + hard_limit;
    for patient in patients {
        let abort = patient.abort_handle();
        match tokio::time::timeout_at(deadline, patient).await {
            Ok(Ok((patient_record, stopped))) => {
                record.merge(patient_record);
                stopped_by_time_limit |= stopped;
            }
            Ok(Err(_)) => record.error("a patient task panicked"),
            Err(_) => {
                abort.abort();
                hard_limit_hit = true;
            }
        }
    }
    let cpu = cpu_at(traffic.server.pid)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    if hard_limit_hit {
        record.error("hard time limit hit: some patient tasks were aborted");
    }
    // In watch mode nothing waits for the nurse: give the last queue frames a moment.
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
    Ok(CarebridgeOutcome {
        record,
        nurses: nurse_records,
        timed_from,
        planned_messages: (args.patients * args.messages) as u64,
        stopped_by_time_limit,
        hard_limit_hit,
        cpu,
    })
}

fn median(values: &[usize]) -> Option<usize> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

/// When the direct streams were read, relative to the patients' messages.
fn direct_placement(args: &MixedArgs) -> &'static str {
    if args.no_direct {
        "none"
    } else if args.direct_alongside {
        "alongside"
    } else {
        "before"
    }
}

fn difference(carebridge: Option<u64>, direct: Option<u64>) -> Option<i64> {
    Some(i64::try_from(carebridge?).ok()? - i64::try_from(direct?).ok()?)
}

fn ratio(carebridge: Option<u64>, direct: Option<u64>) -> Option<f64> {
    let direct = direct?;
    (direct > 0).then(|| carebridge.unwrap_or(0) as f64 / direct as f64)
}

/// Runs `mixed` and prints its report; returns whether the run passed.
///
/// # Errors
/// The setup failed (provider, server, texts, nurses).
pub async fn run(args: MixedArgs, json_output: bool) -> anyhow::Result<bool> {
    anyhow::ensure!(args.patients > 0, "--patients must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.traffic.red_ratio),
        "--red-ratio must be between 0 and 1"
    );
    let fake = FakeProvider::start(&args.provider)?;
    let Checked {
        guard_window_words,
        first_release_chunk,
        release_gaps,
        guard_push,
        guard_push_cold,
        policy_version,
    } = texts::check(&fake.reply, args.provider.chunk_chars)?;
    let events_per_session = (args.messages + args.warmup) as u64 * 4 + 16;
    let server = Arc::new(
        ServerUnderTest::start(
            &args.server,
            Placement::InProcess,
            Model::Fake(&fake.base_url()),
            events_per_session,
        )
        .await?,
    );
    if !json_output {
        eprintln!(
            "mixed: {} patients x {} messages against {}; fake provider on port {}",
            args.patients, args.messages, server.description, fake.port
        );
    }

    // Where the server runs, so the two WebSocket hops are compared on the same footing.
    let relay = if args.no_relay {
        None
    } else {
        let placement = args
            .server
            .server
            .filter(|_| args.server.target.is_none())
            .unwrap_or(Placement::InProcess);
        Some(Relay::start(&fake.base_url(), placement).await?)
    };
    let own_pids: Vec<u32> = [
        Some(std::process::id()),
        server.pid,
        relay.as_ref().and_then(Relay::pid),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut other_load = crate::server::OtherLoad::start(&own_pids);
    let mut traffic = Traffic::new(Arc::clone(&server), args.traffic.clone());
    if args.legs {
        traffic = traffic.with_legs(fake.legs());
    }
    let traffic = Arc::new(traffic);
    let relayed = match relay {
        Some(relay) => {
            if !json_output {
                eprintln!(
                    "bare relay phase: {} sockets x {} messages",
                    args.patients, args.messages
                );
            }
            let timings = crate::relay::relay_phase(
                &relay,
                args.patients,
                args.warmup,
                args.messages,
                &args.traffic,
                args.legs.then(|| fake.legs()),
            )
            .await;
            // A child relay's CPU is ours, but /proc forgets it once the child has gone.
            if let Some(pid) = relay.pid().filter(|pid| *pid != std::process::id()) {
                other_load.ending(pid);
            }
            relay.stop().await;
            Some(timings?)
        }
        None => None,
    };
    let (direct, outcome) = if args.no_direct {
        if !json_output {
            eprintln!("Carebridge phase");
        }
        (None, carebridge_phase(&args, Arc::clone(&traffic)).await?)
    } else if args.direct_alongside {
        if !json_output {
            eprintln!(
                "Carebridge phase, with {} direct readers x {} streams alongside",
                args.patients, args.messages
            );
        }
        let (direct, outcome) = tokio::join!(
            direct_phase(&args, &fake),
            carebridge_phase(&args, Arc::clone(&traffic))
        );
        (Some(direct?), outcome?)
    } else {
        if !json_output {
            eprintln!(
                "direct phase: {} readers x {} streams",
                args.patients, args.messages
            );
        }
        let direct = direct_phase(&args, &fake).await?;
        if !json_output {
            eprintln!("Carebridge phase");
        }
        (
            Some(direct),
            carebridge_phase(&args, Arc::clone(&traffic)).await?,
        )
    };
    let provider_requests = fake.requests();
    let other_cores = other_load.cores();
    let in_process = server.is_in_process();
    // The server's own view: guard time per chunk, message to model request (and the part of it
    // before the turn's worker ran), model time to first token, and chunk to first delta, as
    // recorded
    // inside Carebridge (summaries over the run, warm-up included).
    let server_metrics = crate::server::server_quantiles(
        &server.ws_base,
        &[
            "carebridge_guard_chunk_seconds",
            "carebridge_turn_start_seconds",
            "carebridge_turn_wait_seconds",
            "carebridge_policy_evaluation_seconds",
            "carebridge_request_build_seconds",
            "carebridge_model_first_token_seconds",
            "carebridge_first_delta_seconds",
        ],
    )
    .await
    .unwrap_or_default();
    let book = Arc::clone(&traffic.book);
    let description = traffic.server.description.clone();
    // The last handles on the server: dropping them lets it stop now rather than at exit.
    drop(traffic);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    fake.stop().await;

    let record = &outcome.record;
    let elapsed = record.last_reply_end.map_or(Duration::ZERO, |end| {
        end.saturating_duration_since(outcome.timed_from)
    });
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let escalation = book.latencies();
    let escalations_lost = book.pending() as u64;

    let mut direct_first = Samples::default();
    let mut direct_way_in = Samples::default();
    let mut direct_way_out = Samples::default();
    let mut direct_gaps = Samples::default();
    let mut direct_same_text = Samples::default();
    let first_chars = median(&record.first_delta_chars);
    let (direct_count, direct_errors, direct_elapsed) = match &direct {
        Some((timings, errors, elapsed)) => {
            for timing in timings {
                if let Some(first) = timing.first_token {
                    direct_first.push(first);
                }
                if let (Some(way_in), Some(way_out)) = (timing.way_in, timing.way_out) {
                    direct_way_in.push(way_in);
                    direct_way_out.push(way_out);
                }
                for gap in &timing.gaps {
                    direct_gaps.push(*gap);
                }
                if let Some(chunk) = first_release_chunk
                    && let Some(at) = timing.time_to_chunk(chunk)
                {
                    direct_same_text.push(at);
                }
            }
            (timings.len(), *errors, *elapsed)
        }
        None => (0, 0, Duration::ZERO),
    };

    let mut table = Table::new();
    table.row("ack latency", &record.ack);
    table.row("alert latency", &record.alert);
    table.row("escalation latency (nurse socket)", &escalation);
    table.row("time to first token, Carebridge", &record.first_token);
    table.row("  messages without a red flag", &record.first_token_routine);
    table.row(
        "  red-flag messages (alert and escalation first)",
        &record.first_token_red,
    );
    table.row("time to first token, provider direct", &direct_first);
    let mut relay_first = Samples::default();
    let mut relay_errors = 0;
    if let Some(RelayTimings {
        first_token,
        errors,
        ..
    }) = &relayed
    {
        for first in first_token {
            relay_first.push(*first);
        }
        relay_errors = *errors;
        table.row(
            "time to first token, bare relay (WebSocket legs only)",
            &relay_first,
        );
    }
    if args.legs {
        let mut relay_way_in = Samples::default();
        let mut relay_way_out = Samples::default();
        if let Some(relayed) = &relayed {
            for (way_in, way_out) in relayed.way_in.iter().zip(&relayed.way_out) {
                relay_way_in.push(*way_in);
                relay_way_out.push(*way_out);
            }
        }
        table.row("way in: sent to provider has it, direct", &direct_way_in);
        table.row("way in, bare relay", &relay_way_in);
        table.row("way in, Carebridge", &record.way_in);
        table.row("way out: first chunk to client, direct", &direct_way_out);
        table.row("way out, bare relay", &relay_way_out);
        table.row("way out, Carebridge", &record.way_out);
    }
    table.row(
        "provider direct, time to the guard's first release",
        &direct_same_text,
    );
    table.row("gap between chunks, Carebridge", &record.gaps);
    table.row("gap between chunks, provider direct", &direct_gaps);
    // What the guard's word boundaries alone would give: each release gap is a whole number of
    // provider gaps (taken at the direct p50), once per reply Carebridge finished.
    let mut implied_gaps = Samples::default();
    if let Some(provider_gap) = direct_gaps.summary().p50 {
        for _ in 0..record.replies_completed {
            for chunks in &release_gaps {
                implied_gaps.push(Duration::from_micros(provider_gap * *chunks as u64));
            }
        }
    }
    table.row("gap implied by the guard's word boundaries", &implied_gaps);
    table.row(
        "guard push per chunk, before the load (3 flags x 20)",
        &guard_push,
    );
    table.row("the same, caches flushed between chunks", &guard_push_cold);

    let cb = record.first_token.summary();
    let first = direct_first.summary();
    let same = direct_same_text.summary();
    let relayed_first = relay_first.summary();
    let nurse_errors: u64 = outcome
        .nurses
        .iter()
        .flat_map(|nurse| nurse.errors.values())
        .sum();
    let errors = record.error_count() + nurse_errors + direct_errors + relay_errors;
    let dropped = record.dropped() + escalations_lost;
    let passed = dropped == 0 && errors <= args.max_errors && !outcome.hard_limit_hit;

    let report = json!({
        "mode": "mixed",
        "machine": crate::server::machine(),
        "other_processes_cpu_cores": other_cores,
        "server": description,
        "policy_version": policy_version,
        "settings": {
            "patients": args.patients, "messages": args.messages, "warmup": args.warmup,
            "red_ratio": args.traffic.red_ratio, "nurses": args.traffic.nurses,
            "nurse_mode": format!("{:?}", args.traffic.nurse_mode), "think_ms": args.traffic.think_ms,
            "first_token_ms": args.provider.first_token_ms, "chunk_delay_ms": args.provider.chunk_delay_ms,
            "chunk_chars": args.provider.chunk_chars, "reply_chars": args.provider.reply_chars,
            "trusted_provider": args.server.trusted_provider,
            "direct": direct_placement(&args),
        },
        "latency": table.to_json(),
        "time_to_first_token": {
            "carebridge_minus_direct_p50_us": difference(cb.p50, first.p50),
            "carebridge_minus_direct_p99_us": difference(cb.p99, first.p99),
            "carebridge_over_direct_p50": ratio(cb.p50, first.p50),
            "carebridge_over_direct_p99": ratio(cb.p99, first.p99),
            "first_delta_chars_median": first_chars,
            "guard_window_words": guard_window_words,
            "guard_first_release_chunk": first_release_chunk,
            "carebridge_minus_direct_at_first_release_p50_us": difference(cb.p50, same.p50),
            "carebridge_minus_direct_at_first_release_p99_us": difference(cb.p99, same.p99),
            "relay_minus_direct_p50_us": difference(relayed_first.p50, first.p50),
            "relay_minus_direct_p99_us": difference(relayed_first.p99, first.p99),
            "carebridge_minus_relay_p50_us": difference(cb.p50, relayed_first.p50),
            "carebridge_minus_relay_p99_us": difference(cb.p99, relayed_first.p99),
        },
        "server_metrics_seconds": server_metrics
            .iter()
            .map(|(name, quantiles)| (name.clone(), json!(quantiles.iter().cloned().collect::<std::collections::BTreeMap<_, _>>())))
            .collect::<serde_json::Map<_, _>>(),
        "throughput": {
            "timed_seconds": elapsed.as_secs_f64(),
            "messages_per_second": record.acked as f64 / seconds,
            "replies_per_second": record.replies_completed as f64 / seconds,
            "deltas_per_second": record.deltas as f64 / seconds,
            "server_cpu_seconds": outcome.cpu.map(|cpu| cpu.as_secs_f64()),
            "server_cpu_includes_load_generator": in_process,
            "direct_streams": direct_count,
            "direct_seconds": direct_elapsed.as_secs_f64(),
            "provider_requests": provider_requests,
        },
        "counts": {
            "planned": outcome.planned_messages, "sent": record.sent, "red_flags_sent": record.red_sent,
            "acked": record.acked, "replies_completed": record.replies_completed,
            "guard_replaced": record.guard_replaced, "unexpected_alerts": record.unexpected_alerts,
            "sessions_verified": record.sessions_verified,
            "escalations_seen": book.seen(), "unexpected_escalations": book.unexpected(),
            "nurse_queue_frames": outcome.nurses.iter().map(|nurse| nurse.queue_frames).sum::<u64>(),
            "largest_queue": outcome.nurses.iter().map(|nurse| nurse.largest_queue).max(),
            "nurse_actions_done": outcome.nurses.iter().map(|nurse| nurse.actions_done).sum::<u64>(),
            "stopped_by_time_limit": outcome.stopped_by_time_limit,
        },
        "errors": {
            "total": errors,
            "patients": record.errors, "examples": record.examples,
            "nurses": outcome.nurses.iter().map(|nurse| json!(nurse.errors)).collect::<Vec<Value>>(),
            "direct": direct_errors,
            "relay": relay_errors,
        },
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
    println!("\nCarebridge mixed load — {}", description);
    println!(
        "{} patients x {} messages ({}% red flags), {} nurse(s) ({:?}); provider: first token {} ms, {} chars every {} ms, {} chars per reply",
        args.patients,
        args.messages,
        (args.traffic.red_ratio * 100.0).round(),
        args.traffic.nurses,
        args.traffic.nurse_mode,
        args.provider.first_token_ms,
        args.provider.chunk_chars,
        args.provider.chunk_delay_ms,
        args.provider.reply_chars,
    );
    println!();
    print!("{}", table.render());
    println!();
    println!(
        "direct streams read {}",
        match direct_placement(&args) {
            "alongside" => "alongside the patients' messages (same phase)",
            "before" => "in a phase of their own, before the patients' messages",
            _ => "not at all",
        }
    );
    println!(
        "time to first token, Carebridge minus direct: p50 {} (x{:.2}), p99 {} (x{:.2})",
        signed_millis(difference(cb.p50, first.p50)),
        ratio(cb.p50, first.p50).unwrap_or(f64::NAN),
        signed_millis(difference(cb.p99, first.p99)),
        ratio(cb.p99, first.p99).unwrap_or(f64::NAN),
    );
    let routine = record.first_token_routine.summary();
    let red = record.first_token_red.summary();
    println!(
        "  messages without a red flag: p50 {}, p99 {}; red-flag messages: p50 {}, p99 {}",
        signed_millis(difference(routine.p50, first.p50)),
        signed_millis(difference(routine.p99, first.p99)),
        signed_millis(difference(red.p50, first.p50)),
        signed_millis(difference(red.p99, first.p99)),
    );
    println!(
        "  the guard holds back only text that could still begin an output phrase (never more than about {guard_window_words} words): it first releases text after provider chunk {} (1 is the first); that delta carried {} chars (median)",
        first_release_chunk.map_or("-".into(), |chunk| (chunk + 1).to_string()),
        first_chars.map_or("-".into(), |chars| chars.to_string())
    );
    println!(
        "  Carebridge minus the provider's time to that chunk (Carebridge's own overhead): p50 {}, p99 {}",
        signed_millis(difference(cb.p50, same.p50)),
        signed_millis(difference(cb.p99, same.p99)),
    );
    if relayed.is_some() {
        println!(
            "time to first token, bare relay minus direct (a WebSocket hop that does nothing else): p50 {}, p99 {}",
            signed_millis(difference(relayed_first.p50, first.p50)),
            signed_millis(difference(relayed_first.p99, first.p99)),
        );
        println!(
            "time to first token, Carebridge minus bare relay (Carebridge's own work): p50 {}, p99 {}",
            signed_millis(difference(cb.p50, relayed_first.p50)),
            signed_millis(difference(cb.p99, relayed_first.p99)),
        );
    }
    for (name, quantiles) in &server_metrics {
        if quantiles.is_empty() {
            continue;
        }
        let shown: Vec<String> = quantiles
            .iter()
            .map(|(quantile, seconds)| format!("q{quantile} {:.1} µs", seconds * 1e6))
            .collect();
        println!("server's {name}: {}", shown.join(", "));
    }
    println!(
        "throughput: {:.1} messages/s, {:.1} replies/s, {:.0} delta frames/s over {:.1} s",
        record.acked as f64 / seconds,
        record.replies_completed as f64 / seconds,
        record.deltas as f64 / seconds,
        elapsed.as_secs_f64(),
    );
    if let Some(cpu) = outcome.cpu {
        println!(
            "{} CPU over the timed phase: {:.1} s ({:.0}% of one core), {:.0} µs per delta frame",
            if in_process {
                "process (server and load generator together)"
            } else {
                "server"
            },
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / seconds,
            cpu.as_secs_f64() * 1e6 / (record.deltas.max(1) as f64),
        );
    }
    println!(
        "messages: {} planned, {} sent ({} red flags), {} acked, {} replies completed, {} replaced by the guard, {} sessions verified by resume",
        outcome.planned_messages,
        record.sent,
        record.red_sent,
        record.acked,
        record.replies_completed,
        record.guard_replaced,
        record.sessions_verified,
    );
    println!(
        "escalations: {} seen by a nurse, {} unexpected, largest queue {}",
        book.seen(),
        book.unexpected(),
        outcome
            .nurses
            .iter()
            .map(|nurse| nurse.largest_queue)
            .max()
            .unwrap_or(0)
    );
    if let Some(cores) = other_cores {
        println!(
            "other processes on this machine used {cores:.2} cores on average during the run{}",
            if cores > 0.25 {
                " (busy: the figures above are pessimistic)"
            } else {
                ""
            }
        );
    }
    println!("errors: {errors} (allowed {})", args.max_errors);
    for (kind, count) in &record.errors {
        println!("  {count:>6}  {kind}");
        if let Some(example) = record.examples.get(kind) {
            println!("          e.g. {example}");
        }
    }
    for nurse in &outcome.nurses {
        for (kind, count) in &nurse.errors {
            println!("  {count:>6}  {kind}");
        }
    }
    if direct_errors > 0 {
        println!("  {direct_errors:>6}  direct stream failed");
    }
    println!(
        "dropped: {dropped} (acked but not stored {}, replies never completed {}, replies not stored {}, escalations never seen {})",
        record.acked_not_stored,
        record.replies_incomplete,
        record.replies_not_stored,
        escalations_lost
    );
    if outcome.stopped_by_time_limit {
        println!(
            "note: the time limit stopped some patients early ({} of {} planned messages sent)",
            record.sent, outcome.planned_messages
        );
    }
    println!("{}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}
