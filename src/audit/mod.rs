//! The audit trail: every policy decision, guard action, redaction, escalation step, policy
//! reload and admin action, with who, when and which session, in a hash chain that
//! `carebridge audit verify` checks.
//!
//! Recording never blocks on storage: entries go to one writer task per process, which chains
//! them in batches and retries while the store is away (a bounded channel applies back-pressure
//! rather than dropping an entry). Entries hold rule ids, severities, kinds and counts, never
//! message text, identifiers or token contents.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

mod backend;
mod chain;

pub use backend::{AuditBackend, AuditStoreError, FileAudit, MemoryAudit, RedisAudit, read_file};
pub use chain::{Action, ActorRole, AuditEntry, ChainBreak, GENESIS, Tip, Verifier, chain_onto};

use crate::escalation::now_ms;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuditBackendKind {
    /// A Redis stream when sessions are in Redis, memory otherwise.
    Auto,
    Memory,
    File,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    pub backend: AuditBackendKind,
    /// The JSONL file of the `file` backend.
    pub file: PathBuf,
    /// Entries waiting for the writer before recording waits for room.
    pub queue_capacity: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            backend: AuditBackendKind::Auto,
            file: PathBuf::from("audit/carebridge-audit.jsonl"),
            queue_capacity: 65_536,
        }
    }
}

/// Opens the backend the settings name.
///
/// # Errors
/// The file cannot be opened or Redis cannot be reached.
pub async fn open_backend(
    settings: &crate::config::Settings,
) -> Result<Arc<dyn AuditBackend>, AuditStoreError> {
    let kind = match (settings.audit.backend, settings.store.backend) {
        (AuditBackendKind::Auto, crate::config::StoreBackend::Redis) => AuditBackendKind::Redis,
        (AuditBackendKind::Auto, crate::config::StoreBackend::Memory) => AuditBackendKind::Memory,
        (kind, _) => kind,
    };
    Ok(match kind {
        AuditBackendKind::Auto | AuditBackendKind::Memory => Arc::new(MemoryAudit::default()),
        AuditBackendKind::File => Arc::new(FileAudit::open(&settings.audit.file)?),
        AuditBackendKind::Redis => Arc::new(
            RedisAudit::connect(&settings.store.redis_url, settings.store.redis_cluster).await?,
        ),
    })
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub role: ActorRole,
}

impl Actor {
    /// The server itself (re-alerts, a vanished nurse's claim returning to the queue, reloads).
    pub fn system() -> Self {
        Self {
            id: "carebridge".to_owned(),
            role: ActorRole::System,
        }
    }

    pub fn new(id: impl Into<String>, role: ActorRole) -> Self {
        Self {
            id: id.into(),
            role,
        }
    }
}

impl From<&crate::auth::Claims> for Actor {
    fn from(claims: &crate::auth::Claims) -> Self {
        Self::new(claims.sub.clone(), claims.role.into())
    }
}

enum Command {
    Record(Box<AuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// Records audit entries; cheap to share.
pub struct Auditor {
    backend: Arc<dyn AuditBackend>,
    commands: mpsc::Sender<Command>,
}

/// Entries per append: one round trip for a burst, small enough to stay well inside a script's
/// argument limits.
const BATCH: usize = 256;

impl Auditor {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(backend: Arc<dyn AuditBackend>, capacity: usize) -> Arc<Self> {
        let (commands, receiver) = mpsc::channel(capacity.max(1));
        tokio::spawn(write_loop(Arc::clone(&backend), receiver));
        Arc::new(Self { backend, commands })
    }

    pub fn backend(&self) -> &Arc<dyn AuditBackend> {
        &self.backend
    }

    /// Queues an entry. `detail` must not contain message text or identifiers.
    pub async fn record(
        &self,
        action: Action,
        actor: &Actor,
        session: Option<&str>,
        detail: serde_json::Value,
    ) {
        let entry = AuditEntry {
            seq: 0,
            at_ms: now_ms(),
            action,
            actor: actor.id.clone(),
            role: actor.role,
            session: session.map(str::to_owned),
            detail,
            prev: String::new(),
            hash: String::new(),
        };
        metrics::counter!("carebridge_audit_entries_total").increment(1);
        if self
            .commands
            .send(Command::Record(Box::new(entry)))
            .await
            .is_err()
        {
            metrics::counter!("carebridge_audit_lost_total").increment(1);
            tracing::error!(
                action = ?action,
                "audit writer has stopped; an audit entry was not recorded"
            );
        }
    }

    /// Waits until everything recorded so far is stored (or `limit` passed).
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, finished).await, Ok(Ok(())))
    }
}

async fn write_loop(backend: Arc<dyn AuditBackend>, mut commands: mpsc::Receiver<Command>) {
    let mut tip: Option<Tip> = None;
    let mut pending: Vec<AuditEntry> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let Some(first) = commands.recv().await else {
            return;
        };
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Record(entry) => pending.push(*entry),
                Command::Flush(done) => waiting.push(done),
            }
            if pending.len() >= BATCH {
                break;
            }
            next = commands.try_recv().ok();
        }
        let mut backoff = Duration::from_millis(50);
        while !pending.is_empty() {
            let current = match &tip {
                Some(current) => current.clone(),
                None => match backend.tip().await {
                    Ok(found) => found,
                    Err(error) => {
                        wait_for_store(&error, &mut backoff).await;
                        continue;
                    }
                },
            };
            let new_tip = chain_onto(&current, &mut pending);
            match backend.append(&current, &pending).await {
                Ok(true) => {
                    tip = Some(new_tip);
                    pending.clear();
                }
                // Another replica appended first: chain on its tip.
                Ok(false) => tip = None,
                Err(error) => {
                    tip = None;
                    wait_for_store(&error, &mut backoff).await;
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn wait_for_store(error: &AuditStoreError, backoff: &mut Duration) {
    metrics::counter!("carebridge_audit_store_errors_total").increment(1);
    tracing::warn!(error = %error, "audit entries waiting for the audit store");
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

/// The result of checking a whole trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub entries: u64,
    pub tip: Option<Tip>,
    /// The first break, if any.
    pub broken: Option<String>,
}

/// Pages through a backend's trail, checking the chain (and the recorded tip, where kept).
///
/// # Errors
/// The store cannot be read; a broken chain is a `Verification` with `broken` set.
pub async fn verify(backend: &dyn AuditBackend) -> Result<Verification, AuditStoreError> {
    let recorded = if backend.keeps_tip() {
        Some(backend.tip().await?)
    } else {
        None
    };
    let mut verifier = Verifier::default();
    let mut after = 0;
    loop {
        let page = backend.entries_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            if let Err(error) = verifier.push(entry) {
                return Ok(Verification {
                    entries: verifier.count(),
                    tip: None,
                    broken: Some(error.to_string()),
                });
            }
        }
    }
    let entries = verifier.count();
    Ok(match verifier.finish(recorded.as_ref()) {
        Ok(tip) => Verification {
            entries,
            tip: Some(tip),
            broken: None,
        },
        Err(error) => Verification {
            entries,
            tip: None,
            broken: Some(error.to_string()),
        },
    })
}

/// Entries read from the backend at a time by an export.
const EXPORT_PAGE: usize = 1_000;

/// Some entries of the trail, one JSON line each.
pub struct ExportPage {
    pub json_lines: Vec<u8>,
    pub entries: u64,
}

/// The trail as JSON lines, one page of entries at a time: an export of any length holds one
/// page in memory.
pub fn export_pages(
    backend: Arc<dyn AuditBackend>,
) -> impl futures_util::Stream<Item = Result<ExportPage, AuditStoreError>> + Send {
    futures_util::stream::try_unfold(0_u64, move |after| {
        let backend = Arc::clone(&backend);
        async move {
            let page = backend.entries_after(after, EXPORT_PAGE).await?;
            let Some(last) = page.last().map(|entry| entry.seq) else {
                return Ok(None);
            };
            let exported = ExportPage {
                json_lines: json_lines(&page)?,
                entries: page.len() as u64,
            };
            Ok(Some((exported, last)))
        }
    })
}

fn json_lines(entries: &[AuditEntry]) -> Result<Vec<u8>, AuditStoreError> {
    let mut out = Vec::with_capacity(entries.len() * 256);
    for entry in entries {
        serde_json::to_writer(&mut out, entry).map_err(|error| AuditStoreError::Unreadable {
            position: entry.seq.to_string(),
            detail: error.to_string(),
        })?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Writes every entry as one JSON line; returns how many.
///
/// # Errors
/// The store cannot be read or the writer fails.
pub async fn export(
    backend: Arc<dyn AuditBackend>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, AuditStoreError> {
    use futures_util::TryStreamExt;
    let mut pages = std::pin::pin!(export_pages(backend));
    let mut count = 0;
    while let Some(page) = pages.try_next().await? {
        out.write_all(&page.json_lines)
            .map_err(|source| AuditStoreError::File {
                path: PathBuf::from("<output>"),
                source,
            })?;
        count += page.entries;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recorded_entries_are_chained_in_order_and_verify() {
        let backend = Arc::new(MemoryAudit::default());
        let auditor = Auditor::start(backend.clone(), 16);
        for index in 0..40 {
            auditor
                .record(
                    Action::PolicyDecision,
                    &Actor::new(format!("p{index}"), ActorRole::Patient),
                    Some("s1"),
                    serde_json::json!({"level": "routine"}),
                )
                .await;
        }
        assert!(auditor.flush(Duration::from_secs(5)).await);
        let report = verify(backend.as_ref()).await.expect("readable");
        assert_eq!(report.entries, 40);
        assert_eq!(report.broken, None);

        backend.tamper(|entries| entries[10].actor = "someone-else".into());
        let report = verify(backend.as_ref()).await.expect("readable");
        assert_eq!(
            report.broken.as_deref(),
            Some(ChainBreak::Altered { seq: 11 }.to_string().as_str())
        );
    }

    #[tokio::test]
    async fn two_writers_on_one_log_keep_one_chain() {
        let backend: Arc<dyn AuditBackend> = Arc::new(MemoryAudit::default());
        let first = Auditor::start(Arc::clone(&backend), 8);
        let second = Auditor::start(Arc::clone(&backend), 8);
        for index in 0..50 {
            let writer = if index % 2 == 0 { &first } else { &second };
            writer
                .record(
                    Action::AdminAction,
                    &Actor::system(),
                    None,
                    serde_json::json!({"n": index}),
                )
                .await;
        }
        assert!(first.flush(Duration::from_secs(5)).await);
        assert!(second.flush(Duration::from_secs(5)).await);
        let report = verify(backend.as_ref()).await.expect("readable");
        assert_eq!((report.entries, report.broken), (50, None));
    }

    #[tokio::test]
    async fn an_export_verifies_and_a_reordered_export_does_not() {
        let backend = Arc::new(MemoryAudit::default());
        let auditor = Auditor::start(backend.clone(), 16);
        // More than two pages, so the export crosses page boundaries.
        let total = EXPORT_PAGE * 2 + 345;
        for index in 0..total {
            auditor
                .record(
                    Action::EscalationClaimed,
                    &Actor::new("nurse-1", ActorRole::Nurse),
                    Some(&format!("s{index}")),
                    serde_json::json!({}),
                )
                .await;
        }
        assert!(auditor.flush(Duration::from_secs(5)).await);
        let mut out = Vec::new();
        assert_eq!(
            export(backend.clone(), &mut out).await.expect("export"),
            total as u64
        );
        let text = String::from_utf8(out).expect("utf-8");
        let mut lines: Vec<&str> = text.lines().collect();
        let parsed: Vec<AuditEntry> = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("entry"))
            .collect();
        assert!(parsed.iter().map(|entry| entry.seq).eq(1..=total as u64));
        let mut verifier = Verifier::default();
        assert!(parsed.iter().all(|entry| verifier.push(entry).is_ok()));

        lines.swap(3, 4);
        let mut verifier = Verifier::default();
        let broken = lines
            .iter()
            .map(|line| serde_json::from_str::<AuditEntry>(line).expect("entry"))
            .any(|entry| verifier.push(&entry).is_err());
        assert!(broken);
    }
}
