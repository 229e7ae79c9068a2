//! Builds the application from settings, binds it, and runs it until it is told to stop.
//!
//! Shutdown, in order:
//! 1. stop accepting connections and report not ready (`/readyz` answers 503);
//! 2. tell every socket to close with "going away" once its streaming reply, if any, finished
//!    within `server.shutdown_grace_ms`;
//! 3. wait for the socket tasks (bounded by the same grace), then stop the HTTP workers.

use std::future::Future;
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::auth::TokenKeys;
use crate::config::{Provider, ProviderTrust, Settings, StoreBackend};
use crate::escalation::Escalations;
use crate::llm::{ChatModel, DemoModel};
use crate::policy::reload::{PolicyHandle, ReloadError};
use crate::prompts::{PromptError, Prompts};
use crate::redact::Redactor;
use crate::session::conversation::Services;
use crate::store::{MemoryStore, SessionStore};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policies: {0}")]
    Policies(#[from] ReloadError),
    #[error("prompts: {0}")]
    Prompts(#[from] PromptError),
    #[error("model provider: {0}")]
    Model(String),
    #[error("store: {0}")]
    Store(String),
    #[error("token keys: {0}")]
    Keys(#[from] crate::auth::KeyError),
    #[error("audit trail: {0}")]
    Audit(String),
    #[error("redaction: {0}")]
    Redaction(#[from] crate::redact::RedactionConfigError),
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
}

/// A built, bound application.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    policy_watcher: CancellationToken,
}

/// How often the recorder folds the histogram samples it holds into their summaries.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The name of the thread that runs the recorder's upkeep.
const METRICS_UPKEEP_THREAD: &str = "metrics-upkeep";

/// One Prometheus recorder per process, shared by every application built in it (tests build
/// several).
/// The worker threads to start: the configured number, or one per CPU this process may use.
fn workers(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().ok()?;
            start_metrics_upkeep(handle.clone());
            Some(handle)
        })
        .clone()
}

/// The recorder keeps every histogram sample (each guard chunk, each turn) until upkeep folds
/// it into its summary, and installing it on its own does not schedule upkeep: a server that
/// nobody scraped grew by every sample, and the first scrape then drained them all on an HTTP
/// worker. A thread of its own, so it runs whatever runtime the server is in.
fn start_metrics_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(METRICS_UPKEEP_THREAD.into())
        .spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(error = %error, "cannot start the metrics upkeep thread; histogram samples are kept until /metrics is scraped");
    }
}

impl Application {
    /// Loads policies and prompts, connects the store and the model, and binds the listener.
    ///
    /// # Errors
    /// Anything that would make the server unsafe or unable to serve: broken policies, missing
    /// prompts, an unreachable bind address, an unusable provider configuration.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let settings = Arc::new(settings);
        // First: a production server without real key material must not even load policies.
        let keys = TokenKeys::from_settings(&settings.auth, settings.environment)?;
        let policies = Arc::new(PolicyHandle::load(
            &settings.policies.dir,
            &settings.prompts_dir,
            settings.region,
        )?);
        let prompts = Arc::new(Prompts::load(&settings.prompts_dir, settings.region)?);
        let store: Arc<dyn SessionStore> = match settings.store.backend {
            StoreBackend::Memory => Arc::new(MemoryStore::new()),
            StoreBackend::Redis => Arc::new(
                crate::store::RedisStore::connect(
                    &settings.store.redis_url,
                    settings.store.redis_cluster,
                    settings.store.retention_secs,
                )
                .await
                .map_err(|error| StartupError::Store(error.to_string()))?,
            ),
        };
        let model: Arc<dyn ChatModel> = match settings.llm.provider {
            Provider::Demo => Arc::new(DemoModel::new(Duration::from_millis(
                settings.llm.demo_word_delay_ms,
            ))),
            Provider::Openai => Arc::new(
                crate::llm::OpenAiModel::new(&settings.llm)
                    .map_err(|error| StartupError::Model(error.to_string()))?,
            ),
        };
        // Identifiers stay inside: an external provider only ever sees placeholders.
        let redactor = match (settings.llm.provider, settings.llm.trust) {
            (Provider::Openai, ProviderTrust::External) => {
                Some(Arc::new(Redactor::load(&settings.llm.redaction_file)?))
            }
            _ => None,
        };
        let audit = crate::audit::Auditor::start(
            crate::audit::open_backend(&settings)
                .await
                .map_err(|error| StartupError::Audit(error.to_string()))?,
            settings.audit.queue_capacity,
        );
        let escalations = Arc::new(Escalations::new(
            Arc::clone(&store),
            settings.escalation.clone(),
            Arc::clone(&audit),
        ));
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).map_err(|source| StartupError::Bind { address, source })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            services: Arc::new(Services {
                settings: Arc::clone(&settings),
                store,
                escalations: Arc::clone(&escalations),
                model,
                policies,
                prompts,
                redactor,
                audit,
                model_streams: Arc::new(tokio::sync::Semaphore::new(
                    settings.rate_limits.max_model_streams.max(1),
                )),
            }),
            keys,
            metrics: metrics_handle(),
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            limits: Arc::new(crate::limits::Limits::new(&settings.rate_limits)),
        });
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::JsonConfig::default().limit(64 * 1024))
                .configure(api::configure)
        })
        .workers(workers(settings.server.workers))
        // Frames are small and latency-critical (an alert, a streamed word): without this,
        // Nagle's algorithm holds each behind the client's delayed ACK, tens of milliseconds.
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_grace_ms.div_ceil(1000) + 1)
        .listen(listener)?
        .run();
        let policy_watcher = CancellationToken::new();
        // Re-alerts and abandoned claims are checked by every replica; compare-and-set in the
        // store makes each action happen once.
        tokio::spawn(escalations.run(policy_watcher.clone()));
        tokio::spawn(Arc::clone(&state.limits).run_pruning(policy_watcher.clone()));
        tokio::spawn(audit_reloads(
            state.services.policies.subscribe(),
            Arc::clone(&state.services.audit),
            policy_watcher.clone(),
        ));
        if settings.policies.watch_interval_ms > 0 {
            let handle = Arc::clone(&state.services.policies);
            let interval = Duration::from_millis(settings.policies.watch_interval_ms);
            tokio::spawn(handle.watch(interval, policy_watcher.clone()));
        }
        Ok(Self {
            port,
            server,
            state,
            policy_watcher,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A token that, once cancelled, shuts the application down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    pub fn policies(&self) -> Arc<PolicyHandle> {
        Arc::clone(&self.state.services.policies)
    }

    /// Serves until `stop` resolves or the shutdown token is cancelled, then shuts down
    /// gracefully.
    ///
    /// # Errors
    /// The HTTP server failed.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let shutdown = self.state.shutdown.clone();
        tokio::select! {
            _ = stop => {}
            _ = shutdown.cancelled() => {}
        }
        tracing::info!("shutting down: closing sockets, finishing replies");
        self.policy_watcher.cancel();
        shutdown.cancel();
        let grace = Duration::from_millis(self.state.services.settings.server.shutdown_grace_ms);
        self.state.sockets.close();
        let _ =
            tokio::time::timeout(grace + Duration::from_secs(3), self.state.sockets.wait()).await;
        handle.stop(true).await;
        if !self.state.services.audit.flush(grace).await {
            tracing::error!("audit entries could not all be stored before shutdown");
        }
        match server.await {
            Ok(result) => result.map_err(StartupError::Server),
            Err(join) => Err(StartupError::Server(std::io::Error::other(
                join.to_string(),
            ))),
        }
    }

    /// Serves until SIGTERM or Ctrl-C; reloads policies on SIGHUP.
    ///
    /// # Errors
    /// The HTTP server failed.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let policies = self.policies();
        let hangups = tokio::spawn(async move {
            #[cfg(unix)]
            if let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                while hangup.recv().await.is_some() {
                    let _ = policies.reload().await;
                }
            }
        });
        let result = self.run_until(termination()).await;
        hangups.abort();
        result
    }
}

/// Records every policy reload, whoever triggered it (file change, SIGHUP, operator).
async fn audit_reloads(
    mut outcomes: tokio::sync::broadcast::Receiver<crate::policy::reload::ReloadOutcome>,
    audit: Arc<crate::audit::Auditor>,
    stop: CancellationToken,
) {
    use crate::audit::{Action, Actor};
    use crate::policy::reload::ReloadOutcome;
    loop {
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = outcomes.recv() => outcome,
        };
        let (action, detail) = match outcome {
            Ok(ReloadOutcome::Loaded { version, previous }) => (
                Action::PolicyReload,
                serde_json::json!({"version": version, "previous": previous}),
            ),
            Ok(ReloadOutcome::Refused { error, serving }) => (
                Action::PolicyReloadRejected,
                serde_json::json!({"error": error, "serving": serving}),
            ),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => (
                Action::PolicyReload,
                serde_json::json!({"missed_records": missed}),
            ),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        audit.record(action, &Actor::system(), None, detail).await;
    }
}

async fn termination() {
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_recorder_runs_its_upkeep() {
        assert!(metrics_handle().is_some(), "the recorder is installed");
        let threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("this process's threads")
                .filter_map(Result::ok)
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread sets its own name once it runs: give it a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !threads().iter().any(|name| name == METRICS_UPKEEP_THREAD)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let seen = threads();
        assert!(
            seen.iter().any(|name| name == METRICS_UPKEEP_THREAD),
            "no upkeep thread among {seen:?}: histogram samples would pile up until a scrape"
        );
    }
}
