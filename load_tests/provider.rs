//! A fake OpenAI-compatible provider that streams real SSE `chat.completion.chunk` events at a
//! configurable pace, and a direct reader of that stream (no Carebridge in between) that times it
//! the way a patient's client times Carebridge.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

/// How the fake provider streams its reply.
#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Delay before the first chunk of each reply (the provider's own time to first token).
    #[arg(long, default_value_t = 20)]
    pub first_token_ms: u64,
    /// Delay between chunks: 20 ms is 50 chunks per second.
    #[arg(long, default_value_t = 20)]
    pub chunk_delay_ms: u64,
    /// Characters per chunk (about one token at 4).
    #[arg(long, default_value_t = 4)]
    pub chunk_chars: usize,
    /// Length of every reply, in characters.
    #[arg(long, default_value_t = 400)]
    pub reply_chars: usize,
    /// Port for the fake provider (0 picks a free one); fix it to point an external server at it.
    #[arg(long, default_value_t = 0)]
    pub provider_port: u16,
    /// HTTP worker threads of the fake provider.
    #[arg(long, default_value_t = 1)]
    pub provider_workers: usize,
    /// Leave Nagle's algorithm on for the fake provider's sockets (actix-web's default), to see
    /// what it costs: a small write waits for the peer's delayed ACK (40 ms on Linux).
    #[arg(long)]
    pub provider_nagle: bool,
}

/// A reply that passes every output rule under any session flag (checked at start-up), so the
/// guard never stops it and every reply is streamed in full.
const REPLY_PARAGRAPH: &str = "Thank you for telling me. Resting, drinking plenty of fluids and \
    simple steps at home often help with symptoms like these. Keep an eye on how you feel over \
    the next few days, and write down anything that changes so you can describe it clearly. If \
    anything gets worse or you are worried, please contact a healthcare professional. ";

/// The reply text for `length` characters.
pub fn reply_text(length: usize) -> String {
    REPLY_PARAGRAPH
        .chars()
        .cycle()
        .take(length.max(1))
        .collect()
}

struct Script {
    legs: Arc<Legs>,
    first_token: Duration,
    /// Keeps the first-token delay exact (see `Pacer`).
    pacer: Pacer,
    chunk_delay: Duration,
    /// Every SSE event of the reply, encoded once: the fake's own cost stays the same for
    /// Carebridge and for the direct reader.
    events: Vec<web::Bytes>,
    requests: AtomicU64,
}

/// The running fake provider.
pub struct FakeProvider {
    pub port: u16,
    pub reply: String,
    script: Arc<Script>,
    handle: actix_web::dev::ServerHandle,
}

fn sse_event(text: &str) -> web::Bytes {
    let chunk = json!({
        "id": "chatcmpl-load", "object": "chat.completion.chunk", "created": 0, "model": "fake-load",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    });
    web::Bytes::from(format!("data: {chunk}\n\n"))
}

impl FakeProvider {
    /// Binds 127.0.0.1 and starts serving `POST /v1/chat/completions`.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub fn start(args: &ProviderArgs) -> anyhow::Result<Self> {
        let reply = reply_text(args.reply_chars);
        let chars: Vec<char> = reply.chars().collect();
        let mut events: Vec<web::Bytes> = chars
            .chunks(args.chunk_chars.max(1))
            .map(|piece| sse_event(&piece.iter().collect::<String>()))
            .collect();
        let last = json!({
            "id": "chatcmpl-load", "object": "chat.completion.chunk", "created": 0, "model": "fake-load",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        });
        events.push(web::Bytes::from(format!("data: {last}\n\n")));
        events.push(web::Bytes::from_static(b"data: [DONE]\n\n"));
        let script = Arc::new(Script {
            legs: Arc::default(),
            first_token: Duration::from_millis(args.first_token_ms),
            pacer: Pacer::start()?,
            chunk_delay: Duration::from_millis(args.chunk_delay_ms),
            events,
            requests: AtomicU64::new(0),
        });
        let listener = TcpListener::bind(("127.0.0.1", args.provider_port)).with_context(|| {
            format!(
                "cannot bind the fake provider on port {}",
                args.provider_port
            )
        })?;
        let port = listener.local_addr()?.port();
        let data = web::Data::from(Arc::clone(&script));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/chat/completions", web::post().to(completions))
        })
        .workers(args.provider_workers.max(1))
        .tcp_nodelay(!args.provider_nagle)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            port,
            reply,
            script,
            handle,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// When tagged requests arrived and when their first chunk left (see `Legs`).
    pub fn legs(&self) -> Arc<Legs> {
        Arc::clone(&self.script.legs)
    }

    pub fn requests(&self) -> u64 {
        self.script.requests.load(Ordering::Relaxed)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn completions(body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let arrived = Instant::now();
    script.requests.fetch_add(1, Ordering::Relaxed);
    let tag = Legs::tag_in(&body);
    type Piece = Result<web::Bytes, std::io::Error>;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Piece>(8);
    let script = script.into_inner();
    tokio::spawn(async move {
        if !script.first_token.is_zero() {
            script.pacer.until(arrived + script.first_token).await;
        }
        if let Some(tag) = tag {
            script.legs.record(tag, arrived, Instant::now());
        }
        let count = script.events.len();
        for (index, event) in script.events.iter().enumerate() {
            if sender.send(Ok(event.clone())).await.is_err() {
                return;
            }
            // The closing events follow the last text at once, as real providers send them.
            if index + 3 < count && !script.chunk_delay.is_zero() {
                tokio::time::sleep(script.chunk_delay).await;
            }
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|piece| (piece, receiver))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(body)
}

/// Splits a caller's time to first token into its two legs, for messages that carry a tag word
/// (`mixed --legs`): the way in (the caller sent it, the provider has the request) and the way
/// out (the provider sent the first chunk, the caller has it). The provider runs in the load
/// generator, so its instants and the caller's are on one clock.
#[derive(Default)]
pub struct Legs {
    seen: std::sync::Mutex<std::collections::HashMap<String, (Instant, Instant)>>,
}

/// Tag words begin with this; the rest is lowercase letters, so no policy, lexicon entry or
/// identifier pattern reads anything into them.
const TAG_PREFIX: &str = "zqleg";

impl Legs {
    /// The tag word for message number `number`.
    pub fn tag(number: u64) -> String {
        let mut letters = String::from(TAG_PREFIX);
        let mut rest = number;
        for _ in 0..8 {
            letters.push(char::from(b'a' + (rest % 26) as u8));
            rest /= 26;
        }
        letters
    }

    fn tag_in(body: &[u8]) -> Option<String> {
        let prefix = TAG_PREFIX.as_bytes();
        // The last one: Carebridge's request carries the conversation, newest message last.
        let start = body
            .windows(prefix.len())
            .rposition(|window| window == prefix)?;
        let word = body.get(start..start + prefix.len() + 8)?;
        std::str::from_utf8(word).ok().map(str::to_owned)
    }

    fn record(&self, tag: String, arrived: Instant, first_sent: Instant) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(tag, (arrived, first_sent));
        }
    }

    /// When the tagged request arrived and when its first chunk left.
    pub fn take(&self, tag: &str) -> Option<(Instant, Instant)> {
        self.seen.lock().ok()?.remove(tag)
    }
}

/// Wakes a reply at an exact instant, for the provider's time to first token.
///
/// A tokio timer fires on a whole millisecond of its runtime's clock, so `sleep(20 ms)` lasts
/// between 20 and 21 ms, depending on where in the millisecond the request arrived. With patients
/// sending their next message as soon as a reply ends, and the reply's last chunk itself sent on a
/// millisecond tick, where a request arrives in the millisecond is set by the caller's own path
/// delay: the provider's delay then depended on who called it, and by up to a millisecond. One
/// thread waiting on a futex deadline (high-resolution timer, 50 µs slack) keeps it at the same
/// 20 ms for everyone.
struct Pacer {
    requests: std::sync::mpsc::Sender<(Instant, tokio::sync::oneshot::Sender<()>)>,
}

impl Pacer {
    fn start() -> anyhow::Result<Self> {
        let (sender, receiver) =
            std::sync::mpsc::channel::<(Instant, tokio::sync::oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name("fake-provider-pacer".into())
            .spawn(move || pace(&receiver))
            .context("cannot start the fake provider's pacer thread")?;
        Ok(Self { requests: sender })
    }

    /// Resolves at `deadline` (at once if the pacer has stopped).
    async fn until(&self, deadline: Instant) {
        let (wake, woken) = tokio::sync::oneshot::channel();
        if self.requests.send((deadline, wake)).is_ok() {
            let _ = woken.await;
        }
    }
}

/// The pacer thread: wakes each waiter at its deadline, earliest first; ends when the provider
/// is dropped.
fn pace(receiver: &std::sync::mpsc::Receiver<(Instant, tokio::sync::oneshot::Sender<()>)>) {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};
    use std::sync::mpsc::RecvTimeoutError;
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiters: HashMap<u64, tokio::sync::oneshot::Sender<()>> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        let now = Instant::now();
        while let Some(Reverse((deadline, id))) = due.peek().copied() {
            if deadline > now {
                break;
            }
            due.pop();
            if let Some(waiter) = waiters.remove(&id) {
                let _ = waiter.send(());
            }
        }
        let received = match due.peek() {
            Some(Reverse((deadline, _))) => {
                receiver.recv_timeout(deadline.saturating_duration_since(now))
            }
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok((deadline, waiter)) => {
                due.push(Reverse((deadline, next_id)));
                waiters.insert(next_id, waiter);
                next_id += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Timings of one stream read straight from the provider.
#[derive(Debug, Default)]
pub struct DirectTiming {
    /// When the request was sent.
    pub started: Option<Instant>,
    pub first_token: Option<Duration>,
    /// With `--legs`: the two legs of the time to first token (see `Legs`).
    pub way_in: Option<Duration>,
    pub way_out: Option<Duration>,
    pub gaps: Vec<Duration>,
    /// (characters received so far, elapsed) after each content chunk.
    pub arrivals: Vec<(usize, Duration)>,
    pub completed: bool,
}

impl DirectTiming {
    /// When the provider's chunk `index` (0 is the first) arrived.
    pub fn time_to_chunk(&self, index: usize) -> Option<Duration> {
        self.arrivals.get(index).map(|(_, elapsed)| *elapsed)
    }
}

/// A request body of the size and shape Carebridge sends (system prompt plus a user line).
pub fn direct_request_body(user_text: &str) -> String {
    let system = "You are a careful health information assistant. ".repeat(24);
    json!({
        "model": "fake-load",
        "stream": true,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user_text},
        ],
    })
    .to_string()
}

/// A streamed completion from the provider, read one SSE event at a time.
pub struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// Posts `body` to `url` and checks the answer is a success.
    ///
    /// # Errors
    /// The request failed or the provider answered with an error status.
    pub async fn open(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<Self> {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .context("request to the fake provider")?;
        anyhow::ensure!(
            response.status().is_success(),
            "the fake provider answered HTTP {}",
            response.status()
        );
        Ok(Self {
            response,
            buffer: Vec::new(),
        })
    }

    /// The next complete event (`data: …\n\n`), or `None` at the end of the stream.
    ///
    /// # Errors
    /// The stream broke or an event's data is not JSON.
    pub async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return parse_event(&event).map(Some);
            }
            match self
                .response
                .chunk()
                .await
                .context("the provider's stream broke")?
            {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// One SSE event of the provider's stream.
pub enum Event {
    /// A chunk's text (empty for a chunk without content, such as the last one).
    Text(String),
    /// `data: [DONE]`.
    Done,
    /// Not a `data:` event.
    Other,
}

/// Reads one complete SSE event (`data: …\n\n`) as Carebridge does.
///
/// # Errors
/// The event's data is not JSON.
pub fn parse_event(event: &[u8]) -> anyhow::Result<Event> {
    let line = String::from_utf8_lossy(event);
    let Some(data) = line.trim().strip_prefix("data:") else {
        return Ok(Event::Other);
    };
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Event::Done);
    }
    let value: Value = serde_json::from_str(data).context("the provider's stream sent bad JSON")?;
    Ok(Event::Text(
        value["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

/// Reads one streamed reply straight from the provider, parsing each event as Carebridge does.
///
/// # Errors
/// The request failed or the stream broke.
pub async fn read_direct(
    client: &reqwest::Client,
    url: &str,
    body: String,
) -> anyhow::Result<DirectTiming> {
    let started = Instant::now();
    let mut events = EventStream::open(client, url, body).await?;
    let mut timing = DirectTiming {
        started: Some(started),
        ..DirectTiming::default()
    };
    let mut received = 0usize;
    let mut last_chunk: Option<Instant> = None;
    while let Some(event) = events.next().await? {
        let text = match event {
            Event::Text(text) => text,
            Event::Done => {
                timing.completed = true;
                continue;
            }
            Event::Other => continue,
        };
        if text.is_empty() {
            continue;
        }
        let now = Instant::now();
        received += text.len();
        let elapsed = now - started;
        match last_chunk {
            None => timing.first_token = Some(elapsed),
            Some(previous) => timing.gaps.push(now - previous),
        }
        last_chunk = Some(now);
        timing.arrivals.push((received, elapsed));
    }
    Ok(timing)
}

/// `provider`: only the fake provider, for pointing an external Carebridge at it.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Stop after this many seconds (or on Ctrl-C).
    #[arg(long, default_value_t = 600)]
    pub serve_secs: u64,
    #[command(flatten)]
    pub provider: ProviderArgs,
}

/// Serves the fake provider until the time is up or Ctrl-C.
///
/// # Errors
/// The port cannot be bound.
pub async fn serve(args: ServeArgs) -> anyhow::Result<bool> {
    let fake = FakeProvider::start(&args.provider)?;
    println!(
        "fake provider: CAREBRIDGE_LLM__PROVIDER=openai CAREBRIDGE_LLM__BASE_URL={} CAREBRIDGE_LLM__MODEL=fake-load",
        fake.base_url()
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.serve_secs)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("served {} requests", fake.requests());
    fake.stop().await;
    Ok(true)
}
