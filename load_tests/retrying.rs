//! A patient that behaves as `docs/protocol.md` asks a client to when things break: a message
//! refused with a retryable `error`, or whose socket drops before its `ack`, is sent again with the
//! same `client_id` (on a new socket, after `resume`, if need be) until it is acked or its time is
//! up. It records what each message went through, for `faults` to check against the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::{Buffers, Client, Incoming};

/// How long opening a socket, or waiting for its `welcome`, may take before another try.
const CONNECT_WAIT: Duration = Duration::from_secs(3);
/// Pause before trying again after a refusal or a failed connection, when the server named none.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause a server's `retry_after_ms` may impose on the load.
const LONGEST_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// A reply that sends nothing for this long has stopped (the fake provider sends a chunk every
/// few tens of milliseconds); a retried message whose earlier try was stored gets no reply at all.
const REPLY_SILENCE: Duration = Duration::from_secs(8);

/// How a message's reply ended, as the patient's socket saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveReply {
    /// `done`; `seq` 0 means the server could not store it (it says so in its log).
    Done { seq: u64 },
    /// `replaced` by an output rule, or by `fallback` when the model call failed.
    Replaced { rule: String, seq: u64 },
    /// The socket dropped after the ack and before the reply ended (a replica was killed).
    Cut,
    /// The ack named a `seq` this patient had already seen replayed: an earlier try was stored
    /// although its ack never came, and the server answers a message only once.
    AlreadyStored,
    /// Neither within the message's time.
    TimedOut,
    /// The message was never acked, so no reply was awaited.
    NotAwaited,
}

/// Everything one message went through.
#[derive(Debug, Clone)]
pub struct MessageOutcome {
    pub client_id: String,
    pub red: bool,
    /// When it was first sent (every retry keeps this as its start).
    pub first_sent: Instant,
    /// The same, on the wall clock the server stamps escalations with.
    pub first_sent_unix_ms: u64,
    pub attempts: u32,
    pub acked_at: Option<Instant>,
    /// Every distinct `seq` an ack of this `client_id` carried (more than one is a server bug).
    pub ack_seqs: Vec<u64>,
    pub alerted: bool,
    pub reply: LiveReply,
    /// The reply's id from its frames, to find it in the log.
    pub message_id: Option<String>,
    /// Why each retry happened (`error unavailable`, `socket closed before the ack`, …).
    pub retries: BTreeMap<String, u32>,
    /// A refusal that must not be retried (the message is then never acked).
    pub refused: Option<String>,
}

impl MessageOutcome {
    pub fn ack_wait(&self) -> Option<Duration> {
        self.acked_at
            .map(|acked| acked.saturating_duration_since(self.first_sent))
    }

    fn retried(&mut self, reason: impl Into<String>) {
        *self.retries.entry(reason.into()).or_insert(0) += 1;
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// One patient: a session that outlives its sockets.
pub struct RetryingPatient {
    token: String,
    /// Base URLs (`ws://127.0.0.1:PORT`) of every replica, tried in turn from `home`.
    replicas: Arc<Vec<String>>,
    home: usize,
    client: Option<Client>,
    pub session_id: Option<String>,
    /// The highest `seq` this patient has seen: what it resumes from.
    last_seq: u64,
    /// Sockets opened after the first (each one resumed the session).
    pub reconnects: u64,
    /// Replica index each socket went to, and when its `welcome` came, in order.
    pub sockets: Vec<(usize, Instant)>,
    /// Failures outside any one message (connections, welcomes).
    pub connect_failures: BTreeMap<String, u32>,
    pub outcomes: Vec<MessageOutcome>,
}

impl RetryingPatient {
    pub fn new(token: String, replicas: Arc<Vec<String>>, home: usize) -> Self {
        Self {
            token,
            replicas,
            home,
            client: None,
            session_id: None,
            last_seq: 0,
            reconnects: 0,
            sockets: Vec::new(),
            connect_failures: BTreeMap::new(),
            outcomes: Vec::new(),
        }
    }

    fn failed_to_connect(&mut self, reason: impl Into<String>) {
        *self.connect_failures.entry(reason.into()).or_insert(0) += 1;
    }

    fn saw(&mut self, frame: &Value) {
        if let Some(seq) = frame["seq"].as_u64() {
            self.last_seq = self.last_seq.max(seq);
        }
    }

    /// Opens a socket on the first replica that answers, starting with this patient's own, and
    /// starts (`hello`) or resumes its session. Keeps trying until `deadline`.
    ///
    /// Returns whether a socket is open.
    pub async fn connect(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            for offset in 0..self.replicas.len() {
                let index = (self.home + offset) % self.replicas.len();
                if self.try_replica(index).await {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
            }
            sleep_until_at_most(RETRY_PAUSE, deadline).await;
        }
        false
    }

    async fn try_replica(&mut self, index: usize) -> bool {
        let url = format!("{}/v1/chat", self.replicas[index]);
        let connected = tokio::time::timeout(
            CONNECT_WAIT,
            Client::connect(&url, &self.token, Buffers::Default),
        )
        .await;
        let mut client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(_)) => {
                self.failed_to_connect(format!("replica {index} refused the connection"));
                return false;
            }
            Err(_) => {
                self.failed_to_connect(format!("replica {index} did not upgrade within 3 s"));
                return false;
            }
        };
        let opening = match &self.session_id {
            None => json!({"type": "hello"}),
            Some(session) => {
                json!({"type": "resume", "session_id": session, "last_seq": self.last_seq})
            }
        };
        if client.send(&opening).await.is_err() {
            self.failed_to_connect(format!("replica {index} closed before hello/resume"));
            return false;
        }
        let deadline = Instant::now() + CONNECT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match client.next(left).await {
                Incoming::Frame(frame) if frame["type"] == "welcome" => {
                    let Some(session) = frame["session_id"].as_str() else {
                        self.failed_to_connect("welcome without a session_id");
                        return false;
                    };
                    let resumed = self.session_id.is_some();
                    self.session_id = Some(session.to_owned());
                    self.saw(&frame);
                    // Read the replay through to its end (the pong answers a ping sent after
                    // it), so the seqs it holds are known before the next message goes out.
                    if resumed {
                        self.reconnects += 1;
                        if !self.read_replay(&mut client, deadline).await {
                            self.failed_to_connect(format!(
                                "replay on replica {index} did not finish within 3 s"
                            ));
                            return false;
                        }
                    }
                    self.sockets.push((index, Instant::now()));
                    self.client = Some(client);
                    return true;
                }
                Incoming::Frame(frame) if frame["type"] == "error" => {
                    let code = frame["code"].as_str().unwrap_or("unknown");
                    self.failed_to_connect(format!("hello/resume refused with `{code}`"));
                    return false;
                }
                Incoming::Frame(_) => {}
                Incoming::Closed(_) => {
                    self.failed_to_connect(format!("replica {index} closed before welcome"));
                    return false;
                }
                Incoming::TimedOut => {
                    self.failed_to_connect(format!("no welcome from replica {index} within 3 s"));
                    return false;
                }
            }
        }
    }

    async fn read_replay(&mut self, client: &mut Client, deadline: Instant) -> bool {
        if client.send(&json!({"type": "ping"})).await.is_err() {
            return false;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match client.next(left).await {
                Incoming::Frame(frame) if frame["type"] == "pong" => return true,
                Incoming::Frame(frame) => self.saw(&frame),
                Incoming::Closed(_) | Incoming::TimedOut => return false,
            }
        }
    }

    /// Sends one message until it is acked (or `deadline`), then reads its reply until it ends,
    /// the socket drops, or `reply_wait` passes.
    pub async fn send(
        &mut self,
        client_id: &str,
        text: &str,
        red: bool,
        deadline: Instant,
        reply_wait: Duration,
    ) {
        let mut outcome = MessageOutcome {
            client_id: client_id.to_owned(),
            red,
            first_sent: Instant::now(),
            first_sent_unix_ms: unix_ms(),
            attempts: 0,
            acked_at: None,
            ack_seqs: Vec::new(),
            alerted: false,
            reply: LiveReply::NotAwaited,
            message_id: None,
            retries: BTreeMap::new(),
            refused: None,
        };
        let frame = json!({"type": "message", "client_id": client_id, "text": text});
        'attempts: while outcome.acked_at.is_none() && Instant::now() < deadline {
            if self.client.is_none() && !self.connect(deadline).await {
                break;
            }
            let Some(client) = self.client.as_mut() else {
                break;
            };
            outcome.attempts += 1;
            let seen_before = self.last_seq;
            if client.send(&frame).await.is_err() {
                self.client = None;
                outcome.retried("socket closed before the message went out");
                continue;
            }
            loop {
                let Some(client) = self.client.as_mut() else {
                    continue 'attempts;
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let frame = match client.next(left).await {
                    Incoming::Frame(frame) => frame,
                    Incoming::Closed(_) => {
                        self.client = None;
                        outcome.retried("socket closed before the ack");
                        continue 'attempts;
                    }
                    Incoming::TimedOut => break 'attempts,
                };
                self.saw(&frame);
                match frame["type"].as_str().unwrap_or_default() {
                    "ack" if frame["client_id"] == client_id => {
                        outcome.acked_at = Some(Instant::now());
                        if let Some(seq) = frame["seq"].as_u64() {
                            if !outcome.ack_seqs.contains(&seq) {
                                outcome.ack_seqs.push(seq);
                            }
                            if seq <= seen_before {
                                outcome.reply = LiveReply::AlreadyStored;
                            }
                        }
                        break 'attempts;
                    }
                    "error" => {
                        let code = frame["code"].as_str().unwrap_or("unknown");
                        if frame["retryable"] != true {
                            outcome.refused = Some(format!(
                                "`{code}`: {}",
                                frame["message"].as_str().unwrap_or_default()
                            ));
                            break 'attempts;
                        }
                        outcome.retried(format!("error `{code}`"));
                        // The server's pause if it named one (rate limits), else a short one.
                        let pause = frame["retry_after_ms"]
                            .as_u64()
                            .map_or(RETRY_PAUSE, Duration::from_millis)
                            .min(LONGEST_RETRY_PAUSE);
                        sleep_until_at_most(pause, deadline).await;
                        continue 'attempts;
                    }
                    _ => {}
                }
            }
        }
        if outcome.acked_at.is_some() && outcome.reply != LiveReply::AlreadyStored {
            self.read_reply(&mut outcome, reply_wait.min(deadline_left(deadline)))
                .await;
        }
        self.outcomes.push(outcome);
    }

    async fn read_reply(&mut self, outcome: &mut MessageOutcome, wait: Duration) {
        let until = Instant::now() + wait;
        outcome.reply = loop {
            let Some(client) = self.client.as_mut() else {
                break LiveReply::Cut;
            };
            let left = until
                .saturating_duration_since(Instant::now())
                .min(REPLY_SILENCE);
            let frame = match client.next(left).await {
                Incoming::Frame(frame) => frame,
                Incoming::Closed(_) => {
                    self.client = None;
                    break LiveReply::Cut;
                }
                Incoming::TimedOut => break LiveReply::TimedOut,
            };
            self.saw(&frame);
            match frame["type"].as_str().unwrap_or_default() {
                "alert" => outcome.alerted = true,
                "delta" if outcome.message_id.is_none() => {
                    outcome.message_id = frame["message_id"].as_str().map(str::to_owned);
                }
                "done" => {
                    outcome.message_id = frame["message_id"].as_str().map(str::to_owned);
                    break LiveReply::Done {
                        seq: frame["seq"].as_u64().unwrap_or(0),
                    };
                }
                "replaced" => {
                    outcome.message_id = frame["message_id"].as_str().map(str::to_owned);
                    break LiveReply::Replaced {
                        rule: frame["rule"].as_str().unwrap_or("unknown").to_owned(),
                        seq: frame["seq"].as_u64().unwrap_or(0),
                    };
                }
                "ack" if frame["client_id"] == outcome.client_id.as_str() => {
                    if let Some(seq) = frame["seq"].as_u64()
                        && !outcome.ack_seqs.contains(&seq)
                    {
                        outcome.ack_seqs.push(seq);
                    }
                }
                _ => {}
            }
        };
    }

    pub async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            client.close().await;
        }
    }
}

fn deadline_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

async fn sleep_until_at_most(pause: Duration, deadline: Instant) {
    tokio::time::sleep(pause.min(deadline_left(deadline))).await;
}

/// A session's log, read through a fresh socket: `resume` from 0 replays every stored event, and a
/// `ping` after it marks the end (frames are answered in order).
///
/// # Errors
/// No socket, no welcome, or the replay did not finish by `deadline` (each try reports why).
pub async fn read_log(
    base: &str,
    token: &str,
    session_id: &str,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<u64, Value>> {
    let url = format!("{base}/v1/chat");
    let mut last_problem = String::from("no time left to read the log");
    while Instant::now() < deadline {
        match read_log_once(&url, token, session_id, deadline).await {
            Ok(log) => return Ok(log),
            Err(problem) => last_problem = problem,
        }
        sleep_until_at_most(RETRY_PAUSE, deadline).await;
    }
    anyhow::bail!("session {session_id}: cannot read its log from {base}: {last_problem}")
}

async fn read_log_once(
    url: &str,
    token: &str,
    session_id: &str,
    deadline: Instant,
) -> Result<BTreeMap<u64, Value>, String> {
    let mut client =
        tokio::time::timeout(CONNECT_WAIT, Client::connect(url, token, Buffers::Default))
            .await
            .map_err(|_| "the socket did not open within 3 s".to_owned())?
            .map_err(|error| format!("{error:#}"))?;
    let resume = json!({"type": "resume", "session_id": session_id, "last_seq": 0});
    if client.send(&resume).await.is_err() || client.send(&json!({"type": "ping"})).await.is_err() {
        return Err("the socket closed before resume".into());
    }
    let mut log = BTreeMap::new();
    let mut welcomed = false;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next(left).await {
            Incoming::Frame(frame) => match frame["type"].as_str().unwrap_or_default() {
                "welcome" => welcomed = true,
                "event" => {
                    if let Some(seq) = frame["seq"].as_u64() {
                        log.insert(seq, frame["event"].clone());
                    }
                }
                "error" => {
                    let code = frame["code"].as_str().unwrap_or("unknown");
                    break Err(format!("resume refused with `{code}`"));
                }
                "pong" if welcomed => break Ok(log),
                "pong" => break Err("pong before welcome".into()),
                _ => {}
            },
            Incoming::Closed(code) => break Err(format!("socket closed (code {code:?})")),
            Incoming::TimedOut => break Err("the replay did not finish in time".into()),
        }
    };
    client.close().await;
    outcome
}
