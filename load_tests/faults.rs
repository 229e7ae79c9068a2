//! `faults`: patients on two replicas sharing a throwaway Redis, while Redis is killed and
//! restarted and then one replica is killed. Patients retry and resume as `docs/protocol.md` asks;
//! at the end every session's log is read back on the surviving replica and checked (every acked
//! message stored once, every message acked, every red flag's escalation opened).
//!
//! Everything runs on 127.0.0.1 and is bounded; the Redis and replica child processes die with
//! their guards on every exit path.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use carebridge::auth::Role;
use clap::Args;
use serde_json::json;
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

use crate::client::{Buffers, Client, Incoming};
use crate::log_check::{SessionEscalations, Tally, check_session};
use crate::provider::{FakeProvider, ProviderArgs};
use crate::redis::ThrowawayRedis;
use crate::retrying::{MessageOutcome, RetryingPatient, read_log};
use crate::server::{Model, Placement, ServerArgs, ServerUnderTest, random_secret};
use crate::stats::{Samples, Table};
use crate::texts;
use crate::traffic::{NurseMode, NurseRecord, Traffic, TrafficArgs, run_nurse};

#[derive(Args, Debug, Clone)]
pub struct FaultsArgs {
    /// Patient sockets, spread over the two replicas (even ones on replica 0, which is killed).
    #[arg(long, default_value_t = 40)]
    pub patients: usize,
    /// Messages each patient sends, one at a time.
    #[arg(long, default_value_t = 12)]
    pub messages: usize,
    /// Share of messages that are red flags (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    pub red_ratio: f64,
    /// Pause between a reply's end and the patient's next message.
    #[arg(long, default_value_t = 250)]
    pub think_ms: u64,
    /// Seed of the routine/red-flag mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Spread the patients' first messages over this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub ramp_ms: u64,
    /// When Redis is killed (SIGKILL), from the start of the traffic.
    #[arg(long, default_value_t = 6000)]
    pub redis_kill_at_ms: u64,
    /// How long Redis stays down before it is started again on the same port and directory.
    #[arg(long, default_value_t = 1500)]
    pub redis_down_ms: u64,
    /// When replica 0 is killed (SIGKILL), from the start of the traffic.
    #[arg(long, default_value_t = 16000)]
    pub replica_kill_at_ms: u64,
    /// How long one message may wait for its ack, retries included, before it counts as never
    /// acked; its reply gets as long again.
    #[arg(long, default_value_t = 30)]
    pub message_timeout_secs: u64,
    /// Hard limit on the traffic: no message is sent or waited for after this many seconds
    /// (start-up and the final check add a few seconds).
    #[arg(long, default_value_t = 90)]
    pub time_limit_secs: u64,
    /// The `carebridge` binary (default: next to this example).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Write each replica's log (RUST_LOG=warn) to PREFIX.replica-N.
    #[arg(long, value_name = "PREFIX")]
    pub server_log: Option<PathBuf>,
    #[command(flatten)]
    pub provider: ProviderArgs,
}

/// Replicas, by index: the first is killed, the second survives and holds the nurse.
const DOOMED: usize = 0;
const SURVIVOR: usize = 1;
/// After Redis answers again, and after the replica dies, patients take a moment to get going:
/// messages first sent within this long still count as sent "during" the fault.
const REDIS_SETTLE: Duration = Duration::from_secs(1);
const REPLICA_SETTLE: Duration = Duration::from_secs(3);
/// How long the final read of every log, and of the queue, may take.
const CHECK_WITHIN: Duration = Duration::from_secs(30);

/// When each fault happened.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    started: Instant,
    redis_killed: Instant,
    redis_back: Instant,
    replica_killed: Instant,
}

/// The part of the run a message was first sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    RedisDown,
    Between,
    ReplicaKilled,
    After,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Before,
        Phase::RedisDown,
        Phase::Between,
        Phase::ReplicaKilled,
        Phase::After,
    ];

    fn of(sent: Instant, timeline: &Timeline) -> Self {
        if sent < timeline.redis_killed {
            Self::Before
        } else if sent < timeline.redis_back + REDIS_SETTLE {
            Self::RedisDown
        } else if sent < timeline.replica_killed {
            Self::Between
        } else if sent < timeline.replica_killed + REPLICA_SETTLE {
            Self::ReplicaKilled
        } else {
            Self::After
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Before => "ack, before the faults",
            Self::RedisDown => "ack, sent while Redis down (or <1 s after)",
            Self::Between => "ack, between the faults",
            Self::ReplicaKilled => "ack, sent <3 s after the replica kill",
            Self::After => "ack, after the faults",
        }
    }
}

/// What one patient task hands back.
struct PatientRun {
    token: String,
    patient: RetryingPatient,
    planned: usize,
}

fn validate(args: &FaultsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.patients >= 2,
        "--patients must be at least 2 (one per replica)"
    );
    anyhow::ensure!(args.messages >= 1, "--messages must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.red_ratio),
        "--red-ratio must be between 0 and 1"
    );
    let redis_up = args.redis_kill_at_ms + args.redis_down_ms;
    anyhow::ensure!(
        redis_up < args.replica_kill_at_ms,
        "--replica-kill-at-ms ({}) must come after Redis is back (--redis-kill-at-ms {} + --redis-down-ms {})",
        args.replica_kill_at_ms,
        args.redis_kill_at_ms,
        args.redis_down_ms
    );
    anyhow::ensure!(
        args.replica_kill_at_ms < args.time_limit_secs * 1000,
        "--replica-kill-at-ms ({}) must come before --time-limit-secs ({} s)",
        args.replica_kill_at_ms,
        args.time_limit_secs
    );
    Ok(())
}

fn replica_args(args: &FaultsArgs, redis: &ThrowawayRedis, index: usize) -> ServerArgs {
    ServerArgs {
        server: Some(Placement::Child),
        target: None,
        secret: None,
        server_pid: None,
        redis_url: Some(redis.url()),
        trusted_provider: false,
        server_bin: args.server_bin.clone(),
        server_log: args.server_log.as_ref().map(|prefix| {
            let mut path = prefix.clone().into_os_string();
            path.push(format!(".replica-{index}"));
            PathBuf::from(path)
        }),
        server_env: Vec::new(),
        keep_rate_limits: false,
    }
}

/// The nurse watches only: escalations stay open, so each session's is there to be found.
fn nurse_traffic(args: &FaultsArgs) -> TrafficArgs {
    TrafficArgs {
        red_ratio: args.red_ratio,
        nurses: 1,
        nurse_mode: NurseMode::Watch,
        think_ms: args.think_ms,
        message_timeout_secs: args.message_timeout_secs,
        seed: args.seed,
        ramp_ms: args.ramp_ms,
        echo_pongs: false,
    }
}

/// Runs `faults` and prints its report; returns whether the run passed.
///
/// # Errors
/// The setup failed (provider, Redis, replicas, nurse), Redis did not come back, or the run was
/// interrupted.
pub async fn run(args: FaultsArgs, json_output: bool) -> anyhow::Result<bool> {
    validate(&args)?;
    // Ctrl-C would end the process without running destructors, leaving Redis and the replicas
    // behind; dropping the run instead drops their guards, which kill them.
    tokio::select! {
        outcome = run_to_the_end(args, json_output) => outcome,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted: Redis and the replicas were killed"),
    }
}

async fn run_to_the_end(args: FaultsArgs, json_output: bool) -> anyhow::Result<bool> {
    let fake = FakeProvider::start(&args.provider)?;
    let policy_version = texts::check(&fake.reply, args.provider.chunk_chars)?.policy_version;
    let mut redis = ThrowawayRedis::start().await?;
    let secret = random_secret();
    let events_per_session = args.messages as u64 * 8 + 16;
    let base_url = fake.base_url();
    let mut doomed = Some(
        ServerUnderTest::start_child(
            &replica_args(&args, &redis, DOOMED),
            &secret,
            Model::Fake(&base_url),
            events_per_session,
        )
        .await
        .context("replica 0 did not start")?,
    );
    let survivor = Arc::new(
        ServerUnderTest::start_child(
            &replica_args(&args, &redis, SURVIVOR),
            &secret,
            Model::Fake(&base_url),
            events_per_session,
        )
        .await
        .context("replica 1 did not start")?,
    );
    let replicas: Arc<Vec<String>> = Arc::new(vec![
        doomed
            .as_ref()
            .map(|replica| replica.ws_base.clone())
            .unwrap_or_default(),
        survivor.ws_base.clone(),
    ]);
    let descriptions = [
        doomed
            .as_ref()
            .map(|replica| replica.description.clone())
            .unwrap_or_default(),
        survivor.description.clone(),
    ];
    if !json_output {
        eprintln!(
            "faults: {} patients x {} messages on two replicas ({}; {}), Redis {} in {}",
            args.patients,
            args.messages,
            descriptions[0],
            descriptions[1],
            redis.url(),
            redis.dir().display()
        );
    }
    let own_pids: Vec<u32> = [
        Some(std::process::id()),
        doomed.as_ref().and_then(|replica| replica.pid),
        survivor.pid,
        redis.pid(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut other_load = crate::server::OtherLoad::start(&own_pids);

    let traffic = Arc::new(Traffic::new(Arc::clone(&survivor), nurse_traffic(&args)));
    let stop_nurse = CancellationToken::new();
    let (ready, connected) = tokio::sync::oneshot::channel();
    let nurse = tokio::spawn(run_nurse(
        Arc::clone(&traffic),
        0,
        stop_nurse.clone(),
        ready,
    ));
    connected
        .await
        .context("the nurse task ended before connecting")?
        .context("the nurse socket did not connect")?;

    let time_limit = Duration::from_secs(args.time_limit_secs);
    let barrier = Arc::new(Barrier::new(args.patients + 1));
    let mut tasks = Vec::new();
    for index in 0..args.patients {
        let token = survivor.token(
            &format!("load-{}-faults-{index}", traffic.run_id),
            Role::Patient,
        )?;
        let (replicas, barrier, traffic) = (
            Arc::clone(&replicas),
            Arc::clone(&barrier),
            Arc::clone(&traffic),
        );
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            let mut patient = RetryingPatient::new(token.clone(), replicas, index % 2);
            let setup_deadline = Instant::now() + Duration::from_secs(10);
            let connected = patient.connect(setup_deadline).await;
            // Every task reaches the barrier, connected or not, or the run would never start.
            barrier.wait().await;
            let started = Instant::now();
            let stop_at = started + time_limit;
            tokio::time::sleep(Duration::from_millis(
                args.ramp_ms * index as u64 / args.patients as u64,
            ))
            .await;
            let message_time = Duration::from_secs(args.message_timeout_secs);
            let mut red_seen = false;
            for number in 0..args.messages {
                if !connected || Instant::now() >= stop_at {
                    break;
                }
                let planned = texts::planned(args.seed, index, number, args.red_ratio);
                if planned.red
                    && !red_seen
                    && let Some(session) = &patient.session_id
                {
                    red_seen = true;
                    traffic.book.wait_for(session, Instant::now());
                }
                let deadline = (Instant::now() + message_time).min(stop_at);
                patient
                    .send(
                        &format!("m{number}"),
                        planned.text,
                        planned.red,
                        deadline,
                        message_time,
                    )
                    .await;
                if args.think_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(args.think_ms)).await;
                }
            }
            patient.close().await;
            PatientRun {
                token,
                patient,
                planned: args.messages,
            }
        }));
    }

    barrier.wait().await;
    let started = Instant::now();
    let faults = inject_faults(&args, started, &mut redis, &mut doomed, &mut other_load);
    let collect = async {
        // Each message's waits end at the time limit; this only catches a task that hangs.
        let deadline =
            tokio::time::Instant::from_std(started + time_limit + Duration::from_secs(15));
        let mut runs = Vec::new();
        let mut lost_tasks = 0u64;
        for task in tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(run)) => runs.push(run),
                Ok(Err(_)) => lost_tasks += 1,
                Err(_) => {
                    abort.abort();
                    lost_tasks += 1;
                }
            }
        }
        (runs, lost_tasks)
    };
    let (timeline, (runs, lost_tasks)) = tokio::join!(faults, collect);
    let traffic_time = started.elapsed();
    let timeline = timeline?;

    // The nurse may learn of the last escalations a moment after the patients finish.
    let settle = Instant::now();
    while traffic.book.pending() > 0 && settle.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_nurse.cancel();
    let nurse_record = nurse.await.unwrap_or_default();

    let check_deadline = Instant::now() + CHECK_WITHIN;
    let queue = final_queue(&survivor, &traffic.run_id, check_deadline).await;
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for (session, created) in traffic.book.seen_escalations() {
        seen.entry(session).or_default().push(created);
    }
    let mut tally = Tally::default();
    let mut unreadable: BTreeMap<String, String> = BTreeMap::new();
    let mut planned = 0usize;
    let mut not_sent = 0usize;
    let mut reconnects = 0u64;
    let mut moved = MovedPatients::default();
    let mut connect_failures: BTreeMap<String, u32> = BTreeMap::new();
    let mut outcomes: Vec<MessageOutcome> = Vec::new();
    // Every log at once: one at a time, closing each socket politely, took about a second each.
    let logs = futures_util::future::join_all(runs.iter().map(|run| async {
        match &run.patient.session_id {
            Some(session) => {
                Some(read_log(&survivor.ws_base, &run.token, session, check_deadline).await)
            }
            None => None,
        }
    }))
    .await;
    for (run, log) in runs.iter().zip(logs) {
        planned += run.planned;
        not_sent += run.planned.saturating_sub(run.patient.outcomes.len());
        reconnects += run.patient.reconnects;
        moved.add(&run.patient, timeline.replica_killed);
        for (reason, count) in &run.patient.connect_failures {
            *connect_failures.entry(reason.clone()).or_insert(0) += count;
        }
        outcomes.extend(run.patient.outcomes.iter().cloned());
        let (Some(session), Some(log)) = (&run.patient.session_id, log) else {
            unreadable.insert("(no session)".into(), "the patient never connected".into());
            continue;
        };
        match log {
            Ok(log) => {
                let escalations = SessionEscalations {
                    seen_by_nurse: seen.get(session).map_or(&[][..], Vec::as_slice),
                    in_final_queue: queue.get(session).map_or(&[][..], Vec::as_slice),
                };
                check_session(
                    session,
                    &run.patient.outcomes,
                    &log,
                    &escalations,
                    &mut tally,
                );
            }
            Err(error) => {
                unreadable.insert(session.clone(), format!("{error:#}"));
            }
        }
    }
    let other_cores = other_load.cores();
    let provider_requests = fake.requests();

    let report = Report {
        args: &args,
        policy_version: &policy_version,
        descriptions: &descriptions,
        timeline: &timeline,
        traffic_time,
        outcomes: &outcomes,
        tally: &tally,
        planned,
        not_sent,
        lost_tasks,
        reconnects,
        moved,
        connect_failures: &connect_failures,
        unreadable: &unreadable,
        nurse: &nurse_record,
        escalation_latency: traffic.book.latencies(),
        queue_sessions: queue.len(),
        queue_read: !queue.is_empty() || tally.red_sessions == 0,
        other_cores,
        provider_requests,
    };
    let passed = report.passed();
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print();
    }

    drop(traffic);
    if let Ok(survivor) = Arc::try_unwrap(survivor) {
        survivor.stop().await;
    }
    if let Some(replica) = doomed.take() {
        replica.stop().await;
    }
    drop(redis);
    fake.stop().await;
    Ok(passed)
}

/// Kills Redis, brings it back, then kills replica 0, each at its time from `started`.
async fn inject_faults(
    args: &FaultsArgs,
    started: Instant,
    redis: &mut ThrowawayRedis,
    doomed: &mut Option<ServerUnderTest>,
    other_load: &mut crate::server::OtherLoad,
) -> anyhow::Result<Timeline> {
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        started + Duration::from_millis(args.redis_kill_at_ms),
    ))
    .await;
    if let Some(pid) = redis.pid() {
        other_load.ending(pid);
    }
    redis.kill();
    let redis_killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(args.redis_down_ms)).await;
    redis
        .restart()
        .await
        .context("Redis did not come back after the kill")?;
    let redis_back = Instant::now();
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        started + Duration::from_millis(args.replica_kill_at_ms),
    ))
    .await;
    if let Some(replica) = doomed.take() {
        if let Some(pid) = replica.pid {
            other_load.ending(pid);
        }
        // `stop` on a child replica is SIGKILL: no close frames, no grace.
        replica.stop().await;
    }
    Ok(Timeline {
        started,
        redis_killed,
        redis_back,
        replica_killed: Instant::now(),
    })
}

/// The open escalations, by session, from a fresh nurse socket's first `queue` frame (only this
/// run's sessions are there to match, so others are harmless).
async fn final_queue(
    server: &ServerUnderTest,
    run_id: &str,
    deadline: Instant,
) -> HashMap<String, Vec<u64>> {
    let mut queue: HashMap<String, Vec<u64>> = HashMap::new();
    let Ok(token) = server.token(&format!("load-{run_id}-faults-check"), Role::Nurse) else {
        return queue;
    };
    let url = format!("{}/v1/nurse", server.ws_base);
    let Ok(mut client) = Client::connect(&url, &token, Buffers::Default).await else {
        return queue;
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next(left).await {
            Incoming::Frame(frame) if frame["type"] == "queue" => {
                for item in frame["items"].as_array().into_iter().flatten() {
                    if let (Some(session), Some(created)) =
                        (item["session"].as_str(), item["created_at_ms"].as_u64())
                    {
                        queue.entry(session.to_owned()).or_default().push(created);
                    }
                }
                break;
            }
            Incoming::Frame(_) => {}
            Incoming::Closed(_) | Incoming::TimedOut => break,
        }
    }
    client.close().await;
    queue
}

/// Patients whose replica was killed under them, and how long it kept them from an ack.
#[derive(Default)]
struct MovedPatients {
    count: u64,
    /// From the kill to the `welcome` of the resumed socket on the survivor.
    to_resume: Samples,
    /// From the kill to the next ack of any of their messages (think time included).
    to_next_ack: Samples,
}

impl MovedPatients {
    fn add(&mut self, patient: &RetryingPatient, killed: Instant) {
        let first_on_doomed = patient
            .sockets
            .first()
            .is_some_and(|(replica, _)| *replica == DOOMED);
        let resumed = patient
            .sockets
            .iter()
            .find(|(replica, opened)| *replica == SURVIVOR && *opened >= killed);
        let (true, Some((_, resumed))) = (first_on_doomed, resumed) else {
            return;
        };
        self.count += 1;
        self.to_resume
            .push(resumed.saturating_duration_since(killed));
        if let Some(next) = patient
            .outcomes
            .iter()
            .filter_map(|outcome| outcome.acked_at)
            .find(|acked| *acked >= killed)
        {
            self.to_next_ack
                .push(next.saturating_duration_since(killed));
        }
    }
}

/// Everything the report prints.
struct Report<'a> {
    args: &'a FaultsArgs,
    policy_version: &'a str,
    descriptions: &'a [String; 2],
    timeline: &'a Timeline,
    traffic_time: Duration,
    outcomes: &'a [MessageOutcome],
    tally: &'a Tally,
    planned: usize,
    not_sent: usize,
    lost_tasks: u64,
    reconnects: u64,
    moved: MovedPatients,
    connect_failures: &'a BTreeMap<String, u32>,
    unreadable: &'a BTreeMap<String, String>,
    nurse: &'a NurseRecord,
    escalation_latency: Samples,
    queue_sessions: usize,
    queue_read: bool,
    other_cores: Option<f64>,
    provider_requests: u64,
}

/// How the messages caught by one fault fared.
struct FaultImpact {
    /// Messages whose wait for the ack spanned the fault's window.
    waiting: usize,
    /// Of those, sent more than once.
    retried: usize,
    /// Their whole wait, from the first send to the ack.
    waits: Samples,
    /// How long after the fault ended (Redis answering again; the replica gone) the last of them
    /// was acked.
    last_ack_after_end: Option<Duration>,
}

/// Messages whose wait for the ack overlapped `from..=to`; `ended` is when the fault was over.
fn impact(outcomes: &[MessageOutcome], from: Instant, to: Instant, ended: Instant) -> FaultImpact {
    let mut waits = Samples::default();
    let mut waiting = 0;
    let mut retried = 0;
    let mut last_ack: Option<Instant> = None;
    for outcome in outcomes {
        let Some(acked) = outcome.acked_at else {
            continue;
        };
        if outcome.first_sent <= to && acked >= from {
            waiting += 1;
            if outcome.attempts > 1 {
                retried += 1;
            }
            waits.push(acked.saturating_duration_since(outcome.first_sent));
            last_ack = Some(last_ack.map_or(acked, |last| last.max(acked)));
        }
    }
    FaultImpact {
        waiting,
        retried,
        waits,
        last_ack_after_end: last_ack.map(|last| last.saturating_duration_since(ended)),
    }
}

fn seconds(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

impl Report<'_> {
    fn passed(&self) -> bool {
        self.tally.failures() == 0
            && self.not_sent == 0
            && self.lost_tasks == 0
            && self.unreadable.is_empty()
            && self.queue_read
    }

    fn phase_table(&self) -> Table {
        let mut table = Table::new();
        for phase in Phase::ALL {
            let mut samples = Samples::default();
            for outcome in self.outcomes {
                if Phase::of(outcome.first_sent, self.timeline) == phase
                    && let Some(wait) = outcome.ack_wait()
                {
                    samples.push(wait);
                }
            }
            table.row(phase.label(), &samples);
        }
        let mut all = Samples::default();
        for wait in self.outcomes.iter().filter_map(MessageOutcome::ack_wait) {
            all.push(wait);
        }
        table.row("ack, every message", &all);
        table.row(
            "escalation first seen by the nurse",
            &self.escalation_latency,
        );
        table
    }

    fn redis_impact(&self) -> FaultImpact {
        impact(
            self.outcomes,
            self.timeline.redis_killed,
            self.timeline.redis_back,
            self.timeline.redis_back,
        )
    }

    /// Messages caught by the replica kill: those whose socket it closed (patients on the
    /// survivor were not touched), sent before it or in the moments after.
    fn replica_impact(&self) -> FaultImpact {
        let touched: Vec<MessageOutcome> = self
            .outcomes
            .iter()
            .filter(|outcome| {
                outcome
                    .retries
                    .keys()
                    .any(|reason| reason.contains("socket"))
            })
            .cloned()
            .collect();
        let killed = self.timeline.replica_killed;
        impact(&touched, killed, killed + REPLICA_SETTLE, killed)
    }

    fn to_json(&self) -> serde_json::Value {
        let redis = self.redis_impact();
        let replica = self.replica_impact();
        let impact_json = |impact: &FaultImpact| {
            json!({
                "messages_waiting": impact.waiting,
                "retried": impact.retried,
                "ack_wait": impact.waits.summary().to_json(),
                "last_ack_after_fault_end_ms": impact.last_ack_after_end.map(|wait| wait.as_millis()),
            })
        };
        let t = self.timeline;
        json!({
            "mode": "faults",
            "machine": crate::server::machine(),
            "other_processes_cpu_cores": self.other_cores,
            "replicas": self.descriptions,
            "policy_version": self.policy_version,
            "settings": {
                "patients": self.args.patients, "messages": self.args.messages,
                "red_ratio": self.args.red_ratio, "think_ms": self.args.think_ms,
                "redis_kill_at_ms": self.args.redis_kill_at_ms, "redis_down_ms": self.args.redis_down_ms,
                "replica_kill_at_ms": self.args.replica_kill_at_ms,
                "message_timeout_secs": self.args.message_timeout_secs,
                "time_limit_secs": self.args.time_limit_secs,
                "first_token_ms": self.args.provider.first_token_ms,
                "chunk_delay_ms": self.args.provider.chunk_delay_ms,
                "chunk_chars": self.args.provider.chunk_chars,
                "reply_chars": self.args.provider.reply_chars,
            },
            "timeline_s": {
                "redis_killed": seconds(t.started, t.redis_killed),
                "redis_back": seconds(t.started, t.redis_back),
                "replica_killed": seconds(t.started, t.replica_killed),
                "traffic_ended": self.traffic_time.as_secs_f64(),
            },
            "latency": self.phase_table().to_json(),
            "redis_outage": impact_json(&redis),
            "replica_kill": impact_json(&replica),
            "counts": self.tally.to_json(),
            "planned": self.planned, "not_sent": self.not_sent, "lost_tasks": self.lost_tasks,
            "reconnects": self.reconnects,
            "patients_moved": {
                "count": self.moved.count,
                "kill_to_resumed": self.moved.to_resume.summary().to_json(),
                "kill_to_next_ack": self.moved.to_next_ack.summary().to_json(),
            },
            "connect_failures": self.connect_failures,
            "unreadable_sessions": self.unreadable,
            "nurse": {
                "queue_frames": self.nurse.queue_frames, "largest_queue": self.nurse.largest_queue,
                "errors": self.nurse.errors, "final_queue_sessions": self.queue_sessions,
            },
            "provider_requests": self.provider_requests,
            "passed": self.passed(),
        })
    }

    fn print(&self) {
        let t = self.timeline;
        let tally = self.tally;
        let args = self.args;
        println!(
            "\nCarebridge faults under load — two replicas on one Redis (AOF, appendfsync everysec)"
        );
        println!("replica 0: {}", self.descriptions[0]);
        println!("replica 1: {}", self.descriptions[1]);
        println!(
            "{} patients x {} messages ({}% red flags), think {} ms, 1 nurse watching on replica 1; provider: first token {} ms, {} chars every {} ms, {} chars per reply",
            args.patients,
            args.messages,
            (args.red_ratio * 100.0).round(),
            args.think_ms,
            args.provider.first_token_ms,
            args.provider.chunk_chars,
            args.provider.chunk_delay_ms,
            args.provider.reply_chars,
        );
        println!(
            "faults: Redis SIGKILLed at {:.2} s, answering PING again at {:.2} s (down {:.2} s); replica 0 SIGKILLed at {:.2} s; traffic ended at {:.1} s",
            seconds(t.started, t.redis_killed),
            seconds(t.started, t.redis_back),
            seconds(t.redis_killed, t.redis_back),
            seconds(t.started, t.replica_killed),
            self.traffic_time.as_secs_f64(),
        );
        println!();
        print!("{}", self.phase_table().render());
        println!();
        let show = |name: &str, impact: &FaultImpact| {
            let summary = impact.waits.summary();
            println!(
                "{name}: {} messages were waiting for their ack across it ({} sent more than once); their wait p50 {}, p99 {}, max {}; the last was acked {} after {}",
                impact.waiting,
                impact.retried,
                crate::stats::millis(summary.p50),
                crate::stats::millis(summary.p99),
                crate::stats::millis(summary.max),
                impact
                    .last_ack_after_end
                    .map_or("-".into(), |wait| format!("{:.2} s", wait.as_secs_f64())),
                if name.starts_with("Redis") {
                    "Redis answered again"
                } else {
                    "the kill"
                },
            );
        };
        show("Redis outage", &self.redis_impact());
        show(
            "replica kill (messages whose socket it closed before their ack)",
            &self.replica_impact(),
        );
        let resumed = self.moved.to_resume.summary();
        let next_ack = self.moved.to_next_ack.summary();
        println!(
            "replica kill: {} patients moved from replica 0 to replica 1 ({} sockets reopened with resume in all); from the kill to their resumed session p50 {}, max {}; to their next ack p50 {}, max {} (think time and a reply cut short included)",
            self.moved.count,
            self.reconnects,
            crate::stats::millis(resumed.p50),
            crate::stats::millis(resumed.max),
            crate::stats::millis(next_ack.p50),
            crate::stats::millis(next_ack.max),
        );
        println!(
            "messages: {} planned, {} sent ({} red flags), {} acked, {} never acked ({} refused without retry), {} tries in all, {} sent more than once",
            self.planned,
            tally.sent,
            tally.red_sent,
            tally.acked,
            tally.never_acked,
            tally.refused,
            tally.attempts,
            tally.retried,
        );
        for (reason, count) in &tally.retry_reasons {
            println!("  {count:>6}  retry after {reason}");
        }
        println!(
            "log check: {} acked but missing, {} stored more than once, {} acked with two seqs, {} stored but never acked; {} sessions unreadable",
            tally.acked_missing,
            tally.duplicated,
            tally.ack_seq_changed,
            tally.stored_without_ack,
            self.unreadable.len(),
        );
        println!(
            "replies in the log (acked messages): {} completed, {} fallback, {} interrupted, {} replaced by the guard, {} none stored (+{} none by design: the message was stored by an earlier try whose ack was lost)",
            tally.log_completed,
            tally.log_fallback,
            tally.log_interrupted,
            tally.log_guard_replaced,
            tally.log_no_reply,
            tally.log_no_reply_already_stored,
        );
        println!(
            "replies on the patient's socket: {} done, {} done but not stored (seq 0), {} fallback, {} replaced by the guard, {} cut by the replica kill, {} timed out, {} acked as already stored (no reply)",
            tally.live_done,
            tally.live_done_unstored,
            tally.live_fallback,
            tally.live_guard_replaced,
            tally.live_cut,
            tally.live_timed_out,
            tally.live_already_stored,
        );
        println!(
            "red flags: {} acked, {} alerts on the socket, {} alerts in the log; {} sessions with a red flag: {} escalations seen live by the nurse, {} only in the final queue, {} missing",
            tally.red_acked,
            tally.alerts_live,
            tally.alerts_logged,
            tally.red_sessions,
            tally.escalations_seen,
            tally.escalations_only_queued,
            tally.escalations_missing,
        );
        println!(
            "nurse: {} queue frames, largest queue {}, {} sessions in the final queue",
            self.nurse.queue_frames, self.nurse.largest_queue, self.queue_sessions
        );
        for (kind, count) in &self.nurse.errors {
            println!("  {count:>6}  {kind}");
        }
        if !self.connect_failures.is_empty() {
            println!("failed connection attempts (then retried):");
            for (reason, count) in self.connect_failures {
                println!("  {count:>6}  {reason}");
            }
        }
        for (kind, example) in &tally.examples {
            println!("e.g. {kind}: {example}");
        }
        for (session, problem) in self.unreadable {
            println!("unreadable: {session}: {problem}");
        }
        if self.not_sent > 0 {
            println!(
                "not sent before the time limit: {} of {} planned messages",
                self.not_sent, self.planned
            );
        }
        if self.lost_tasks > 0 {
            println!("patient tasks that panicked or hung: {}", self.lost_tasks);
        }
        if !self.queue_read {
            println!("the final queue could not be read");
        }
        println!("fake provider requests: {}", self.provider_requests);
        if let Some(cores) = self.other_cores {
            println!(
                "other processes on this machine used {cores:.2} cores on average during the run"
            );
        }
        println!("{}", if self.passed() { "PASS" } else { "FAIL" });
    }
}
