//! The production store: Redis (standalone or Cluster), shared by every replica.
//!
//! Keys are hash-tagged by session (`cb:{<session>}:…`) so that a session's keys live in one
//! cluster slot and its scripts run atomically. Each append is one Lua script: it checks the
//! session exists, writes, records the client id (for idempotent retries), refreshes the
//! retention, and publishes the new sequence number on `cb:{<session>}:live`. Every replica has
//! one pattern subscription and hands notices to the sockets it holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::{AsyncCommands, Script};
use tokio::sync::broadcast;

use super::redis_connection::RedisConnection;
use super::{
    Appended, EventNotices, RuleOutcome, SessionMeta, SessionStore, StoreError, next_version,
    outcome_field,
};
use crate::escalation::{Escalation, EscalationState};
use crate::session::{Mode, SessionEvent, SessionId, StoredEvent};

const NOTICE_CAPACITY: usize = 64;

/// KEYS: events, clients, meta. ARGV: client id, event JSON, channel, retention seconds, how many
/// recent events to return. Returns seq, duplicate, mode, recent events: the write and the reads
/// a reply needs in one round trip.
const APPEND_PATIENT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, 0, '', {}} end
local mode = redis.call('HGET', KEYS[3], 'mode') or ''
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen then return {tonumber(seen), 1, mode, {}} end
local seq = redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], seq)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
redis.call('PUBLISH', ARGV[3], seq)
local count = tonumber(ARGV[5])
local recent = {}
if count > 0 then recent = redis.call('LRANGE', KEYS[1], -count, -1) end
return {seq, 0, mode, recent}
";

/// KEYS: events, meta, clients. ARGV: event JSON, channel, retention seconds.
const APPEND_EVENT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local seq = redis.call('RPUSH', KEYS[1], ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('PUBLISH', ARGV[2], seq)
return seq
";

/// KEYS: meta. ARGV: owner, retention seconds.
const CREATE: &str = r"
redis.call('HSETNX', KEYS[1], 'owner', ARGV[1])
redis.call('HSETNX', KEYS[1], 'mode', 'ai')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

/// KEYS: record, open zset, all set, outcomes hash. ARGV: expected version ('' = must not exist),
/// record JSON, state, score, session, channel, outcome field ('' = none).
const PUT_ESCALATION: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then return 0 end
else
  if not current then return 0 end
  if tostring(cjson.decode(current)['version']) ~= ARGV[1] then return 0 end
end
if ARGV[3] == 'closed' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('SREM', KEYS[3], ARGV[5])
  if ARGV[7] ~= '' then redis.call('HINCRBY', KEYS[4], ARGV[7], 1) end
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[5])
  if ARGV[3] == 'waiting' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
  else
    redis.call('ZREM', KEYS[2], ARGV[5])
  end
end
redis.call('PUBLISH', ARGV[6], ARGV[5])
return 1
";

/// The queue's keys share the `{queue}` hash tag, so its scripts run in one Cluster slot.
const QUEUE_OPEN: &str = "cb:{queue}:open";
const QUEUE_ALL: &str = "cb:{queue}:all";
const QUEUE_OUTCOMES: &str = "cb:{queue}:outcomes";
const QUEUE_CHANNEL: &str = "cb:{queue}:changes";

fn escalation_key(session: &SessionId) -> String {
    format!("cb:{{queue}}:esc:{session}")
}

/// The hash-tagged key prefix of a session.
fn key(session: &SessionId, part: &str) -> String {
    format!("cb:{{{session}}}:{part}")
}

/// How long a thread whose own connection could not be opened uses the shared one.
const REOPEN_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
enum ThreadConnection {
    Own(RedisConnection),
    Shared { since: std::time::Instant },
}

pub struct RedisStore {
    connection: RedisConnection,
    url: String,
    /// A connection per thread that uses the store (single server only): each connection's
    /// driver task runs on the thread that opened it, so a server thread's commands do not
    /// wait for another thread to write and read them.
    per_thread: Mutex<HashMap<std::thread::ThreadId, ThreadConnection>>,
    retention_secs: u64,
    subscribers: Arc<Mutex<HashMap<String, broadcast::Sender<u64>>>>,
    append_patient: Script,
    append_event: Script,
    create: Script,
    put_escalation: Script,
    queue_notices: broadcast::Sender<()>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// A mode as the meta hash keeps it; a missing or unknown one reads as the default.
fn parse_mode(raw: &str) -> Mode {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).unwrap_or_default()
}

fn decode_all(session: &SessionId, raw: Vec<String>) -> Result<Vec<SessionEvent>, StoreError> {
    raw.into_iter()
        .map(|json| {
            serde_json::from_str(&json).map_err(|error| StoreError::Corrupt {
                session: session.clone(),
                detail: error.to_string(),
            })
        })
        .collect()
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl RedisStore {
    /// Connects (retrying in the background after any later failure) and starts the notice
    /// listener.
    ///
    /// # Errors
    /// An invalid URL, or Redis unreachable at start-up.
    pub async fn connect(
        url: &str,
        cluster: bool,
        retention_secs: u64,
    ) -> Result<Self, StoreError> {
        let connection = RedisConnection::open(url, cluster)
            .await
            .map_err(unavailable)?;
        let clients = RedisConnection::pubsub_clients(url).map_err(unavailable)?;
        let subscribers: Arc<Mutex<HashMap<String, broadcast::Sender<u64>>>> = Arc::default();
        let queue_notices = broadcast::channel(NOTICE_CAPACITY).0;
        let listener = tokio::spawn(listen(
            clients,
            Arc::clone(&subscribers),
            queue_notices.clone(),
        ));
        Ok(Self {
            connection,
            url: url.to_owned(),
            per_thread: Mutex::default(),
            retention_secs: retention_secs.max(1),
            subscribers,
            append_patient: Script::new(APPEND_PATIENT),
            append_event: Script::new(APPEND_EVENT),
            create: Script::new(CREATE),
            put_escalation: Script::new(PUT_ESCALATION),
            queue_notices,
            listener,
        })
    }

    /// This thread's connection, opened on first use. A Cluster connection is shared (it keeps
    /// its own connections per node). If a thread's connection cannot be opened, the thread uses
    /// the shared one and tries again after `REOPEN_AFTER`, so an outage does not add a connect
    /// timeout to every command.
    async fn connection(&self) -> RedisConnection {
        if matches!(self.connection, RedisConnection::Cluster(_)) {
            return self.connection.clone();
        }
        let thread = std::thread::current().id();
        let known = self
            .per_thread
            .lock()
            .ok()
            .and_then(|map| map.get(&thread).cloned());
        match known {
            Some(ThreadConnection::Own(connection)) => return connection,
            Some(ThreadConnection::Shared { since }) if since.elapsed() < REOPEN_AFTER => {
                return self.connection.clone();
            }
            _ => {}
        }
        let opened = RedisConnection::open(&self.url, false).await;
        let entry = match &opened {
            Ok(connection) => ThreadConnection::Own(connection.clone()),
            Err(error) => {
                tracing::warn!(error = %error, "no Redis connection of this thread's own; using the shared one");
                ThreadConnection::Shared {
                    since: std::time::Instant::now(),
                }
            }
        };
        if let Ok(mut map) = self.per_thread.lock() {
            map.insert(thread, entry);
        }
        opened.unwrap_or_else(|_| self.connection.clone())
    }

    fn encode(session: &SessionId, event: &SessionEvent) -> Result<String, StoreError> {
        serde_json::to_string(event).map_err(|error| StoreError::Corrupt {
            session: session.clone(),
            detail: error.to_string(),
        })
    }
}

/// Receives every replica's notices and hands them to this replica's subscribers. After a lost
/// connection it tells every subscriber to re-read the log, so a gap is filled, never lost.
async fn listen(
    clients: Vec<redis::Client>,
    subscribers: Arc<Mutex<HashMap<String, broadcast::Sender<u64>>>>,
    queue_notices: broadcast::Sender<()>,
) {
    // Any node will do (a Cluster forwards every publication to all nodes); after a failure the
    // next one is tried.
    for client in clients.iter().cycle() {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.psubscribe("cb:{*}:live").await.is_ok()
                    && pubsub.subscribe(QUEUE_CHANNEL).await.is_ok()
                {
                    // Anything published while we were away is in the store: tell everyone to look.
                    notify_all(&subscribers, u64::MAX);
                    let _ = queue_notices.send(());
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let channel = message.get_channel_name();
                        if channel == QUEUE_CHANNEL {
                            let _ = queue_notices.send(());
                            continue;
                        }
                        let Some(session) = channel
                            .strip_prefix("cb:{")
                            .and_then(|rest| rest.strip_suffix("}:live"))
                        else {
                            continue;
                        };
                        let Ok(seq) = message.get_payload::<u64>() else {
                            continue;
                        };
                        if let Ok(map) = subscribers.lock()
                            && let Some(sender) = map.get(session)
                        {
                            let _ = sender.send(seq);
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "redis notice listener cannot connect; retrying")
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn notify_all(subscribers: &Mutex<HashMap<String, broadcast::Sender<u64>>>, seq: u64) {
    if let Ok(map) = subscribers.lock() {
        for sender in map.values() {
            let _ = sender.send(seq);
        }
    }
}

impl SessionStore for RedisStore {
    fn create_session<'a>(
        &'a self,
        session: &'a SessionId,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut connection = self.connection().await;
            self.create
                .key(key(session, "meta"))
                .arg(owner)
                .arg(self.retention_secs)
                .invoke_async::<i64>(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn session_meta<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<SessionMeta>, StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let fields: HashMap<String, String> = connection
                .hgetall(key(session, "meta"))
                .await
                .map_err(unavailable)?;
            let Some(owner) = fields.get("owner") else {
                return Ok(None);
            };
            let mode = fields
                .get("mode")
                .map_or_else(Mode::default, |raw| parse_mode(raw));
            Ok(Some(SessionMeta {
                owner: owner.clone(),
                mode,
            }))
        }
        .boxed()
    }

    fn append_patient_message<'a>(
        &'a self,
        session: &'a SessionId,
        client_id: &'a str,
        text: &'a str,
        recent: usize,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        async move {
            let event = SessionEvent::PatientMessage {
                client_id: client_id.to_owned(),
                text: text.to_owned(),
            };
            let encoded = Self::encode(session, &event)?;
            let mut connection = self.connection().await;
            let (seq, duplicate, mode, recent): (i64, i64, String, Vec<String>) = self
                .append_patient
                .key(key(session, "events"))
                .key(key(session, "clients"))
                .key(key(session, "meta"))
                .arg(client_id)
                .arg(encoded)
                .arg(key(session, "live"))
                .arg(self.retention_secs)
                .arg(recent)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if seq < 0 {
                return Err(StoreError::NoSuchSession(session.clone()));
            }
            Ok(Appended {
                seq: seq.unsigned_abs(),
                duplicate: duplicate == 1,
                mode: parse_mode(&mode),
                recent: decode_all(session, recent)?,
            })
        }
        .boxed()
    }

    fn append_event<'a>(
        &'a self,
        session: &'a SessionId,
        event: &'a SessionEvent,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let encoded = Self::encode(session, event)?;
            let mut connection = self.connection().await;
            let seq: i64 = self
                .append_event
                .key(key(session, "events"))
                .key(key(session, "meta"))
                .key(key(session, "clients"))
                .arg(encoded)
                .arg(key(session, "live"))
                .arg(self.retention_secs)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if seq < 0 {
                return Err(StoreError::NoSuchSession(session.clone()));
            }
            Ok(seq.unsigned_abs())
        }
        .boxed()
    }

    fn latest_events<'a>(
        &'a self,
        session: &'a SessionId,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<SessionEvent>, StoreError>> {
        async move {
            if count == 0 {
                return Ok(Vec::new());
            }
            let mut connection = self.connection().await;
            let from = -isize::try_from(count).unwrap_or(isize::MAX);
            let raw: Vec<String> = connection
                .lrange(key(session, "events"), from, -1)
                .await
                .map_err(unavailable)?;
            decode_all(session, raw)
        }
        .boxed()
    }

    fn events_after<'a>(
        &'a self,
        session: &'a SessionId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>, StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let start = isize::try_from(after).unwrap_or(isize::MAX);
            let raw: Vec<String> = connection
                .lrange(key(session, "events"), start, -1)
                .await
                .map_err(unavailable)?;
            raw.into_iter()
                .enumerate()
                .map(|(offset, json)| {
                    serde_json::from_str(&json)
                        .map(|event| StoredEvent {
                            seq: after + offset as u64 + 1,
                            event,
                        })
                        .map_err(|error| StoreError::Corrupt {
                            session: session.clone(),
                            detail: error.to_string(),
                        })
                })
                .collect()
        }
        .boxed()
    }

    fn set_mode<'a>(
        &'a self,
        session: &'a SessionId,
        mode: Mode,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let raw = serde_json::to_value(mode)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_else(|| "ai".into());
            let _: () = connection
                .hset(key(session, "meta"), "mode", raw)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn subscribe<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<EventNotices, StoreError>> {
        let receiver = self
            .subscribers
            .lock()
            .map(|mut map| {
                map.retain(|_, sender| sender.receiver_count() > 0);
                map.entry(session.to_string())
                    .or_insert_with(|| broadcast::channel(NOTICE_CAPACITY).0)
                    .subscribe()
            })
            .map_err(|_| StoreError::Unavailable("subscriber map lock poisoned".into()));
        async move { receiver }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let _: String = redis::cmd("PING")
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn get_escalation<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Escalation>, StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let raw: Option<String> = connection
                .get(escalation_key(session))
                .await
                .map_err(unavailable)?;
            raw.map(|json| {
                serde_json::from_str(&json).map_err(|error| StoreError::Corrupt {
                    session: session.clone(),
                    detail: error.to_string(),
                })
            })
            .transpose()
        }
        .boxed()
    }

    fn put_escalation<'a>(
        &'a self,
        escalation: &'a Escalation,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut stored = escalation.clone();
            stored.version = next_version(expected);
            let json = serde_json::to_string(&stored).map_err(|error| StoreError::Corrupt {
                session: escalation.session.clone(),
                detail: error.to_string(),
            })?;
            let state = match escalation.state {
                EscalationState::Waiting => "waiting",
                EscalationState::Claimed => "claimed",
                EscalationState::Closed => "closed",
            };
            let mut connection = self.connection().await;
            let written: i64 = self
                .put_escalation
                .key(escalation_key(&escalation.session))
                .key(QUEUE_OPEN)
                .key(QUEUE_ALL)
                .key(QUEUE_OUTCOMES)
                .arg(
                    expected
                        .map(|version| version.to_string())
                        .unwrap_or_default(),
                )
                .arg(json)
                .arg(state)
                .arg(escalation.score())
                .arg(escalation.session.as_str())
                .arg(QUEUE_CHANNEL)
                .arg(outcome_field(escalation).unwrap_or_default())
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(written == 1)
        }
        .boxed()
    }

    fn list_escalations(&self) -> BoxFuture<'_, Result<Vec<Escalation>, StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let sessions: Vec<String> =
                connection.smembers(QUEUE_ALL).await.map_err(unavailable)?;
            if sessions.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = sessions
                .iter()
                .map(|session| format!("cb:{{queue}}:esc:{session}"))
                .collect();
            let records: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(records
                .into_iter()
                .flatten()
                .filter_map(|json| serde_json::from_str(&json).ok())
                .collect())
        }
        .boxed()
    }

    fn queue_notices(&self) -> broadcast::Receiver<()> {
        self.queue_notices.subscribe()
    }

    fn rule_outcomes(&self) -> BoxFuture<'_, Result<Vec<RuleOutcome>, StoreError>> {
        async move {
            let mut connection = self.connection().await;
            let counts: HashMap<String, u64> = connection
                .hgetall(QUEUE_OUTCOMES)
                .await
                .map_err(unavailable)?;
            Ok(counts
                .into_iter()
                .filter_map(|(field, count)| {
                    let (rule, outcome) = field.split_once('|')?;
                    Some((rule.to_owned(), outcome.to_owned(), count))
                })
                .collect())
        }
        .boxed()
    }
}
