//! Settings: built-in defaults < `carebridge.toml` (optional) < `CAREBRIDGE_*` environment.
//!
//! The defaults are a complete, working configuration: memory store, demo model, shipped
//! policies. A bad value stops start-up with a message that names the key; nothing falls back
//! silently. Environment keys use `__` between levels: `CAREBRIDGE_SERVER__PORT=9000`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::prompts::Region;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub limits: LimitSettings,
    pub llm: LlmSettings,
    pub store: StoreSettings,
    pub policies: PolicySettings,
    pub auth: AuthSettings,
    pub escalation: crate::escalation::EscalationSettings,
    pub audit: crate::audit::AuditSettings,
    pub rate_limits: crate::limits::RateSettings,
    /// `production` refuses development key material.
    pub environment: crate::auth::Environment,
    /// Decides the emergency and crisis numbers patients are told.
    pub region: Region,
    /// Where `prompts/` lives.
    pub prompts_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// How often the server pings each socket.
    pub heartbeat_interval_ms: u64,
    /// A socket silent for this long (no frame, no pong) is closed.
    pub client_timeout_ms: u64,
    /// On shutdown, how long in-flight replies may take to finish.
    pub shutdown_grace_ms: u64,
    /// Browser origins allowed to open sockets (`https://app.example.org`; `*` for any). Empty:
    /// only pages served by Carebridge itself (the Origin's host equals the Host header).
    /// Clients that send no Origin (apps, servers) are not browsers and are let through to the
    /// token check.
    pub allowed_origins: Vec<String>,
    /// HTTP and WebSocket worker threads; 0 means one per CPU the process may use. A pod with a
    /// CPU limit should set its limit here: more threads than cores only adds wake-ups.
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest text frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Longest patient message, in bytes.
    pub max_message_bytes: usize,
    /// Invalid frames within `error_window_ms` before the socket is closed.
    pub max_errors: u32,
    pub error_window_ms: u64,
    /// Messages a session may hold before it must be continued in a new one.
    pub max_conversation_events: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The built-in, offline demo model.
    Demo,
    /// Any OpenAI-compatible chat completions API.
    Openai,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub provider: Provider,
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself is never in config).
    pub api_key_env: String,
    /// Or a file holding the key (a mounted secret).
    pub api_key_file: Option<PathBuf>,
    /// Pause between words of the demo model.
    pub demo_word_delay_ms: u64,
    pub connect_timeout_ms: u64,
    pub first_token_timeout_ms: u64,
    pub chunk_gap_timeout_ms: u64,
    pub reply_timeout_ms: u64,
    /// After the patient's socket goes away mid-reply, how long the reply may go on (stored for
    /// a resume) before the upstream request is cancelled.
    pub detached_reply_ms: u64,
    /// Attempts before the first token reaches the patient.
    pub max_attempts: u32,
    /// Failures in a row that open the circuit breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// How many recent conversation events are sent to the model, and their character budget.
    pub history_events: usize,
    pub history_chars: usize,
    /// `external` providers get identifiers replaced by placeholders (`redaction_file` says
    /// which); `trusted` ones (a self-hosted model inside the network) get the text as is.
    pub trust: ProviderTrust,
    pub redaction_file: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderTrust {
    External,
    Trusted,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    /// One `redis://` URL; with `redis_cluster`, a comma-separated list of seed nodes.
    pub redis_url: String,
    /// Talk to a Redis Cluster (slots, redirections) instead of a single server.
    pub redis_cluster: bool,
    /// Seconds a closed session is kept.
    pub retention_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    pub dir: PathBuf,
    /// How often the directory is checked for changes (0 turns polling off).
    pub watch_interval_ms: u64,
    /// How many earlier patient messages count for rules with `window = "conversation"`.
    pub window_messages: usize,
}

pub use crate::auth::AuthSettings;

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            limits: LimitSettings::default(),
            llm: LlmSettings::default(),
            store: StoreSettings::default(),
            policies: PolicySettings::default(),
            auth: AuthSettings::default(),
            escalation: crate::escalation::EscalationSettings::default(),
            audit: crate::audit::AuditSettings::default(),
            rate_limits: crate::limits::RateSettings::default(),
            environment: crate::auth::Environment::Development,
            region: Region::Uk,
            prompts_dir: PathBuf::from("prompts"),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            heartbeat_interval_ms: 5_000,
            client_timeout_ms: 15_000,
            shutdown_grace_ms: 10_000,
            allowed_origins: Vec::new(),
            workers: 0,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 * 1024,
            max_message_bytes: 8 * 1024,
            max_errors: 10,
            error_window_ms: 10_000,
            max_conversation_events: 2_000,
        }
    }
}

impl LlmSettings {
    /// How many of a session's latest events are read to build a request: twice the lines sent,
    /// which leaves room for the mode changes that are not sent.
    pub fn events_to_read(&self) -> usize {
        self.history_events.saturating_mul(2)
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            provider: Provider::Demo,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            api_key_file: None,
            demo_word_delay_ms: 30,
            connect_timeout_ms: 5_000,
            first_token_timeout_ms: 15_000,
            chunk_gap_timeout_ms: 10_000,
            reply_timeout_ms: 60_000,
            detached_reply_ms: 5_000,
            max_attempts: 2,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            temperature: None,
            max_tokens: None,
            history_events: 20,
            history_chars: 12_000,
            trust: ProviderTrust::External,
            redaction_file: PathBuf::from("policies/redaction.toml"),
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster: false,
            retention_secs: 30 * 24 * 3600,
        }
    }
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            watch_interval_ms: 2_000,
            window_messages: 6,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: {key} ({value}) {problem}")]
    Invalid {
        key: &'static str,
        value: String,
        problem: String,
    },
}

impl Settings {
    /// Reads defaults, then `file` (if it exists), then `CAREBRIDGE_*` variables, and validates.
    ///
    /// # Errors
    /// Unknown keys, wrong types (the message names the key), and values that fail validation.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file = file
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("carebridge.toml"));
        figment = figment.merge(Toml::file(file));
        figment = figment.merge(Env::prefixed("CAREBRIDGE_").split("__"));
        let settings: Settings = figment
            .extract()
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values and their relations.
    ///
    /// # Errors
    /// The first problem found, naming the key and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, value: String, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                value,
                problem: problem.to_owned(),
            })
        };
        if self.limits.max_message_bytes == 0 {
            return invalid("limits.max_message_bytes", "0".into(), "must be above 0");
        }
        if self.limits.max_message_bytes > self.limits.max_frame_bytes {
            return invalid(
                "limits.max_message_bytes",
                self.limits.max_message_bytes.to_string(),
                &format!(
                    "exceeds limits.max_frame_bytes ({})",
                    self.limits.max_frame_bytes
                ),
            );
        }
        if self.server.client_timeout_ms <= self.server.heartbeat_interval_ms {
            return invalid(
                "server.client_timeout_ms",
                self.server.client_timeout_ms.to_string(),
                &format!(
                    "must exceed server.heartbeat_interval_ms ({})",
                    self.server.heartbeat_interval_ms
                ),
            );
        }
        if self.llm.first_token_timeout_ms > self.llm.reply_timeout_ms {
            return invalid(
                "llm.first_token_timeout_ms",
                self.llm.first_token_timeout_ms.to_string(),
                &format!(
                    "exceeds llm.reply_timeout_ms ({})",
                    self.llm.reply_timeout_ms
                ),
            );
        }
        if self.llm.max_attempts == 0 {
            return invalid("llm.max_attempts", "0".into(), "must be at least 1");
        }
        if self.llm.provider == Provider::Openai && !self.llm.base_url.starts_with("http") {
            return invalid(
                "llm.base_url",
                self.llm.base_url.clone(),
                "must be an http(s) URL",
            );
        }
        if self.store.backend == StoreBackend::Redis && !self.store.redis_url.starts_with("redis") {
            return invalid(
                "store.redis_url",
                self.store.redis_url.clone(),
                "must be a redis:// URL",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn errors_name_the_key_and_its_value() {
        let mut settings = Settings::default();
        settings.llm.first_token_timeout_ms = 30_000;
        settings.llm.reply_timeout_ms = 20_000;
        let message = settings.validate().expect_err("invalid").to_string();
        assert!(
            message.contains(
                "llm.first_token_timeout_ms (30000) exceeds llm.reply_timeout_ms (20000)"
            )
        );
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("carebridge.toml");
        std::fs::write(&path, "[server]\nport = 9000\n").expect("write");
        let settings = Settings::load(Some(&path)).expect("loads");
        assert_eq!(settings.server.port, 9000);
        std::fs::write(&path, "[server]\nprot = 9000\n").expect("write");
        let error = Settings::load(Some(&path))
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("prot"), "{error}");
    }
}
