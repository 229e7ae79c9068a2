//! Integration tests: the real server on port 0, real WebSocket clients, real `redis-server`
//! processes and a fake OpenAI-compatible provider that streams real SSE.

mod audit;
mod auth;
mod chat;
mod early;
mod helpers;
mod limits;
mod metrics;
mod nurse;
mod policies;
mod provider;
mod store;
