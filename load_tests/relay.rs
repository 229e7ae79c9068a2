//! A bare WebSocket relay in front of the fake provider: the transport floor of the time to first
//! token.
//!
//! Carebridge's path to the first token has two legs a client calling the provider directly does
//! not: the patient's message over the WebSocket, and the first delta back. The relay makes
//! exactly those legs and nothing else: no session, store, policies, guard or audit. It is built
//! on the stack Carebridge uses (actix-web and actix-ws with two workers and Nagle off, reqwest
//! with one client per worker thread) and runs where the server under test runs (in this process
//! or as a child process). So, in one run:
//! * relay minus direct is what any WebSocket hop costs on this machine and stack;
//! * Carebridge minus relay is what Carebridge's own work adds on top of it.

use std::cell::OnceCell;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Barrier;

use crate::client::{Buffers, Client, Incoming};
use crate::provider::{self, Legs};
use crate::server::Placement;
use crate::texts;
use crate::traffic::TrafficArgs;

/// Worker threads of the relay: the same as Carebridge's HTTP server.
const WORKERS: usize = 2;

/// How long a relayed reply may take before the client gives up on it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// `relay-serve`: only the relay, as the child process of a `mixed --server child` run.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The fake provider's base URL (loopback only), e.g. http://127.0.0.1:PORT/v1.
    #[arg(long)]
    pub provider_url: String,
}

/// The running relay.
pub struct Relay {
    pub port: u16,
    running: Running,
}

enum Running {
    InProcess(actix_web::dev::ServerHandle),
    Child(tokio::process::Child),
}

struct Upstream {
    url: String,
}

thread_local! {
    /// One HTTP client per worker thread, as Carebridge keeps one, so that a provider connection
    /// is driven by the thread that streams its reply.
    static CLIENT: OnceCell<reqwest::Client> = const { OnceCell::new() };
}

fn thread_client() -> Result<reqwest::Client, reqwest::Error> {
    CLIENT.with(|cell| {
        if let Some(client) = cell.get() {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
        Ok(cell.get_or_init(|| client).clone())
    })
}

fn bind(provider_url: &str) -> anyhow::Result<(actix_web::dev::Server, u16)> {
    crate::server::require_loopback(provider_url)?;
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).context("cannot bind the relay on loopback")?;
    let port = listener.local_addr()?.port();
    let upstream = web::Data::new(Upstream {
        url: format!("{}/chat/completions", provider_url.trim_end_matches('/')),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(upstream.clone())
            .route("/relay", web::get().to(relay))
    })
    .workers(WORKERS)
    .tcp_nodelay(true)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, port))
}

impl Relay {
    /// Starts the relay in front of the provider at `provider_url`.
    ///
    /// # Errors
    /// The port cannot be bound, or the child process does not start.
    pub async fn start(provider_url: &str, placement: Placement) -> anyhow::Result<Self> {
        match placement {
            Placement::InProcess => {
                let (server, port) = bind(provider_url)?;
                let handle = server.handle();
                tokio::spawn(server);
                Ok(Self {
                    port,
                    running: Running::InProcess(handle),
                })
            }
            Placement::Child => {
                let binary = std::env::current_exe().context("cannot find the load generator")?;
                let mut child = tokio::process::Command::new(binary)
                    .args(["relay-serve", "--provider-url", provider_url])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("cannot start the relay as a child process")?;
                let stdout = child.stdout.take().context("the relay has no stdout")?;
                let mut lines = BufReader::new(stdout).lines();
                let port = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                    .await
                    .context("the relay did not report its port within 10 s")??
                    .and_then(|line| line.strip_prefix("relay port ")?.trim().parse().ok())
                    .context("the relay did not report its port")?;
                Ok(Self {
                    port,
                    running: Running::Child(child),
                })
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::InProcess(_) => Some(std::process::id()),
            Running::Child(child) => child.id(),
        }
    }

    pub async fn stop(self) {
        match self.running {
            Running::InProcess(handle) => handle.stop(false).await,
            Running::Child(mut child) => {
                // Closing its stdin asks it to stop; the kill is for one that does not.
                drop(child.stdin.take());
                if tokio::time::timeout(Duration::from_secs(5), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// Serves the relay until stdin closes (the parent's end of the pipe), printing its port first.
///
/// # Errors
/// The port cannot be bound.
pub async fn serve(args: ServeArgs) -> anyhow::Result<bool> {
    let (server, port) = bind(&args.provider_url)?;
    let handle = server.handle();
    tokio::spawn(server);
    println!("relay port {port}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    handle.stop(false).await;
    Ok(true)
}

/// One socket: each text frame is a patient message `{"text": …}`, answered by the provider's
/// reply as `delta` frames and a `done` frame, one message at a time.
async fn relay(
    request: HttpRequest,
    body: web::Payload,
    upstream: web::Data<Upstream>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, mut messages) = actix_ws::handle(&request, body)?;
    let upstream = upstream.into_inner();
    actix_web::rt::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                actix_ws::Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    let text = frame["text"].as_str().unwrap_or_default();
                    let outcome = relay_reply(&upstream, &mut session, text).await;
                    let last = match outcome {
                        Ok(()) => json!({"type": "done"}),
                        Err(error) => json!({"type": "error", "text": format!("{error:#}")}),
                    };
                    if session.text(last.to_string()).await.is_err() {
                        return;
                    }
                }
                actix_ws::Message::Ping(bytes) => {
                    let answered = session.pong(&bytes).await;
                    if answered.is_err() {
                        return;
                    }
                }
                actix_ws::Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}

/// Streams one reply: each SSE event's text becomes a `delta` frame as soon as it is read.
async fn relay_reply(
    upstream: &Upstream,
    session: &mut actix_ws::Session,
    text: &str,
) -> anyhow::Result<()> {
    let client = thread_client().context("cannot build the relay's HTTP client")?;
    let mut events =
        provider::EventStream::open(&client, &upstream.url, provider::direct_request_body(text))
            .await?;
    while let Some(event) = events.next().await? {
        let provider::Event::Text(content) = event else {
            continue;
        };
        if content.is_empty() {
            continue;
        }
        let frame = json!({"type": "delta", "text": content});
        session
            .text(frame.to_string())
            .await
            .context("the relay's client went away")?;
    }
    Ok(())
}

/// Time to the first relayed delta of each message.
pub struct RelayTimings {
    pub first_token: Vec<Duration>,
    /// With `--legs`: send to the provider having the request, and its first chunk to the delta.
    pub way_in: Vec<Duration>,
    pub way_out: Vec<Duration>,
    pub errors: u64,
}

/// Where the relay phase's tag numbers begin.
const RELAY_TAGS: u64 = 10_000_000;

/// Sends the patients' messages through the relay with the same concurrency, pacing and texts as
/// the Carebridge phase, and times each one's first delta.
///
/// # Errors
/// A client task panicked.
pub async fn relay_phase(
    relay: &Relay,
    patients: usize,
    warmup: usize,
    messages: usize,
    traffic: &TrafficArgs,
    legs: Option<Arc<Legs>>,
) -> anyhow::Result<RelayTimings> {
    let url = format!("ws://127.0.0.1:{}/relay", relay.port);
    let barrier = Arc::new(Barrier::new(patients + 1));
    let mut tasks = Vec::new();
    for patient in 0..patients {
        let (url, barrier, traffic, legs) = (
            url.clone(),
            Arc::clone(&barrier),
            traffic.clone(),
            legs.clone(),
        );
        let ramp = traffic.ramp_delay(patient, patients);
        tasks.push(tokio::spawn(async move {
            let mut timings = Vec::new();
            let (mut way_in, mut way_out) = (Vec::new(), Vec::new());
            let mut errors = 0u64;
            let mut client = match Client::connect(&url, "relay", Buffers::Default).await {
                Ok(client) => Some(client),
                Err(_) => {
                    errors += 1;
                    None
                }
            };
            if let Some(client) = client.as_mut() {
                for _ in 0..warmup {
                    if exchange(client, texts::ROUTINE[0]).await.is_none() {
                        errors += 1;
                    }
                }
            }
            barrier.wait().await;
            tokio::time::sleep(ramp).await;
            if let Some(mut client) = client {
                for index in 0..messages {
                    let planned = texts::planned(traffic.seed, patient, index, traffic.red_ratio);
                    let tag = legs
                        .as_ref()
                        .map(|_| Legs::tag(RELAY_TAGS + (patient * messages + index) as u64));
                    let text = match &tag {
                        Some(tag) => format!("{} {tag}", planned.text),
                        None => planned.text.to_owned(),
                    };
                    match exchange(&mut client, &text).await {
                        Some((sent, first)) => {
                            timings.push(first);
                            if let (Some(legs), Some(tag)) = (&legs, &tag)
                                && let Some((arrived, first_sent)) = legs.take(tag)
                            {
                                way_in.push(arrived.saturating_duration_since(sent));
                                way_out.push((sent + first).saturating_duration_since(first_sent));
                            }
                        }
                        None => errors += 1,
                    }
                    if traffic.think_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(traffic.think_ms)).await;
                    }
                }
                client.close().await;
            }
            (timings, way_in, way_out, errors)
        }));
    }
    barrier.wait().await;
    let mut outcome = RelayTimings {
        first_token: Vec::new(),
        way_in: Vec::new(),
        way_out: Vec::new(),
        errors: 0,
    };
    for task in tasks {
        let (mut timings, mut way_in, mut way_out, errors) =
            task.await.context("a relay client panicked")?;
        outcome.first_token.append(&mut timings);
        outcome.way_in.append(&mut way_in);
        outcome.way_out.append(&mut way_out);
        outcome.errors += errors;
    }
    Ok(outcome)
}

/// Sends one message and reads its reply to the end: when it was sent and the time to its first
/// delta, or `None` if the reply failed.
async fn exchange(client: &mut Client, text: &str) -> Option<(Instant, Duration)> {
    let sent = Instant::now();
    client.send(&json!({"text": text})).await.ok()?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut first = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next(left).await {
            Incoming::Frame(frame) => match frame["type"].as_str() {
                Some("delta") => {
                    first.get_or_insert_with(|| sent.elapsed());
                }
                Some("done") => return first.map(|first| (sent, first)),
                _ => return None,
            },
            Incoming::Closed(_) | Incoming::TimedOut => return None,
        }
    }
}
