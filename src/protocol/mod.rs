//! The wire protocol of `/v1/chat`: JSON text frames tagged by `type` (see `docs/protocol.md`).
//!
//! Client frames are parsed here and nowhere else; from then on the typed values are the proof
//! that a frame was well formed and within its limits.

use serde::{Deserialize, Serialize};

use crate::policy::Severity;
use crate::session::{SessionEvent, SessionId};

/// Version of the protocol described in `docs/protocol.md`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest client message id we accept, in bytes.
const MAX_CLIENT_ID_BYTES: usize = 64;

/// A frame a patient's client may send.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Start a new session (or join one with `session_id`, for the same patient).
    Hello {
        #[serde(default)]
        session_id: Option<SessionId>,
    },
    /// Reconnect: replay every event after `last_seq`, then continue live.
    Resume {
        session_id: SessionId,
        last_seq: u64,
    },
    /// A patient message, identified by the client so that a retry is not stored twice.
    Message { client_id: ClientId, text: String },
    /// Application-level keep-alive.
    Ping {},
}

/// The client's own id for a message; a retry with the same id is the same message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// # Errors
    /// Empty ids, ids longer than 64 bytes and ids with control characters are refused.
    pub fn parse(raw: &str) -> Result<Self, FrameError> {
        if raw.is_empty() || raw.len() > MAX_CLIENT_ID_BYTES || raw.chars().any(char::is_control) {
            return Err(FrameError::BadClientId);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Patient text that passed the size and emptiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientText(String);

impl PatientText {
    /// # Errors
    /// Empty (or blank) text and text over `max_bytes` are refused.
    pub fn parse(raw: String, max_bytes: usize) -> Result<Self, FrameError> {
        if raw.trim().is_empty() {
            return Err(FrameError::EmptyMessage);
        }
        if raw.len() > max_bytes {
            return Err(FrameError::MessageTooLong {
                length: raw.len(),
                limit: max_bytes,
            });
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Why a client frame was refused. Each variant has a stable wire code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes; send a shorter message")]
    FrameTooLarge { length: usize, limit: usize },
    #[error("message of {length} bytes exceeds the limit of {limit} bytes; send a shorter message")]
    MessageTooLong { length: usize, limit: usize },
    #[error("message text is empty")]
    EmptyMessage,
    #[error("client_id must be 1 to 64 characters without control characters")]
    BadClientId,
    #[error("frame is not valid JSON: {0}")]
    Malformed(String),
    #[error("unknown frame type `{0}`; see docs/protocol.md for the frames this server accepts")]
    UnknownType(String),
    #[error("frame is missing or has a wrong field: {0}")]
    BadField(String),
    #[error("binary frames are not accepted; send JSON text frames")]
    Binary,
}

impl FrameError {
    /// The stable code sent in the `error` frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLong { .. } => ErrorCode::TooLarge,
            Self::EmptyMessage | Self::BadClientId | Self::BadField(_) => ErrorCode::InvalidFrame,
            Self::Malformed(_) => ErrorCode::Malformed,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::Binary => ErrorCode::BinaryNotSupported,
        }
    }
}

const KNOWN_TYPES: [&str; 4] = ["hello", "resume", "message", "ping"];

/// Parses one text frame, checking its size before looking inside it.
///
/// # Errors
/// Oversized, malformed, unknown and invalid frames, each with its own [`FrameError`].
pub fn parse_client_frame(raw: &str, max_frame_bytes: usize) -> Result<ClientFrame, FrameError> {
    if raw.len() > max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            length: raw.len(),
            limit: max_frame_bytes,
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|error| FrameError::Malformed(error.to_string()))?;
    let kind = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| FrameError::BadField("`type` must be a string".into()))?;
    if !KNOWN_TYPES.contains(&kind) {
        let shown: String = kind.chars().take(32).collect();
        return Err(FrameError::UnknownType(shown));
    }
    let frame: ClientFrame =
        serde_json::from_value(value).map_err(|error| FrameError::BadField(error.to_string()))?;
    if let ClientFrame::Message { client_id, .. } = &frame {
        ClientId::parse(client_id.as_str())?;
    }
    Ok(frame)
}

/// Stable error codes; clients switch on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    TooLarge,
    InvalidFrame,
    Malformed,
    UnknownType,
    BinaryNotSupported,
    NoSession,
    SessionNotFound,
    Forbidden,
    Unavailable,
    RateLimited,
    Internal,
}

/// A frame the server sends to a patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        session_id: SessionId,
        protocol: u32,
        /// The last sequence number stored for this session.
        last_seq: u64,
    },
    Ack {
        client_id: ClientId,
        seq: u64,
    },
    /// Safety guidance sent as soon as a message is flagged, before the model says anything.
    Alert {
        seq: u64,
        severity: Severity,
        rule: String,
        guidance: String,
    },
    /// A piece of the assistant's streaming reply.
    Delta {
        message_id: String,
        text: String,
    },
    /// The reply finished; its full text is stored at `seq`.
    Done {
        message_id: String,
        seq: u64,
    },
    /// The rest of the reply was replaced by a policy's safe text.
    Replaced {
        message_id: String,
        seq: u64,
        text: String,
        rule: String,
    },
    /// A nurse has taken over the conversation; the model is silent until it is handed back.
    NurseJoined {
        seq: u64,
    },
    /// A message from the nurse.
    NurseMessage {
        seq: u64,
        text: String,
    },
    /// The nurse handed the conversation back to the assistant (or to the queue), with a note.
    HandedBack {
        seq: u64,
        note: Option<String>,
    },
    /// The conversation was closed by the nurse.
    Closed {
        seq: u64,
        note: Option<String>,
    },
    /// A stored event, sent on resume (and for events from other replicas, such as a nurse).
    Event {
        seq: u64,
        event: SessionEvent,
    },
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong,
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            retryable: matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited),
            retry_after_ms: None,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising our own frames cannot fail: every field is a string, number or enum.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"frame encoding failed","retryable":true}"#
                .to_owned()
        })
    }
}

/// WebSocket close codes this server uses (RFC 6455 and the private 4000–4999 range).
pub mod close_code {
    /// The server is shutting down; reconnect (to any replica) and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// The client sent too many invalid frames.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// No frame or pong within the heartbeat timeout.
    pub const TIMED_OUT: u16 = 4000;
    /// The token expired; authenticate again, then resume.
    pub const TOKEN_EXPIRED: u16 = 4001;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_frame_parses() {
        let frame = parse_client_frame(
            r#"{"type":"message","client_id":"c1","text":"hello"}"#,
            1024,
        );
        assert_eq!(
            frame,
            Ok(ClientFrame::Message {
                client_id: ClientId("c1".into()),
                text: "hello".into()
            })
        );
    }

    #[test]
    fn unknown_types_and_fields_have_their_own_codes() {
        let unknown = parse_client_frame(r#"{"type":"shout"}"#, 1024);
        assert_eq!(unknown.map_err(|e| e.code()), Err(ErrorCode::UnknownType));
        let extra = parse_client_frame(r#"{"type":"ping","x":1}"#, 1024);
        assert_eq!(extra.map_err(|e| e.code()), Err(ErrorCode::InvalidFrame));
        let broken = parse_client_frame("{", 1024);
        assert_eq!(broken.map_err(|e| e.code()), Err(ErrorCode::Malformed));
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let big = format!(
            r#"{{"type":"message","client_id":"c","text":"{}"}}"#,
            "a".repeat(100)
        );
        assert!(matches!(
            parse_client_frame(&big, 50),
            Err(FrameError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn client_ids_are_bounded() {
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse(&"x".repeat(65)).is_err());
        assert!(ClientId::parse("a\nb").is_err());
        assert!(ClientId::parse("msg-1").is_ok());
    }
}

/// Frames of the nurse console's WebSocket, `/v1/nurse` (see `docs/protocol.md`).
pub mod nurse {
    use serde::{Deserialize, Serialize};

    use crate::escalation::{Escalation, Outcome};
    use crate::session::{SessionId, StoredEvent};

    /// What a nurse's console may send.
    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    pub enum NurseFrame {
        /// Ask for the queue again (it is also pushed on every change).
        Queue {},
        /// The whole conversation with each flag's reason; live events follow.
        Transcript {
            session_id: SessionId,
        },
        Claim {
            session_id: SessionId,
        },
        TakeOver {
            session_id: SessionId,
        },
        Reply {
            session_id: SessionId,
            text: String,
        },
        /// Back to the assistant with a note for the patient.
        HandBack {
            session_id: SessionId,
            outcome: Outcome,
            #[serde(default)]
            note: Option<String>,
        },
        /// Back to the queue, at its original place.
        Release {
            session_id: SessionId,
        },
        /// End the conversation.
        Close {
            session_id: SessionId,
            outcome: Outcome,
            #[serde(default)]
            note: Option<String>,
        },
        Ping {},
    }

    /// What the server sends a nurse.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum NurseServerFrame {
        /// The open escalations, in queue order, with how long each has waited.
        Queue {
            items: Vec<QueueItem>,
        },
        Transcript {
            session_id: SessionId,
            events: Vec<StoredEvent>,
        },
        /// A new event in a conversation this console follows.
        SessionEvent {
            session_id: SessionId,
            event: StoredEvent,
        },
        /// An action succeeded.
        Done {
            action: String,
            session_id: SessionId,
        },
        Error {
            code: String,
            message: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            session_id: Option<SessionId>,
        },
        Pong,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct QueueItem {
        #[serde(flatten)]
        pub escalation: Escalation,
        pub waiting_ms: u64,
    }

    impl NurseServerFrame {
        pub fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| {
                r#"{"type":"error","code":"internal","message":"frame encoding failed"}"#.to_owned()
            })
        }
    }
}
