//! The conversation: an ordered log of events with one sequence number per session.
//!
//! Everything the patient saw is an event; a reconnecting client asks for the events after the
//! last sequence number it has and gets each exactly once, in order.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::Severity;

pub mod conversation;
pub mod tail;
pub mod turns;

/// A session's id: 32 lower-case hex characters (a random UUID without dashes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// # Errors
    /// Anything but 32 lower-case hex characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidSessionId> {
        let valid = raw.len() == 32
            && raw
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidSessionId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidSessionId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("session_id must be 32 lower-case hex characters")]
pub struct InvalidSessionId;

/// Who is answering the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Ai,
    WaitingForNurse,
    Nurse,
    Closed,
}

impl Mode {
    /// Whether the model answers the patient: not while a nurse holds the conversation or after
    /// it is closed (waiting for a nurse, the model still answers).
    pub fn model_answers(self) -> bool {
        !matches!(self, Self::Nurse | Self::Closed)
    }
}

/// One entry of a session's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEvent {
    PatientMessage {
        client_id: String,
        text: String,
    },
    /// A policy flagged a patient message; `guidance` is what the patient was shown.
    Alert {
        severity: Severity,
        rule: String,
        guidance: String,
        /// The matched text, for the nurse who reads the transcript.
        #[serde(default)]
        span: String,
        #[serde(default)]
        escalate: bool,
    },
    AssistantMessage {
        message_id: String,
        text: String,
        /// Set when an output rule replaced part of the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced_by: Option<String>,
    },
    NurseMessage {
        nurse: String,
        text: String,
    },
    ModeChanged {
        mode: Mode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

/// An event with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: SessionEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_round_trip_and_reject_garbage() {
        let id = SessionId::random();
        assert!(SessionId::parse(id.as_str()).is_ok());
        assert!(SessionId::parse("../etc/passwd").is_err());
        assert!(SessionId::parse(&"A".repeat(32)).is_err());
    }
}
