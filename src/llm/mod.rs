//! Language models that stream a reply: the `ChatModel` trait, the built-in demo model, and the
//! OpenAI-compatible client. This module never decides what is safe; the guard does.

use std::pin::Pin;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use serde::Serialize;

mod demo;
mod openai;

pub use demo::DemoModel;
pub use openai::{OpenAiModel, OpenAiSetupError};

/// Who said a line of the conversation sent to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatTurn {
    pub role: Role,
    pub content: String,
}

/// What the model is asked: the system prompt and the recent conversation.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub turns: Vec<ChatTurn>,
}

impl ChatRequest {
    /// The newest patient line, if any.
    pub fn last_user_text(&self) -> Option<&str> {
        self.turns
            .iter()
            .rev()
            .find(|turn| turn.role == Role::User)
            .map(|turn| turn.content.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("could not reach the model provider: {0}")]
    Connect(String),
    #[error("the model provider answered HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("no first token within {limit_ms} ms (llm.first_token_timeout_ms)")]
    FirstTokenTimeout { limit_ms: u64 },
    #[error("no chunk for {limit_ms} ms mid-reply (llm.chunk_gap_timeout_ms)")]
    ChunkGapTimeout { limit_ms: u64 },
    #[error("the reply took longer than {limit_ms} ms (llm.reply_timeout_ms)")]
    ReplyTimeout { limit_ms: u64 },
    #[error("the model provider sent a chunk we could not read: {0}")]
    BadChunk(String),
    #[error("the stream from the model provider broke: {0}")]
    Stream(String),
    #[error("the model provider is failing; calls are paused for {remaining_ms} ms")]
    CircuitOpen { remaining_ms: u64 },
    #[error(
        "too many replies are streaming on this server; none finished within {waited_ms} ms (rate_limits.max_model_streams)"
    )]
    Busy { waited_ms: u64 },
}

impl LlmError {
    /// Whether trying again (before the patient saw any text) may succeed. HTTP 429 and 5xx are
    /// not: the OpenAI client already retried them with backoff (honouring `Retry-After`), and
    /// retrying on top would multiply the patient's wait before the fallback.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::FirstTokenTimeout { .. } | Self::Stream(_) => true,
            Self::Status { .. }
            | Self::ChunkGapTimeout { .. }
            | Self::ReplyTimeout { .. }
            | Self::BadChunk(_)
            | Self::CircuitOpen { .. }
            | Self::Busy { .. } => false,
        }
    }

    /// A low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Status { .. } => "status",
            Self::FirstTokenTimeout { .. } => "first_token_timeout",
            Self::ChunkGapTimeout { .. } => "chunk_gap_timeout",
            Self::ReplyTimeout { .. } => "reply_timeout",
            Self::BadChunk(_) => "bad_chunk",
            Self::Stream(_) => "stream",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Busy { .. } => "busy",
        }
    }
}

/// A reply as it streams: pieces of text, or the error that ended it.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

/// A model that streams a reply to a conversation.
pub trait ChatModel: Send + Sync + 'static {
    /// Starts a reply. The future resolves once the provider accepted the request; dropping the
    /// stream cancels the upstream request.
    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>>;
}
