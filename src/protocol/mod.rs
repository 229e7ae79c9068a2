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
    use proptest::prelude::*;

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

    /// The `type` tag each client frame must carry; the match fails to compile when a variant is
    /// added, so the generators below are extended with it.
    fn client_type(frame: &ClientFrame) -> &'static str {
        match frame {
            ClientFrame::Hello { .. } => "hello",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Message { .. } => "message",
            ClientFrame::Ping {} => "ping",
        }
    }

    /// As [`client_type`], for the frames we send.
    fn server_type(frame: &ServerFrame) -> &'static str {
        match frame {
            ServerFrame::Welcome { .. } => "welcome",
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Alert { .. } => "alert",
            ServerFrame::Delta { .. } => "delta",
            ServerFrame::Done { .. } => "done",
            ServerFrame::Replaced { .. } => "replaced",
            ServerFrame::NurseJoined { .. } => "nurse_joined",
            ServerFrame::NurseMessage { .. } => "nurse_message",
            ServerFrame::HandedBack { .. } => "handed_back",
            ServerFrame::Closed { .. } => "closed",
            ServerFrame::Event { .. } => "event",
            ServerFrame::Error { .. } => "error",
            ServerFrame::Pong => "pong",
        }
    }

    /// Any characters, controls included (`any::<String>()` draws only from `\PC`).
    fn any_text() -> impl Strategy<Value = String> + Clone {
        proptest::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter)
    }

    fn session_id() -> impl Strategy<Value = SessionId> {
        "[0-9a-f]{32}".prop_map(|raw| SessionId::parse(&raw).expect("32 lower-case hex digits"))
    }

    /// Any id [`ClientId::parse`] accepts: 1 to 16 non-control characters are at most 64 bytes.
    fn client_id() -> impl Strategy<Value = ClientId> {
        proptest::collection::vec(
            any::<char>().prop_filter("no controls", |c| !c.is_control()),
            1..=16,
        )
        .prop_map(|chars| ClientId::parse(&String::from_iter(chars)).expect("a valid id"))
    }

    fn client_frame() -> impl Strategy<Value = ClientFrame> {
        prop_oneof![
            proptest::option::of(session_id())
                .prop_map(|session_id| ClientFrame::Hello { session_id }),
            (session_id(), any::<u64>()).prop_map(|(session_id, last_seq)| ClientFrame::Resume {
                session_id,
                last_seq
            }),
            (client_id(), any_text())
                .prop_map(|(client_id, text)| ClientFrame::Message { client_id, text }),
            Just(ClientFrame::Ping {}),
        ]
    }

    fn severity() -> impl Strategy<Value = Severity> {
        prop_oneof![
            Just(Severity::Routine),
            Just(Severity::Urgent),
            Just(Severity::Emergency)
        ]
    }

    fn error_code() -> impl Strategy<Value = ErrorCode> {
        proptest::sample::select(vec![
            ErrorCode::TooLarge,
            ErrorCode::InvalidFrame,
            ErrorCode::Malformed,
            ErrorCode::UnknownType,
            ErrorCode::BinaryNotSupported,
            ErrorCode::NoSession,
            ErrorCode::SessionNotFound,
            ErrorCode::Forbidden,
            ErrorCode::Unavailable,
            ErrorCode::RateLimited,
            ErrorCode::Internal,
        ])
    }

    fn session_event() -> impl Strategy<Value = SessionEvent> {
        use crate::session::Mode;
        let text = any_text();
        prop_oneof![
            (text.clone(), text.clone())
                .prop_map(|(client_id, text)| SessionEvent::PatientMessage { client_id, text }),
            (
                severity(),
                text.clone(),
                text.clone(),
                text.clone(),
                any::<bool>()
            )
                .prop_map(|(severity, rule, guidance, span, escalate)| {
                    SessionEvent::Alert {
                        severity,
                        rule,
                        guidance,
                        span,
                        escalate,
                    }
                }),
            (
                text.clone(),
                text.clone(),
                proptest::option::of(text.clone())
            )
                .prop_map(|(message_id, text, replaced_by)| {
                    SessionEvent::AssistantMessage {
                        message_id,
                        text,
                        replaced_by,
                    }
                }),
            (text.clone(), text.clone())
                .prop_map(|(nurse, text)| SessionEvent::NurseMessage { nurse, text }),
            (
                proptest::sample::select(vec![
                    Mode::Ai,
                    Mode::WaitingForNurse,
                    Mode::Nurse,
                    Mode::Closed
                ]),
                proptest::option::of(text)
            )
                .prop_map(|(mode, note)| SessionEvent::ModeChanged { mode, note }),
        ]
    }

    fn server_frame() -> impl Strategy<Value = ServerFrame> {
        let text = any_text();
        let seq = any::<u64>();
        prop_oneof![
            (session_id(), any::<u32>(), seq).prop_map(|(session_id, protocol, last_seq)| {
                ServerFrame::Welcome {
                    session_id,
                    protocol,
                    last_seq,
                }
            }),
            (client_id(), seq).prop_map(|(client_id, seq)| ServerFrame::Ack { client_id, seq }),
            (seq, severity(), text.clone(), text.clone()).prop_map(
                |(seq, severity, rule, guidance)| ServerFrame::Alert {
                    seq,
                    severity,
                    rule,
                    guidance,
                }
            ),
            (text.clone(), text.clone())
                .prop_map(|(message_id, text)| ServerFrame::Delta { message_id, text }),
            (text.clone(), seq).prop_map(|(message_id, seq)| ServerFrame::Done { message_id, seq }),
            (text.clone(), seq, text.clone(), text.clone()).prop_map(
                |(message_id, seq, text, rule)| ServerFrame::Replaced {
                    message_id,
                    seq,
                    text,
                    rule,
                }
            ),
            seq.prop_map(|seq| ServerFrame::NurseJoined { seq }),
            (seq, text.clone()).prop_map(|(seq, text)| ServerFrame::NurseMessage { seq, text }),
            (seq, proptest::option::of(text.clone()))
                .prop_map(|(seq, note)| ServerFrame::HandedBack { seq, note }),
            (seq, proptest::option::of(text.clone()))
                .prop_map(|(seq, note)| ServerFrame::Closed { seq, note }),
            (seq, session_event()).prop_map(|(seq, event)| ServerFrame::Event { seq, event }),
            (
                error_code(),
                text,
                any::<bool>(),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(code, message, retryable, retry_after_ms)| {
                    ServerFrame::Error {
                        code,
                        message,
                        retryable,
                        retry_after_ms,
                    }
                }),
            Just(ServerFrame::Pong),
        ]
    }

    /// A JSON string literal, with non-ASCII characters as `\u` escapes when `escape` is set.
    fn json_string(raw: &str, escape: bool) -> String {
        let plain = serde_json::to_string(raw).expect("a string serialises");
        if !escape {
            return plain;
        }
        let mut out = String::with_capacity(plain.len());
        for ch in plain.chars() {
            if ch.is_ascii() {
                out.push(ch);
            } else {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    #[test]
    fn a_frame_exactly_at_the_limit_parses() {
        let raw = r#"{"type":"ping"}"#;
        assert_eq!(parse_client_frame(raw, raw.len()), Ok(ClientFrame::Ping {}));
        assert_eq!(
            parse_client_frame(raw, raw.len() - 1),
            Err(FrameError::FrameTooLarge {
                length: raw.len(),
                limit: raw.len() - 1
            })
        );
    }

    proptest! {
        #[test]
        fn every_client_frame_round_trips(frame in client_frame()) {
            let json = serde_json::to_string(&frame).expect("a client frame serialises");
            let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            prop_assert_eq!(value.get("type").and_then(serde_json::Value::as_str), Some(client_type(&frame)));
            prop_assert_eq!(parse_client_frame(&json, json.len()), Ok(frame));
        }

        #[test]
        fn a_client_frame_over_the_limit_is_refused_by_size(frame in client_frame(), short in 1usize..64) {
            let json = serde_json::to_string(&frame).expect("a client frame serialises");
            let limit = json.len().saturating_sub(short);
            prop_assert_eq!(
                parse_client_frame(&json, limit),
                Err(FrameError::FrameTooLarge { length: json.len(), limit })
            );
        }

        #[test]
        fn hand_written_message_frames_parse_to_their_fields(
            client_id in client_id(),
            text in any_text(),
            type_first in any::<bool>(),
            escape in any::<bool>(),
            space in "[ \t\r\n]{0,3}",
        ) {
            let fields = [
                format!("{space}\"type\"{space}:{space}\"message\""),
                format!("\"client_id\":{space}{}", json_string(client_id.as_str(), escape)),
                format!("\"text\"{space}:{}{space}", json_string(&text, escape)),
            ];
            let body = if type_first {
                fields.join(",")
            } else {
                format!("{},{},{}", fields[2], fields[1], fields[0])
            };
            let raw = format!("{space}{{{body}}}{space}");
            prop_assert_eq!(
                parse_client_frame(&raw, 1 << 20),
                Ok(ClientFrame::Message { client_id, text })
            );
        }

        #[test]
        fn any_string_is_parsed_or_refused_without_panicking(raw in any_text(), limit in 0usize..96) {
            let result = parse_client_frame(&raw, limit);
            if raw.len() > limit {
                prop_assert_eq!(result, Err(FrameError::FrameTooLarge { length: raw.len(), limit }));
            } else if let Err(error) = result {
                let _ = (error.code(), error.to_string());
            }
        }

        #[test]
        fn json_shaped_strings_are_parsed_or_refused_without_panicking(
            raw in r#"\{("(type|client_id|text|session_id|last_seq|x)"|"(hello|resume|message|ping|shout)"|[0-9a-f]{0,34}|-?[0-9]{1,21}|null|true|\[|\]|\{|\}|:|,| |"\\u[0-9a-fA-F]{4}"){0,24}\}?"#
        ) {
            match parse_client_frame(&raw, 1 << 20) {
                Ok(ClientFrame::Message { client_id, .. }) => {
                    prop_assert!(ClientId::parse(client_id.as_str()).is_ok());
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = (error.code(), error.to_string());
                }
            }
        }

        #[test]
        fn every_server_frame_is_json_with_its_type_tag(frame in server_frame()) {
            let json = frame.to_json();
            let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            prop_assert_eq!(value.get("type").and_then(serde_json::Value::as_str), Some(server_type(&frame)));
            let back: ServerFrame = serde_json::from_str(&json).expect("a server frame reads back");
            prop_assert_eq!(back, frame);
        }
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
