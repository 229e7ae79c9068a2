//! Patients and nurses on real sockets: a patient sends a message, then reads its `ack`, `alert`,
//! reply and (for a red flag, when the nurse hands conversations back) `handed_back` before the
//! next one, timing each; a nurse watches the queue and times when each escalation appears.
//! At the end of a session the patient resumes from 0 and checks that the server stored every
//! message it acknowledged and every reply it finished.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carebridge::auth::Role;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::client::{Buffers, Client, Incoming};
use crate::provider::Legs;
use crate::server::ServerUnderTest;
use crate::stats::Samples;
use crate::texts::Planned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NurseMode {
    /// The first nurse claims each new escalation and hands it back at once, so every red-flag
    /// message opens a new escalation (and is measured) and the queue stays short.
    HandBack,
    /// Nurses only watch: a session's first red flag opens its escalation, later ones join it, and
    /// the queue grows to one entry per flagged session.
    Watch,
}

#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Share of patient messages that are red flags (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    pub red_ratio: f64,
    /// Nurse sockets watching the queue.
    #[arg(long, default_value_t = 1)]
    pub nurses: usize,
    #[arg(long, value_enum, default_value = "hand-back")]
    pub nurse_mode: NurseMode,
    /// Pause between a reply's end and the patient's next message.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// How long one message may take (ack, reply, hand back) before it counts as lost.
    #[arg(long, default_value_t = 30)]
    pub message_timeout_secs: u64,
    /// Seed of the routine/red-flag mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Spread the patients' first messages over this many milliseconds, so that replies do not
    /// stream in lock-step (same for the direct readers).
    #[arg(long, default_value_t = 1000)]
    pub ramp_ms: u64,
    /// Diagnostic: patients and nurses answer every frame with an unsolicited pong, so their TCP
    /// ACKs go out at once (shows what Nagle's algorithm on the server's sockets costs).
    #[arg(long)]
    pub echo_pongs: bool,
}

impl TrafficArgs {
    /// How long patient `index` waits before its first timed message.
    pub fn ramp_delay(&self, index: usize, patients: usize) -> Duration {
        Duration::from_millis(self.ramp_ms * index as u64 / patients.max(1) as u64)
    }
}

/// What the load observed; merged over patients.
#[derive(Debug, Default)]
pub struct Record {
    pub ack: Samples,
    pub alert: Samples,
    pub first_token: Samples,
    /// The same, for red-flag messages only: their model call starts after the alert and the
    /// escalation, by design.
    pub first_token_red: Samples,
    /// The same, for messages without a red flag.
    pub first_token_routine: Samples,
    pub gaps: Samples,
    /// With `--legs`: from sending the message to the provider having the model request.
    pub way_in: Samples,
    /// With `--legs`: from the provider's first chunk to the patient's first `delta`.
    pub way_out: Samples,
    /// Characters in each reply's first `delta` (what the guard released first).
    pub first_delta_chars: Vec<usize>,
    pub sent: u64,
    pub red_sent: u64,
    pub acked: u64,
    pub replies_completed: u64,
    pub deltas: u64,
    pub guard_replaced: u64,
    /// Alerts on messages the load sent as routine (not an error; reported).
    pub unexpected_alerts: u64,
    pub errors: BTreeMap<String, u64>,
    /// One concrete case per error kind, for the kinds whose details vary.
    pub examples: BTreeMap<String, String>,
    /// Acknowledged messages whose reply never finished within the message timeout.
    pub replies_incomplete: u64,
    /// Acknowledged messages missing from the session's log on resume.
    pub acked_not_stored: u64,
    /// Finished replies missing from the session's log on resume.
    pub replies_not_stored: u64,
    pub sessions_verified: u64,
    /// When this patient's last reply ended.
    pub last_reply_end: Option<Instant>,
}

impl Record {
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn dropped(&self) -> u64 {
        self.replies_incomplete + self.acked_not_stored + self.replies_not_stored
    }

    pub fn merge(&mut self, other: Record) {
        self.ack.extend(other.ack);
        self.alert.extend(other.alert);
        self.first_token.extend(other.first_token);
        self.first_token_red.extend(other.first_token_red);
        self.first_token_routine.extend(other.first_token_routine);
        self.gaps.extend(other.gaps);
        self.way_in.extend(other.way_in);
        self.way_out.extend(other.way_out);
        self.first_delta_chars.extend(other.first_delta_chars);
        self.sent += other.sent;
        self.red_sent += other.red_sent;
        self.acked += other.acked;
        self.replies_completed += other.replies_completed;
        self.deltas += other.deltas;
        self.guard_replaced += other.guard_replaced;
        self.unexpected_alerts += other.unexpected_alerts;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_insert(0) += count;
        }
        for (kind, example) in other.examples {
            self.examples.entry(kind).or_insert(example);
        }
        self.replies_incomplete += other.replies_incomplete;
        self.acked_not_stored += other.acked_not_stored;
        self.replies_not_stored += other.replies_not_stored;
        self.sessions_verified += other.sessions_verified;
        self.last_reply_end = match (self.last_reply_end, other.last_reply_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Counts only (errors and losses), without latency samples: for warm-up traffic.
    pub fn merge_counts(&mut self, other: Record) {
        for (kind, count) in other.errors {
            *self.errors.entry(format!("warm-up: {kind}")).or_insert(0) += count;
        }
        for (kind, example) in other.examples {
            self.examples
                .entry(format!("warm-up: {kind}"))
                .or_insert(example);
        }
        self.replies_incomplete += other.replies_incomplete;
    }
}

/// Red-flag messages waiting for their escalation to reach a nurse socket.
#[derive(Default)]
pub struct EscalationBook {
    /// Session id -> when its red-flag message was sent.
    pending: Mutex<HashMap<String, Instant>>,
    /// Escalations seen by any nurse, by (session, created_at_ms).
    seen: Mutex<HashSet<(String, u64)>>,
    latencies: Mutex<Samples>,
    /// Escalations no red-flag message of ours was waiting for.
    unexpected: AtomicU64,
}

impl EscalationBook {
    /// A red-flag message of `session` left at `sent`; its escalation's first sighting by a nurse
    /// is timed from then.
    pub fn wait_for(&self, session: &str, sent: Instant) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(session.to_owned(), sent);
        }
    }

    /// A nurse socket saw this escalation (`now` is when its frame arrived).
    fn observe(&self, session: &str, created_at_ms: u64, now: Instant) {
        let first = self
            .seen
            .lock()
            .map(|mut seen| seen.insert((session.to_owned(), created_at_ms)))
            .unwrap_or(false);
        if !first {
            return;
        }
        let sent = self
            .pending
            .lock()
            .ok()
            .and_then(|mut pending| pending.remove(session));
        match sent {
            Some(sent) => {
                if let Ok(mut latencies) = self.latencies.lock() {
                    latencies.push(now.saturating_duration_since(sent));
                }
            }
            None => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |pending| pending.len())
    }

    pub fn latencies(&self) -> Samples {
        self.latencies
            .lock()
            .map(|samples| samples.clone())
            .unwrap_or_default()
    }

    pub fn unexpected(&self) -> u64 {
        self.unexpected.load(Ordering::Relaxed)
    }

    pub fn seen(&self) -> usize {
        self.seen.lock().map_or(0, |seen| seen.len())
    }

    /// Every escalation a nurse saw, as (session, created_at_ms).
    pub fn seen_escalations(&self) -> Vec<(String, u64)> {
        self.seen
            .lock()
            .map(|seen| seen.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Everything patients and nurses share.
pub struct Traffic {
    pub server: Arc<ServerUnderTest>,
    pub args: TrafficArgs,
    pub book: Arc<EscalationBook>,
    /// Distinguishes this run's subjects from earlier runs against the same server.
    pub run_id: String,
    /// With `--legs`: the fake provider's record of tagged requests.
    pub legs: Option<Arc<Legs>>,
    tags: AtomicU64,
}

impl Traffic {
    pub fn new(server: Arc<ServerUnderTest>, args: TrafficArgs) -> Self {
        Self {
            server,
            args,
            book: Arc::default(),
            run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            legs: None,
            tags: AtomicU64::new(CAREBRIDGE_TAGS),
        }
    }

    /// Tags every timed message so the fake provider can split its time to first token.
    pub fn with_legs(mut self, legs: Arc<Legs>) -> Self {
        self.legs = Some(legs);
        self
    }

    fn message_timeout(&self) -> Duration {
        Duration::from_secs(self.args.message_timeout_secs)
    }
}

/// Where the Carebridge phase's tag numbers begin (the relay's and the direct readers' are
/// below), so a tag left over from one phase never matches another's.
const CAREBRIDGE_TAGS: u64 = 20_000_000;

/// A tag word for a timed message (warm-up messages, named `w…`, are not tagged).
fn tag(traffic: &Traffic, client_id: &str) -> Option<String> {
    traffic.legs.as_ref()?;
    if client_id.starts_with('w') {
        return None;
    }
    Some(Legs::tag(traffic.tags.fetch_add(1, Ordering::Relaxed)))
}

/// How long a patient waits for `handed_back` once its reply has ended.
const HAND_BACK_WAIT: Duration = Duration::from_secs(5);

/// One patient socket in one session.
pub struct PatientSession {
    client: Client,
    pub session_id: String,
    /// (client id, seq) of every acknowledged message.
    acked: Vec<(String, u64)>,
    /// Sequence numbers of finished replies.
    replies: Vec<u64>,
    escalated: bool,
    /// Sequence numbers of acknowledged red flags whose `handed_back` never came; the log tells
    /// why when the session is verified.
    missing_hand_backs: Vec<u64>,
    /// The socket broke; the rest of the session is skipped.
    pub gone: bool,
}

impl PatientSession {
    /// Connects as `subject` and starts a session.
    ///
    /// # Errors
    /// The socket or the `welcome` did not come.
    pub async fn open(traffic: &Traffic, subject: &str) -> anyhow::Result<Self> {
        let token = traffic.server.token(subject, Role::Patient)?;
        let url = format!("{}/v1/chat", traffic.server.ws_base);
        let mut client = Client::connect(&url, &token, Buffers::Default).await?;
        client.echo_pongs(traffic.args.echo_pongs);
        client.send(&json!({"type": "hello"})).await?;
        let welcome = client
            .wait_for("welcome", traffic.message_timeout())
            .await
            .ok_or_else(|| anyhow::anyhow!("no welcome after hello"))?;
        let session_id = welcome["session_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("welcome without a session_id"))?
            .to_owned();
        Ok(Self {
            client,
            session_id,
            acked: Vec::new(),
            replies: Vec::new(),
            escalated: false,
            missing_hand_backs: Vec::new(),
            gone: false,
        })
    }

    /// Sends one message and reads everything it causes, timing each step into `record`.
    pub async fn exchange(
        &mut self,
        traffic: &Traffic,
        client_id: &str,
        message: Planned,
        record: &mut Record,
    ) {
        let hand_back = traffic.args.nurse_mode == NurseMode::HandBack;
        let expect_hand_back = message.red && hand_back;
        if message.red && (hand_back || !self.escalated) {
            traffic.book.wait_for(&self.session_id, Instant::now());
            self.escalated = true;
        }
        let tag = self::tag(traffic, client_id);
        let text = match &tag {
            Some(tag) => format!("{} {tag}", message.text),
            None => message.text.to_owned(),
        };
        let frame = json!({"type": "message", "client_id": client_id, "text": text});
        let sent = Instant::now();
        record.sent += 1;
        if message.red {
            record.red_sent += 1;
        }
        if self.client.send(&frame).await.is_err() {
            record.error("send failed: socket closed");
            self.gone = true;
            return;
        }
        let mut deadline = sent + traffic.message_timeout();
        let mut acked: Option<u64> = None;
        let mut alerted = false;
        let mut first_delta: Option<Instant> = None;
        let mut last_delta: Option<Instant> = None;
        let mut ended = false;
        let mut handed_back = false;
        while !(acked.is_some() && ended && (handed_back || !expect_hand_back)) {
            if acked.is_some() && ended {
                // Only the hand back is missing; the nurse acts within milliseconds, so do not
                // hold the patient for the whole message timeout.
                deadline = deadline.min(Instant::now() + HAND_BACK_WAIT);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match self.client.next(left).await {
                Incoming::Frame(frame) => frame,
                Incoming::Closed(code) => {
                    record.error(format!("socket closed by the server (code {code:?})"));
                    self.gone = true;
                    break;
                }
                Incoming::TimedOut => break,
            };
            let now = Instant::now();
            match frame["type"].as_str().unwrap_or_default() {
                "ack" if frame["client_id"] == client_id => {
                    record.ack.push(now - sent);
                    let seq = frame["seq"].as_u64().unwrap_or(0);
                    acked = Some(seq);
                    self.acked.push((client_id.to_owned(), seq));
                }
                "alert" if !alerted => {
                    alerted = true;
                    record.alert.push(now - sent);
                    if !message.red {
                        record.unexpected_alerts += 1;
                    }
                }
                "delta" => {
                    record.deltas += 1;
                    match last_delta {
                        None => {
                            first_delta = Some(now);
                            record.first_token.push(now - sent);
                            if message.red {
                                record.first_token_red.push(now - sent);
                            } else {
                                record.first_token_routine.push(now - sent);
                            }
                            let text = frame["text"].as_str().unwrap_or_default();
                            record.first_delta_chars.push(text.len());
                        }
                        Some(previous) => record.gaps.push(now - previous),
                    }
                    last_delta = Some(now);
                }
                "done" => {
                    ended = true;
                    self.replies.push(frame["seq"].as_u64().unwrap_or(0));
                }
                "replaced" => {
                    ended = true;
                    self.replies.push(frame["seq"].as_u64().unwrap_or(0));
                    if frame["rule"] == "fallback" {
                        record.error("fallback reply (the provider call failed)");
                    } else {
                        record.guard_replaced += 1;
                    }
                }
                "handed_back" => handed_back = true,
                "error" => {
                    let code = frame["code"].as_str().unwrap_or("unknown").to_owned();
                    record.error(format!("error frame `{code}`"));
                    if acked.is_none() {
                        // Not stored: the protocol says to retry; the load counts it and moves on.
                        break;
                    }
                }
                "welcome" | "event" | "pong" | "alert" | "ack" => {}
                other => record.error(format!("unexpected `{other}` frame")),
            }
        }
        if let (Some(legs), Some(tag), Some(first)) = (&traffic.legs, &tag, first_delta)
            && let Some((arrived, first_sent)) = legs.take(tag)
        {
            record.way_in.push(arrived.saturating_duration_since(sent));
            record
                .way_out
                .push(first.saturating_duration_since(first_sent));
        }
        if acked.is_some() {
            record.acked += 1;
        } else {
            record.error("message not acknowledged");
        }
        if ended {
            record.replies_completed += 1;
            record.last_reply_end = Some(Instant::now());
        } else if acked.is_some() {
            record.replies_incomplete += 1;
        }
        if first_delta.is_none() && ended {
            // A reply without text (all of it replaced) has no time to first token.
            record.error("reply without any delta");
        }
        if message.red && !alerted {
            record.error("red flag without an alert");
        }
        if expect_hand_back && !handed_back && !self.gone {
            match acked {
                Some(seq) => self.missing_hand_backs.push(seq),
                None => record.error("red flag not handed back by the nurse in time"),
            }
        }
    }

    /// Resumes from 0 on the same socket and checks that the log holds every acknowledged
    /// message and every finished reply.
    pub async fn verify(&mut self, traffic: &Traffic, record: &mut Record) {
        if self.gone {
            return;
        }
        let resume = json!({"type": "resume", "session_id": self.session_id, "last_seq": 0});
        if self.client.send(&resume).await.is_err()
            || self.client.send(&json!({"type": "ping"})).await.is_err()
        {
            record.error("resume failed: socket closed");
            return;
        }
        // Frames are answered in order, so the pong comes after the whole replay.
        let mut log: HashMap<u64, Value> = HashMap::new();
        let deadline = Instant::now() + traffic.message_timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.next(left).await {
                Incoming::Frame(frame) if frame["type"] == "pong" => break,
                Incoming::Frame(frame) if frame["type"] == "event" => {
                    if let Some(seq) = frame["seq"].as_u64() {
                        log.insert(seq, frame["event"].clone());
                    }
                }
                Incoming::Frame(_) => {}
                Incoming::Closed(_) | Incoming::TimedOut => {
                    record.error("resume did not finish");
                    return;
                }
            }
        }
        for (client_id, seq) in &self.acked {
            let stored = log.get(seq).is_some_and(|event| {
                event["kind"] == "patient_message" && event["client_id"] == client_id.as_str()
            });
            if !stored {
                record.acked_not_stored += 1;
            }
        }
        for seq in &self.replies {
            let stored = log
                .get(seq)
                .is_some_and(|event| event["kind"] == "assistant_message");
            if !stored {
                record.replies_not_stored += 1;
            }
        }
        for ack in std::mem::take(&mut self.missing_hand_backs) {
            let (kind, example) = explain_missing_hand_back(&log, ack);
            record.examples.entry(kind.to_owned()).or_insert(example);
            record.error(kind);
        }
        record.sessions_verified += 1;
    }

    pub async fn close(self) {
        self.client.close().await;
    }
}

/// Why a red flag's `handed_back` never reached the live socket, from the session's log: the
/// kind of failure and this case's sequence numbers.
fn explain_missing_hand_back(log: &HashMap<u64, Value>, ack: u64) -> (&'static str, String) {
    // The next patient message bounds the search: later events belong to later messages.
    let next_message = log
        .iter()
        .filter(|(seq, event)| **seq > ack && event["kind"] == "patient_message")
        .map(|(seq, _)| *seq)
        .min()
        .unwrap_or(u64::MAX);
    let first_after = |kind: &str| {
        log.iter()
            .filter(|(seq, event)| **seq > ack && **seq < next_message && event["kind"] == kind)
            .map(|(seq, _)| *seq)
            .min()
    };
    match (first_after("mode_changed"), first_after("alert")) {
        (Some(hand_back), Some(alert)) if hand_back < alert => (
            "handed_back never sent live: the hand back was stored before the red flag's alert, and the socket forwards only events after the newest it sent",
            format!("message seq {ack}, hand back seq {hand_back}, alert seq {alert}"),
        ),
        (Some(hand_back), _) => (
            "handed_back never sent live, although the hand back is in the log",
            format!("message seq {ack}, hand back seq {hand_back}"),
        ),
        (None, _) => (
            "red flag not handed back: no hand back in the log",
            format!("message seq {ack}"),
        ),
    }
}

/// What a nurse socket saw.
#[derive(Debug, Default)]
pub struct NurseRecord {
    pub queue_frames: u64,
    pub largest_queue: usize,
    pub actions_done: u64,
    pub errors: BTreeMap<String, u64>,
}

/// A nurse socket until `stop`; the acting nurse claims and hands back new escalations.
pub async fn run_nurse(
    traffic: Arc<Traffic>,
    index: usize,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
) -> NurseRecord {
    let mut record = NurseRecord::default();
    let subject = format!("load-{}-nurse-{index}", traffic.run_id);
    let url = format!("{}/v1/nurse", traffic.server.ws_base);
    let connected = match traffic.server.token(&subject, Role::Nurse) {
        Ok(token) => Client::connect(&url, &token, Buffers::Default).await,
        Err(error) => Err(error),
    };
    let mut client = match connected {
        Ok(mut client) => {
            client.echo_pongs(traffic.args.echo_pongs);
            client
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return record;
        }
    };
    let acting = index == 0 && traffic.args.nurse_mode == NurseMode::HandBack;
    let mut handled: HashSet<(String, u64)> = HashSet::new();
    let mut ready = Some(ready);
    loop {
        let incoming = tokio::select! {
            _ = stop.cancelled() => break,
            incoming = client.next(Duration::from_secs(3600)) => incoming,
        };
        let now = Instant::now();
        let frame = match incoming {
            Incoming::Frame(frame) => frame,
            Incoming::Closed(code) => {
                *record
                    .errors
                    .entry(format!("nurse socket closed (code {code:?})"))
                    .or_insert(0) += 1;
                break;
            }
            Incoming::TimedOut => continue,
        };
        match frame["type"].as_str().unwrap_or_default() {
            "queue" => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                record.queue_frames += 1;
                let items = frame["items"].as_array().cloned().unwrap_or_default();
                record.largest_queue = record.largest_queue.max(items.len());
                for item in items {
                    let (Some(session), Some(created)) =
                        (item["session"].as_str(), item["created_at_ms"].as_u64())
                    else {
                        continue;
                    };
                    traffic.book.observe(session, created, now);
                    if acting
                        && item["state"] == "waiting"
                        && handled.insert((session.to_owned(), created))
                    {
                        // The nurse socket handles frames in order: the hand back follows the
                        // claim without waiting for its answer.
                        let claim = json!({"type": "claim", "session_id": session});
                        let hand_back = json!({"type": "hand_back", "session_id": session,
                            "outcome": "other", "note": "load test: handed back at once"});
                        if client.send(&claim).await.is_err()
                            || client.send(&hand_back).await.is_err()
                        {
                            *record.errors.entry("nurse send failed".into()).or_insert(0) += 1;
                        }
                    }
                }
            }
            "done" => record.actions_done += 1,
            "error" => {
                let code = frame["code"].as_str().unwrap_or("unknown");
                *record
                    .errors
                    .entry(format!("nurse error frame `{code}`"))
                    .or_insert(0) += 1;
            }
            _ => {}
        }
    }
    client.close().await;
    record
}
