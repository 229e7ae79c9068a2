//! The OpenAI-compatible client (async-openai, any base URL): OpenAI, Azure OpenAI's compatible
//! endpoint, vLLM, Ollama, llama.cpp server and the like.
//!
//! Requests are sent as plain JSON through async-openai's "bring your own types" calls, so
//! provider-specific options pass through untouched. A circuit breaker stops calling a provider
//! that keeps failing, for a while, so patients get the fallback text at once instead of waiting
//! for every timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};

use super::{ChatModel, ChatRequest, LlmError, TokenStream};
use crate::config::LlmSettings;

pub struct OpenAiModel {
    config: OpenAIConfig,
    connect_timeout: Duration,
    /// An HTTP client per server thread that calls the provider. A connection's driver task runs
    /// on the thread that opened it; with one shared pool, a reply streamed on another thread
    /// crossed threads twice per chunk (the body channel wakes the reader, the reader wakes the
    /// driver for more), and each crossing is a wake-up that waits for a busy core.
    per_thread: Mutex<HashMap<ThreadId, Arc<Client<OpenAIConfig>>>>,
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    breaker: std::sync::Arc<Breaker>,
}

/// Opens after `threshold` failures in a row and stays open for `open_for`.
struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn check(&self) -> Result<(), LlmError> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.open_until {
            Some(until) if until > Instant::now() => Err(LlmError::CircuitOpen {
                remaining_ms: u64::try_from((until - Instant::now()).as_millis())
                    .unwrap_or(u64::MAX),
            }),
            _ => Ok(()),
        }
    }

    fn record(&self, success: bool) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if success {
            state.failures = 0;
            state.open_until = None;
        } else {
            state.failures += 1;
            if state.failures >= self.threshold {
                state.open_until = Some(Instant::now() + self.open_for);
                metrics::counter!("carebridge_provider_breaker_opened_total").increment(1);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenAiSetupError {
    #[error("the API key environment variable `{0}` is not set (llm.api_key_env)")]
    MissingKey(String),
    #[error("cannot read the API key file {path} (llm.api_key_file): {source}")]
    KeyFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl OpenAiModel {
    /// # Errors
    /// No API key where the settings say it is, or an HTTP client that cannot be built.
    pub fn new(settings: &LlmSettings) -> Result<Self, OpenAiSetupError> {
        let key = match &settings.api_key_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| OpenAiSetupError::KeyFile {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
            None => std::env::var(&settings.api_key_env).unwrap_or_default(),
        };
        // Self-hosted servers often need no key; an empty one is sent as such.
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(key);
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        // Built once here so that a client that cannot be built stops start-up, not a turn.
        let first = http_client(connect_timeout)?;
        let per_thread = HashMap::from([(
            std::thread::current().id(),
            Arc::new(Client::with_config(config.clone()).with_http_client(first)),
        )]);
        Ok(Self {
            config,
            connect_timeout,
            per_thread: Mutex::new(per_thread),
            model: settings.model.clone(),
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            breaker: std::sync::Arc::new(Breaker {
                threshold: settings.breaker_failures.max(1),
                open_for: Duration::from_millis(settings.breaker_open_ms),
                state: Mutex::new(BreakerState::default()),
            }),
        })
    }

    /// This thread's client, built on first use. The map holds one entry per server thread.
    fn client(&self) -> Result<Arc<Client<OpenAIConfig>>, LlmError> {
        let mut clients = self
            .per_thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let thread = std::thread::current().id();
        if let Some(client) = clients.get(&thread) {
            return Ok(Arc::clone(client));
        }
        let http = http_client(self.connect_timeout)
            .map_err(|error| LlmError::Connect(error.to_string()))?;
        let client = Arc::new(Client::with_config(self.config.clone()).with_http_client(http));
        clients.insert(thread, Arc::clone(&client));
        Ok(client)
    }
}

fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, OpenAiSetupError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|error| OpenAiSetupError::Http(error.to_string()))
}

/// The request body, serialised straight from the conversation (no intermediate JSON tree).
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [super::ChatTurn],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

/// One streamed chunk, reading only what we use.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Debug, Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

fn convert(error: OpenAIError) -> LlmError {
    match error {
        OpenAIError::ApiError(response) => LlmError::Status {
            status: response.status_code.as_u16(),
            detail: response.api_error.message.chars().take(200).collect(),
        },
        OpenAIError::Reqwest(error) if error.is_connect() || error.is_timeout() => {
            LlmError::Connect(error.to_string())
        }
        OpenAIError::Reqwest(error) => match error.status() {
            Some(status) => LlmError::Status {
                status: status.as_u16(),
                detail: error.to_string(),
            },
            None => LlmError::Stream(error.to_string()),
        },
        OpenAIError::JSONDeserialize(error, _) => LlmError::BadChunk(error.to_string()),
        OpenAIError::StreamError(error) => {
            let text = error.to_string();
            // eventsource reports a non-2xx answer as an invalid status code.
            match text
                .split("Invalid status code: ")
                .nth(1)
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse().ok())
            {
                Some(status) => LlmError::Status {
                    status,
                    detail: text,
                },
                None => LlmError::Stream(text),
            }
        }
        other => LlmError::Stream(other.to_string()),
    }
}

impl ChatModel for OpenAiModel {
    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        async move {
            self.breaker.check()?;
            let body = Body {
                model: &self.model,
                messages: &request.turns,
                stream: true,
                temperature: self.temperature,
                max_tokens: self.max_tokens,
            };
            let client = self.client()?;
            let opened = client.chat().create_stream_byot::<_, Chunk>(body).await;
            let stream = match opened {
                Ok(stream) => stream,
                Err(error) => {
                    self.breaker.record(false);
                    return Err(convert(error));
                }
            };
            let breaker = std::sync::Arc::clone(&self.breaker);
            let mut recorded = false;
            let tokens = stream.filter_map(move |item| {
                let piece = match item {
                    Ok(chunk) => {
                        if !recorded {
                            breaker.record(true);
                            recorded = true;
                        }
                        let text: String = chunk
                            .choices
                            .into_iter()
                            .filter_map(|choice| choice.delta.content)
                            .collect();
                        (!text.is_empty()).then_some(Ok(text))
                    }
                    Err(error) => {
                        breaker.record(false);
                        Some(Err(convert(error)))
                    }
                };
                std::future::ready(piece)
            });
            Ok(Box::pin(tokens) as TokenStream)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_streams_through_a_client_of_its_own() {
        let model = OpenAiModel::new(&LlmSettings::default()).expect("a client with defaults");
        let here = model.client().expect("this thread's client");
        let again = model.client().expect("this thread's client again");
        assert!(Arc::ptr_eq(&here, &again), "one client per thread, kept");
        let there = std::thread::scope(|scope| {
            scope
                .spawn(|| model.client().expect("another thread's client"))
                .join()
                .expect("the other thread finished")
        });
        assert!(!Arc::ptr_eq(&here, &there), "another thread gets its own");
    }
}
