//! A minimal WebSocket client for the patient and nurse sockets: connect with a bearer token,
//! send JSON frames, read JSON frames with a deadline.

use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    echo_pongs: bool,
}

/// What reading the next frame gave.
pub enum Incoming {
    Frame(Value),
    /// The server closed the socket (with its close code, if any) or the connection broke.
    Closed(Option<u16>),
    /// Nothing within the deadline.
    TimedOut,
}

/// Buffer sizes of a client socket.
#[derive(Debug, Clone, Copy)]
pub enum Buffers {
    /// For sockets that carry traffic: a 16 KiB read buffer. tungstenite zero-fills the whole
    /// read buffer before every read, so its default of 128 KiB made the load generator spend
    /// about 5% of all CPU samples in `memset`, on the two cores it shares with the server.
    Default,
    /// Small buffers, so that ten thousand idle sockets fit in the load generator too.
    Small,
}

impl Client {
    /// Opens `url` with the token in `Authorization: Bearer`.
    ///
    /// # Errors
    /// The connection or the upgrade failed (401/403 included).
    pub async fn connect(url: &str, token: &str, buffers: Buffers) -> anyhow::Result<Self> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?,
        );
        let config = match buffers {
            Buffers::Default => Some(WebSocketConfig::default().read_buffer_size(16 * 1024)),
            Buffers::Small => Some(
                WebSocketConfig::default()
                    .read_buffer_size(4 * 1024)
                    .write_buffer_size(0),
            ),
        };
        // Nagle off: a frame waiting for the previous one's ACK would add up to 40 ms to a
        // latency we are trying to see in microseconds.
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, config, true)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        Ok(Self {
            socket,
            echo_pongs: false,
        })
    }

    /// Diagnostic: answer every server frame with an unsolicited pong (RFC 6455 allows one; the
    /// server ignores it). The pong carries the TCP ACK at once instead of after the kernel's
    /// delayed-ACK timer, so a server whose sockets run Nagle's algorithm no longer holds its next
    /// small frame back waiting for that ACK. Comparing runs with and without it shows what Nagle
    /// costs.
    pub fn echo_pongs(&mut self, on: bool) {
        self.echo_pongs = on;
    }

    /// # Errors
    /// The socket is closed.
    pub async fn send(&mut self, frame: &Value) -> Result<(), tungstenite::Error> {
        self.socket.send(Message::text(frame.to_string())).await
    }

    /// The next JSON text frame within `wait` (pings are answered by tungstenite as we read).
    pub async fn next(&mut self, wait: Duration) -> Incoming {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(message) => message,
                Err(_) => return Incoming::TimedOut,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    if self.echo_pongs {
                        let _ = self.socket.send(Message::Pong(Default::default())).await;
                    }
                    return match serde_json::from_str(&text) {
                        Ok(value) => Incoming::Frame(value),
                        // A server frame that is not JSON is a server bug; report it as a frame
                        // the caller does not know, so it is counted.
                        Err(_) => Incoming::Frame(
                            serde_json::json!({"type": "unparsable", "text": text.as_str()}),
                        ),
                    };
                }
                Some(Ok(Message::Close(close))) => {
                    return Incoming::Closed(close.map(|frame| u16::from(frame.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Incoming::Closed(None),
            }
        }
    }

    /// Sends a WebSocket ping and waits for its pong (data frames in between are dropped).
    pub async fn ws_ping(&mut self, wait: Duration) -> Option<()> {
        self.socket
            .send(Message::Ping(b"rtt".to_vec().into()))
            .await
            .ok()?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Pong(_)))) => return Some(()),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Waits for a frame of type `kind`, skipping others; `None` on close or timeout.
    pub async fn wait_for(&mut self, kind: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Incoming::Frame(frame) if frame["type"] == kind => return Some(frame),
                Incoming::Frame(_) => continue,
                Incoming::Closed(_) | Incoming::TimedOut => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        // Read until the server's close frame, so the server sees a clean close.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}
