//! Where the audit trail is kept: memory (tests and the embedded default), an append-only JSONL
//! file (a single server), or a Redis stream shared by every replica.
//!
//! Backends only append whole chained batches, and only when the batch chains on the log's
//! current tip; the writer re-chains and retries when another replica appended first.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::Script;

use super::chain::{AuditEntry, Tip};

#[derive(Debug, thiserror::Error)]
pub enum AuditStoreError {
    #[error("the audit store is unavailable ({0}); entries are kept and retried")]
    Unavailable(String),
    #[error("audit file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit entry {position} cannot be read: {detail}")]
    Unreadable { position: String, detail: String },
    #[error(
        "the memory audit trail lives inside the server process: read it with GET /v1/admin/audit, or configure audit.backend = \"file\" or \"redis\""
    )]
    InProcessOnly,
}

/// An append-only, hash-chained log.
pub trait AuditBackend: Send + Sync + 'static {
    /// The last entry's number and hash (the genesis tip when empty).
    fn tip(&self) -> BoxFuture<'_, Result<Tip, AuditStoreError>>;

    /// Appends a batch chained on `expected`. `Ok(false)`: the log moved on; nothing was written.
    fn append<'a>(
        &'a self,
        expected: &'a Tip,
        entries: &'a [AuditEntry],
    ) -> BoxFuture<'a, Result<bool, AuditStoreError>>;

    /// Up to `limit` entries with `seq > after`, in order.
    fn entries_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, AuditStoreError>>;

    /// Whether the backend records its tip apart from the log (so truncation is detectable).
    fn keeps_tip(&self) -> bool;
}

fn last_tip(entries: &[AuditEntry]) -> Tip {
    entries.last().map_or_else(Tip::genesis, |entry| Tip {
        seq: entry.seq,
        hash: entry.hash.clone(),
    })
}

/// Kept in the process; lost on restart. For tests and the embedded default.
#[derive(Default)]
pub struct MemoryAudit {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAudit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        // A panic while holding the lock cannot leave a half-appended batch: `extend` of clones.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Test hook: lets a test tamper with the trail to prove verification notices.
    #[doc(hidden)]
    pub fn tamper(&self, change: impl FnOnce(&mut Vec<AuditEntry>)) {
        change(&mut self.lock());
    }
}

impl AuditBackend for MemoryAudit {
    fn tip(&self) -> BoxFuture<'_, Result<Tip, AuditStoreError>> {
        let tip = last_tip(&self.lock());
        async move { Ok(tip) }.boxed()
    }

    fn append<'a>(
        &'a self,
        expected: &'a Tip,
        entries: &'a [AuditEntry],
    ) -> BoxFuture<'a, Result<bool, AuditStoreError>> {
        let mut all = self.lock();
        let appended = if last_tip(&all) == *expected {
            all.extend_from_slice(entries);
            true
        } else {
            false
        };
        async move { Ok(appended) }.boxed()
    }

    fn entries_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, AuditStoreError>> {
        let page = self
            .lock()
            .iter()
            .filter(|entry| entry.seq > after)
            .take(limit)
            .cloned()
            .collect();
        async move { Ok(page) }.boxed()
    }

    fn keeps_tip(&self) -> bool {
        false
    }
}

/// One JSON entry per line, appended and synced to disk per batch. One server process per file.
pub struct FileAudit {
    path: PathBuf,
    state: Mutex<FileState>,
}

struct FileState {
    file: std::fs::File,
    tip: Tip,
}

impl FileAudit {
    /// Opens (or creates) the file and finds its tip.
    ///
    /// # Errors
    /// The file cannot be opened, or its last line is not an audit entry.
    pub fn open(path: &Path) -> Result<Self, AuditStoreError> {
        let file_error = |source| AuditStoreError::File {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(file_error)?;
        }
        let entries = read_file(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(file_error)?;
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new(FileState {
                file,
                tip: last_tip(&entries),
            }),
        })
    }
}

/// Every entry of a JSONL audit file (an export or a file backend).
///
/// # Errors
/// The file cannot be read or a line is not an entry.
pub fn read_file(path: &Path) -> Result<Vec<AuditEntry>, AuditStoreError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AuditStoreError::File {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut entries = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| AuditStoreError::File {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).map_err(|error| AuditStoreError::Unreadable {
            position: format!("{}:{}", path.display(), index + 1),
            detail: error.to_string(),
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

impl AuditBackend for FileAudit {
    fn tip(&self) -> BoxFuture<'_, Result<Tip, AuditStoreError>> {
        let tip = self
            .state
            .lock()
            .map(|state| state.tip.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().tip.clone());
        async move { Ok(tip) }.boxed()
    }

    fn append<'a>(
        &'a self,
        expected: &'a Tip,
        entries: &'a [AuditEntry],
    ) -> BoxFuture<'a, Result<bool, AuditStoreError>> {
        let result = (|| {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.tip != *expected {
                return Ok(false);
            }
            let mut text = String::new();
            for entry in entries {
                let line =
                    serde_json::to_string(entry).map_err(|error| AuditStoreError::Unreadable {
                        position: entry.seq.to_string(),
                        detail: error.to_string(),
                    })?;
                text.push_str(&line);
                text.push('\n');
            }
            let file_error = |source| AuditStoreError::File {
                path: self.path.clone(),
                source,
            };
            state.file.write_all(text.as_bytes()).map_err(file_error)?;
            state.file.sync_data().map_err(file_error)?;
            state.tip = last_tip(entries);
            Ok(true)
        })();
        async move { result }.boxed()
    }

    fn entries_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, AuditStoreError>> {
        let page = read_file(&self.path).map(|all| {
            all.into_iter()
                .filter(|entry| entry.seq > after)
                .take(limit)
                .collect()
        });
        async move { page }.boxed()
    }

    fn keeps_tip(&self) -> bool {
        false
    }
}

/// Stream and tip share the `{audit}` hash tag, so the append script runs in one Cluster slot.
const AUDIT_STREAM: &str = "cb:{audit}:log";
const AUDIT_TIP: &str = "cb:{audit}:tip";

/// KEYS: stream, tip. ARGV: expected tip ("seq hash"), new tip, then entry seq and JSON pairs.
/// Stream ids are `<seq>-1`, so the log's order is the chain's order.
const APPEND_AUDIT: &str = r"
local tip = redis.call('GET', KEYS[2]) or '0 0000000000000000000000000000000000000000000000000000000000000000'
if tip ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], ARGV[i] .. '-1', 'entry', ARGV[i + 1])
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

/// The trail in a Redis stream, shared by every replica (persisted with the server's AOF).
pub struct RedisAudit {
    connection: crate::store::RedisConnection,
    append: Script,
}

fn redis_error(error: redis::RedisError) -> AuditStoreError {
    AuditStoreError::Unavailable(error.to_string())
}

fn tip_text(tip: &Tip) -> String {
    format!("{} {}", tip.seq, tip.hash)
}

impl RedisAudit {
    /// Connects to Redis.
    ///
    /// # Errors
    /// An invalid URL or Redis unreachable.
    pub async fn connect(url: &str, cluster: bool) -> Result<Self, AuditStoreError> {
        let connection = crate::store::RedisConnection::open(url, cluster)
            .await
            .map_err(redis_error)?;
        Ok(Self {
            connection,
            append: Script::new(APPEND_AUDIT),
        })
    }
}

impl AuditBackend for RedisAudit {
    fn tip(&self) -> BoxFuture<'_, Result<Tip, AuditStoreError>> {
        let mut connection = self.connection.clone();
        async move {
            let text: Option<String> = redis::cmd("GET")
                .arg(AUDIT_TIP)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            let Some(text) = text else {
                return Ok(Tip::genesis());
            };
            let (seq, hash) = text
                .split_once(' ')
                .ok_or_else(|| AuditStoreError::Unreadable {
                    position: AUDIT_TIP.to_owned(),
                    detail: "expected `<seq> <hash>`".to_owned(),
                })?;
            let seq = seq.parse().map_err(|_| AuditStoreError::Unreadable {
                position: AUDIT_TIP.to_owned(),
                detail: format!("`{seq}` is not a sequence number"),
            })?;
            Ok(Tip {
                seq,
                hash: hash.to_owned(),
            })
        }
        .boxed()
    }

    fn append<'a>(
        &'a self,
        expected: &'a Tip,
        entries: &'a [AuditEntry],
    ) -> BoxFuture<'a, Result<bool, AuditStoreError>> {
        let mut connection = self.connection.clone();
        async move {
            let mut invocation = self.append.key(AUDIT_STREAM);
            invocation
                .key(AUDIT_TIP)
                .arg(tip_text(expected))
                .arg(tip_text(&last_tip(entries)));
            for entry in entries {
                let json =
                    serde_json::to_string(entry).map_err(|error| AuditStoreError::Unreadable {
                        position: entry.seq.to_string(),
                        detail: error.to_string(),
                    })?;
                invocation.arg(entry.seq).arg(json);
            }
            let written: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(redis_error)?;
            Ok(written == 1)
        }
        .boxed()
    }

    fn entries_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, AuditStoreError>> {
        let mut connection = self.connection.clone();
        async move {
            let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(AUDIT_STREAM)
                .arg(format!("({after}-1"))
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            let mut entries = Vec::with_capacity(reply.len());
            for (id, fields) in reply {
                let json = fields
                    .into_iter()
                    .find(|(name, _)| name == "entry")
                    .map(|(_, value)| value)
                    .ok_or_else(|| AuditStoreError::Unreadable {
                        position: id.clone(),
                        detail: "no `entry` field".to_owned(),
                    })?;
                let entry =
                    serde_json::from_str(&json).map_err(|error| AuditStoreError::Unreadable {
                        position: id.clone(),
                        detail: error.to_string(),
                    })?;
                entries.push(entry);
            }
            Ok(entries)
        }
        .boxed()
    }

    fn keeps_tip(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::{Action, ActorRole, chain_onto};
    use super::*;

    fn batch(tip: &Tip, count: usize) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = (0..count)
            .map(|index| AuditEntry {
                seq: 0,
                at_ms: index as u64,
                action: Action::AdminAction,
                actor: "op".into(),
                role: ActorRole::Operator,
                session: None,
                detail: serde_json::json!({"route": "test"}),
                prev: String::new(),
                hash: String::new(),
            })
            .collect();
        chain_onto(tip, &mut entries);
        entries
    }

    #[tokio::test]
    async fn a_file_log_reopens_at_its_tip_and_refuses_a_stale_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit/trail.jsonl");
        let file = FileAudit::open(&path).expect("open");
        let first = batch(&Tip::genesis(), 3);
        assert!(file.append(&Tip::genesis(), &first).await.expect("append"));
        assert!(
            !file
                .append(&Tip::genesis(), &batch(&Tip::genesis(), 1))
                .await
                .expect("append"),
            "a batch chained on an old tip is refused"
        );
        drop(file);

        let reopened = FileAudit::open(&path).expect("reopen");
        let tip = reopened.tip().await.expect("tip");
        assert_eq!(tip.seq, 3);
        assert!(
            reopened
                .append(&tip, &batch(&tip, 2))
                .await
                .expect("append")
        );
        let all = reopened.entries_after(0, 100).await.expect("read");
        assert_eq!(
            all.iter().map(|entry| entry.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(reopened.entries_after(3, 1).await.expect("page").len(), 1);
    }
}
