//! Hot reload: a new policy set is compiled and tested off to the side and swapped in whole, only
//! if all of it passes. Until then, and whenever it fails, the previous set keeps serving: a
//! broken policy is never served, not even for one message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{PolicyLoadError, PolicySet};
use crate::prompts::{Prompts, Region};

/// What operators see at the status endpoint.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReloadStatus {
    pub version: String,
    pub loaded_at_unix: u64,
    pub rules: usize,
    pub reloads: u64,
    pub failed_reloads: u64,
    pub last_error: Option<String>,
    pub last_error_at_unix: Option<u64>,
}

/// The live policy set, shared by every socket.
pub struct PolicyHandle {
    current: ArcSwap<PolicySet>,
    status: Mutex<ReloadStatus>,
    policies_dir: PathBuf,
    prompts_dir: PathBuf,
    region: Region,
    fingerprint: Mutex<String>,
    // Reloads are serialised so two triggers at once cannot race each other's swap.
    reloading: tokio::sync::Mutex<()>,
    outcomes: tokio::sync::broadcast::Sender<ReloadOutcome>,
}

/// What a reload did, for whoever keeps the record (the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Loaded { version: String, previous: String },
    Refused { error: String, serving: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("prompts: {0}")]
    Prompts(#[from] crate::prompts::PromptError),
    #[error("{0}; still serving policy set {1}")]
    Policy(PolicyLoadError, String),
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

impl PolicyHandle {
    /// Loads and tests the initial set.
    ///
    /// # Errors
    /// The set does not load or its tests fail: the server must not start on it.
    pub fn load(
        policies_dir: &Path,
        prompts_dir: &Path,
        region: Region,
    ) -> Result<Self, ReloadError> {
        let prompts = Prompts::load(prompts_dir, region)?;
        let set = PolicySet::load_tested(policies_dir, &prompts)
            .map_err(|error| ReloadError::Policy(error, "none".into()))?;
        let status = ReloadStatus {
            version: set.version().to_owned(),
            loaded_at_unix: unix(set.loaded_at()),
            rules: set.rules().len(),
            ..ReloadStatus::default()
        };
        Ok(Self {
            current: ArcSwap::from_pointee(set),
            status: Mutex::new(status),
            policies_dir: policies_dir.to_owned(),
            prompts_dir: prompts_dir.to_owned(),
            region,
            fingerprint: Mutex::new(fingerprint(policies_dir, prompts_dir)),
            reloading: tokio::sync::Mutex::new(()),
            outcomes: tokio::sync::broadcast::channel(64).0,
        })
    }

    /// The set to use for one message. Cheap; hold it for the whole message.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// Every reload's outcome from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ReloadOutcome> {
        self.outcomes.subscribe()
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default()
    }

    /// Compiles and tests the directory again; swaps it in only if everything passes.
    ///
    /// # Errors
    /// The new set is broken; the old one keeps serving and the error is recorded.
    pub async fn reload(&self) -> Result<String, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let (policies, prompts_dir, region) = (
            self.policies_dir.clone(),
            self.prompts_dir.clone(),
            self.region,
        );
        // Compiling is CPU work; keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || {
            let prompts = Prompts::load(&prompts_dir, region)?;
            PolicySet::load_tested(&policies, &prompts)
                .map_err(|error| ReloadError::Policy(error, String::new()))
        })
        .await
        .unwrap_or_else(|join_error| {
            Err(ReloadError::Policy(
                PolicyLoadError::Empty(PathBuf::from(format!("reload task failed: {join_error}"))),
                String::new(),
            ))
        });
        if let Ok(mut seen) = self.fingerprint.lock() {
            *seen = fingerprint(&self.policies_dir, &self.prompts_dir);
        }
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match loaded {
            Ok(set) => {
                let version = set.version().to_owned();
                let previous = std::mem::replace(&mut status.version, version.clone());
                status.loaded_at_unix = unix(set.loaded_at());
                status.rules = set.rules().len();
                status.reloads += 1;
                status.last_error = None;
                self.current.store(Arc::new(set));
                metrics::counter!("carebridge_policy_reloads_total", "outcome" => "ok")
                    .increment(1);
                tracing::info!(policy_version = %version, "policy set reloaded");
                let _ = self.outcomes.send(ReloadOutcome::Loaded {
                    version: version.clone(),
                    previous,
                });
                Ok(version)
            }
            Err(error) => {
                let serving = status.version.clone();
                let error = match error {
                    ReloadError::Policy(inner, _) => ReloadError::Policy(inner, serving.clone()),
                    other => other,
                };
                status.failed_reloads += 1;
                status.last_error = Some(error.to_string());
                status.last_error_at_unix = Some(unix(SystemTime::now()));
                metrics::counter!("carebridge_policy_reloads_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(error = %error, "policy reload refused");
                let _ = self.outcomes.send(ReloadOutcome::Refused {
                    error: error.to_string(),
                    serving,
                });
                Err(error)
            }
        }
    }

    /// Reloads when the files changed since the last load (polled: robust to the symlink swaps
    /// Kubernetes uses for ConfigMap volumes, which file-event watchers can miss).
    pub async fn reload_if_changed(&self) -> Option<Result<String, ReloadError>> {
        let now = fingerprint(&self.policies_dir, &self.prompts_dir);
        let changed = self
            .fingerprint
            .lock()
            .map(|seen| *seen != now)
            .unwrap_or(false);
        if changed {
            Some(self.reload().await)
        } else {
            None
        }
    }

    /// Polls for changes every `interval` until `stop` is cancelled.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => { let _ = self.reload_if_changed().await; }
            }
        }
    }
}

/// A hash of every file's name, size and modification time under the two directories.
fn fingerprint(policies: &Path, prompts: &Path) -> String {
    let mut hasher = Sha256::new();
    for dir in [policies, prompts] {
        let mut stack = vec![dir.to_owned()];
        let mut entries = Vec::new();
        while let Some(current) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&current) else {
                continue;
            };
            for entry in read.flatten() {
                let path = entry.path();
                // Follow symlinks: ConfigMap volumes swap a `..data` link.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    if path.file_name().is_some_and(|name| name != "eval") {
                        stack.push(path);
                    }
                } else {
                    let modified = meta.modified().map(unix).unwrap_or(0);
                    let nanos = meta
                        .modified()
                        .ok()
                        .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map(|elapsed| elapsed.subsec_nanos())
                        .unwrap_or(0);
                    entries.push(format!(
                        "{}:{}:{modified}.{nanos}",
                        path.display(),
                        meta.len()
                    ));
                }
            }
        }
        entries.sort();
        for entry in entries {
            hasher.update(entry.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}
