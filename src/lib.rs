//! Carebridge: the safety layer between a patient and a language model.
//!
//! * `config`: settings from defaults, an optional file and `CAREBRIDGE_*` variables.
//! * `protocol`: the only frames we accept and send on the WebSockets.
//! * `policy`: policy files, normalisation, context-aware matching, decisions, tests, hot reload.
//! * `guard`: output rules applied to a streamed model reply with a small hold-back window.
//! * `llm`: the `ChatModel` trait, the OpenAI-compatible client and the built-in demo model.
//! * `limits`: message and connection rates, sockets per user, concurrent model streams.
//! * `escalation`: the nurse queue (raise, claim, take over, reply, hand back, re-alert).
//! * `session`: the conversation as an ordered log of events, its mode, resume.
//! * `store`: where sessions live (`MemoryStore` embedded, `RedisStore` in production).
//! * `api`: HTTP routes and the per-socket loops.
//! * `audit`: the hash-chained audit trail of decisions, escalation steps and admin actions.
//! * `startup`: builds the application from settings and runs it until stopped.

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod escalation;
pub mod guard;
pub mod limits;
pub mod llm;
pub mod policy;
pub mod prompts;
pub mod protocol;
pub mod redact;
pub mod session;
pub mod startup;
pub mod store;
