//! Test support: the real application on port 0, a real WebSocket client, throwaway
//! `redis-server` processes, and a fake OpenAI-compatible server that streams real SSE.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use carebridge::auth::{Role, TokenKeys};
use carebridge::config::{Provider, Settings, StoreBackend};
use carebridge::limits::RateSettings;
use carebridge::startup::Application;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret";

/// The repository root, where the shipped policies and prompts are.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Settings for a test: port 0, shipped policies, demo model without delays, no polling.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.server.shutdown_grace_ms = 2_000;
    settings.policies.dir = repo().join("policies");
    settings.policies.watch_interval_ms = 0;
    settings.prompts_dir = repo().join("prompts");
    settings.llm.demo_word_delay_ms = 1;
    settings.auth.dev_secret = SECRET.into();
    // Tests open many sockets and send fast from one address; the limits have their own tests.
    settings.rate_limits = RateSettings {
        user_messages_per_minute: 6_000,
        user_message_burst: 1_000,
        address_messages_per_minute: 0,
        address_connections_per_minute: 0,
        user_connections_per_minute: 0,
        max_sockets_per_user: 50,
        ..RateSettings::default()
    };
    settings
}

pub struct TestApp {
    pub port: u16,
    pub keys: TokenKeys,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
}

/// Builds and starts the application with `settings`.
pub async fn spawn_app(settings: Settings) -> TestApp {
    let keys = TokenKeys::hs256(
        &settings.auth.dev_secret,
        &settings.auth.issuer,
        &settings.auth.audience,
    );
    let application = Application::build(settings)
        .await
        .expect("application builds");
    let port = application.port();
    let shutdown = application.shutdown_token();
    let server = tokio::spawn(async move {
        application
            .run_until(std::future::pending())
            .await
            .expect("server runs");
    });
    TestApp {
        port,
        keys,
        shutdown,
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn token(&self, subject: &str, role: Role) -> String {
        self.keys
            .mint(subject, role, Duration::from_secs(600))
            .expect("token")
    }

    /// The Prometheus text of `/metrics`. The recorder is global: in-process servers of tests
    /// running side by side count into the same families.
    pub async fn metrics(&self) -> String {
        metrics_text(self.port).await
    }

    /// A patient socket for `subject`.
    pub async fn patient(&self, subject: &str) -> Client {
        Client::connect(
            self.port,
            "/v1/chat",
            Some(&self.token(subject, Role::Patient)),
        )
        .await
        .expect("patient connects")
    }

    /// A patient socket that has said hello; returns it with its session id.
    pub async fn patient_in_session(&self, subject: &str) -> (Client, String) {
        let mut client = self.patient(subject).await;
        client.send(json!({"type": "hello"})).await;
        let welcome = client.expect("welcome").await;
        let session = welcome["session_id"]
            .as_str()
            .expect("session id")
            .to_owned();
        (client, session)
    }
}

pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects with the token in the `Authorization` header (or none).
    pub async fn connect(
        port: u16,
        path: &str,
        token: Option<&str>,
    ) -> Result<Self, tungstenite::Error> {
        Self::connect_with(port, path, token, &[]).await
    }

    /// Connects with extra request headers (an `Origin`, say).
    pub async fn connect_with(
        port: u16,
        path: &str,
        token: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, tungstenite::Error> {
        let mut request = format!("ws://127.0.0.1:{port}{path}").into_client_request()?;
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        if let Some(token) = token {
            request.headers_mut().insert(
                "Authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
            );
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { socket })
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_raw(&frame.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::binary(bytes))
            .await
            .expect("send");
    }

    /// The next JSON frame within 10 s (control frames are answered and skipped).
    pub async fn next(&mut self) -> Value {
        match self.next_message().await {
            Incoming::Frame(value) => value,
            Incoming::Closed(close) => panic!("socket closed: {close:?}"),
        }
    }

    pub async fn next_message(&mut self) -> Incoming {
        // One deadline for the next data frame: pings must not keep a stuck test alive.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a frame within 10 s");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Incoming::Frame(
                        serde_json::from_str(&text).expect("server frames are JSON"),
                    );
                }
                Some(Ok(Message::Close(close))) => return Incoming::Closed(close),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Incoming::Closed(None),
            }
        }
    }

    /// Reads frames until one of `kind` arrives; returns it (the others are dropped).
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a patient message and reads up to the end of the reply (`done` or `replaced`).
    pub async fn say(&mut self, client_id: &str, text: &str) -> Vec<Value> {
        self.send(json!({"type": "message", "client_id": client_id, "text": text}))
            .await;
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let end = frame["type"] == "done" || frame["type"] == "replaced";
            frames.push(frame);
            if end {
                return frames;
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_message().await {
                Incoming::Closed(close) => return close.map(|frame| u16::from(frame.code)),
                Incoming::Frame(_) => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

pub enum Incoming {
    Frame(Value),
    Closed(Option<CloseFrame>),
}

/// The text of the streamed reply in `frames`.
pub fn reply_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|frame| frame["type"] == "delta")
        .map(|frame| frame["text"].as_str().unwrap_or_default())
        .collect()
}

/// A throwaway `redis-server` on a free port in a temporary directory, with AOF on.
pub struct TestRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestRedis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut redis = Self {
            port,
            dir,
            child: None,
        };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new(redis_server())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (the test script installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {}", self.port);
    }

    /// SIGKILL: no chance to flush anything beyond what it already wrote.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// Whether process `pid` holds a socket listening on TCP `port` (Linux `/proc`): a connection
/// that succeeds may reach another test's listener that took the port first.
fn listens_on(pid: u32, port: u16) -> bool {
    let listening: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    let listen = fields.get(3)? == &"0A";
                    (listen && u16::from_str_radix(local_port, 16).ok()? == port)
                        .then(|| format!("socket:[{}]", fields.get(9).unwrap_or(&"")))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if listening.is_empty() {
        return false;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                std::fs::read_link(entry.path()).is_ok_and(|target| {
                    listening
                        .iter()
                        .any(|socket| target.as_os_str() == socket.as_str())
                })
            })
        })
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

pub fn settings_with_redis(redis: &TestRedis) -> Settings {
    let mut settings = test_settings();
    settings.store.backend = StoreBackend::Redis;
    settings.store.redis_url = redis.url();
    settings
}

/// What the fake provider does for a request, chosen by the request's `model` name.
#[derive(Clone, Debug)]
pub enum Script {
    /// Stream `text` in chunks of `chunk` characters, `delay_ms` apart.
    Reply {
        text: String,
        chunk: usize,
        delay_ms: u64,
    },
    Status(u16),
    /// Wait this long before sending anything.
    StallFirst(u64),
    /// Send `text`, then stall for this long.
    StallAfter {
        text: String,
        stall_ms: u64,
    },
    /// Send `text`, then break the connection.
    DropAfter(String),
    /// Send a chunk that is not JSON.
    Malformed,
    /// Answer "turns: N", N being the conversation lines the request carried (system prompt
    /// left out): shows which request a reply came from.
    CountTurns,
}

/// A fake OpenAI-compatible server: real HTTP, real SSE (`data: {…}` lines and `[DONE]`).
pub struct FakeModel {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeModel {
    /// Starts a server that answers each model name with its script.
    pub async fn start(scripts: Vec<(&str, Script)>) -> Self {
        let scripts: Arc<Vec<(String, Script)>> = Arc::new(
            scripts
                .into_iter()
                .map(|(name, script)| (name.to_owned(), script))
                .collect(),
        );
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (scripts_data, requests_data) = (
            web::Data::from(scripts),
            web::Data::from(Arc::clone(&requests)),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(scripts_data.clone())
                .app_data(requests_data.clone())
                .route("/v1/chat/completions", web::post().to(completions))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self { port, requests }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Settings that use this server with `model`.
    pub fn settings(&self, model: &str) -> Settings {
        let mut settings = test_settings();
        settings.llm.provider = Provider::Openai;
        settings.llm.base_url = self.base_url();
        settings.llm.model = model.into();
        settings.llm.first_token_timeout_ms = 500;
        settings.llm.chunk_gap_timeout_ms = 500;
        settings.llm.reply_timeout_ms = 5_000;
        settings.llm.max_attempts = 2;
        settings
    }

    pub fn request_count(&self) -> usize {
        self.requests
            .lock()
            .map(|requests| requests.len())
            .unwrap_or(0)
    }
}

fn sse_chunk(text: &str) -> String {
    let chunk = json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "fake",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    });
    format!("data: {chunk}\n\n")
}

async fn completions(
    body: web::Json<Value>,
    scripts: web::Data<Vec<(String, Script)>>,
    requests: web::Data<Mutex<Vec<Value>>>,
) -> HttpResponse {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let turns = body["messages"].as_array().map_or(0, |messages| {
        messages
            .iter()
            .filter(|message| message["role"] != "system")
            .count()
    });
    if let Ok(mut seen) = requests.lock() {
        seen.push(body.into_inner());
    }
    let script = scripts
        .iter()
        .find(|(name, _)| *name == model)
        .map(|(_, script)| script.clone())
        .unwrap_or(Script::Status(404));
    type Piece = Result<web::Bytes, std::io::Error>;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Piece>(16);
    match script {
        Script::Status(status) => {
            let code = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            return HttpResponse::build(code).json(json!({"error": {"message": "scripted failure", "type": "server_error", "param": null, "code": null}}));
        }
        Script::Reply {
            text,
            chunk,
            delay_ms,
        } => {
            tokio::spawn(async move {
                let chars: Vec<char> = text.chars().collect();
                for piece in chars.chunks(chunk.max(1)) {
                    let piece: String = piece.iter().collect();
                    if sender
                        .send(Ok(web::Bytes::from(sse_chunk(&piece))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                }
                let _ = sender.send(Ok(web::Bytes::from("data: [DONE]\n\n"))).await;
            });
        }
        Script::StallFirst(stall_ms) => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(stall_ms)).await;
                let _ = sender.send(Ok(web::Bytes::from(sse_chunk("late")))).await;
                let _ = sender.send(Ok(web::Bytes::from("data: [DONE]\n\n"))).await;
            });
        }
        Script::StallAfter { text, stall_ms } => {
            tokio::spawn(async move {
                let _ = sender.send(Ok(web::Bytes::from(sse_chunk(&text)))).await;
                tokio::time::sleep(Duration::from_millis(stall_ms)).await;
                let _ = sender.send(Ok(web::Bytes::from("data: [DONE]\n\n"))).await;
            });
        }
        Script::DropAfter(text) => {
            tokio::spawn(async move {
                let _ = sender.send(Ok(web::Bytes::from(sse_chunk(&text)))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = sender
                    .send(Err(std::io::Error::other("connection dropped")))
                    .await;
            });
        }
        Script::CountTurns => {
            tokio::spawn(async move {
                let _ = sender
                    .send(Ok(web::Bytes::from(sse_chunk(&format!("turns: {turns}")))))
                    .await;
                let _ = sender.send(Ok(web::Bytes::from("data: [DONE]\n\n"))).await;
            });
        }
        Script::Malformed => {
            tokio::spawn(async move {
                let _ = sender
                    .send(Ok(web::Bytes::from("data: {this is not json\n\n")))
                    .await;
                let _ = sender.send(Ok(web::Bytes::from("data: [DONE]\n\n"))).await;
            });
        }
    }
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|piece| (piece, receiver))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

/// The real `carebridge` binary as a separate process, configured through `CAREBRIDGE_*`
/// variables: a replica that can be killed with SIGKILL.
pub struct ProcessApp {
    pub port: u16,
    child: Child,
}

impl ProcessApp {
    pub fn start(redis: &TestRedis) -> Self {
        Self::start_with(Some(redis), "warn", Stdio::null)
    }

    /// A replica (on Redis, or on the memory store without one) whose logs at `level` go to
    /// `stderr`.
    /// `stderr` is called once per start attempt: a port taken by another test's listener in
    /// the seconds before this replica binds it means starting again on another port.
    pub fn start_with(redis: Option<&TestRedis>, level: &str, stderr: impl Fn() -> Stdio) -> Self {
        for _ in 0..5 {
            if let Some(app) = Self::try_start(redis, level, stderr()) {
                return app;
            }
        }
        panic!("carebridge did not listen on any of five free ports");
    }

    /// One start on a free port: `None` when the replica exited before it listened (its port was
    /// taken meanwhile). A listener on the port counts only when it is this replica's own socket,
    /// not another test's server that took the port first.
    fn try_start(redis: Option<&TestRedis>, level: &str, stderr: Stdio) -> Option<Self> {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_carebridge"));
        if let Some(redis) = redis {
            command
                .env("CAREBRIDGE_STORE__BACKEND", "redis")
                .env("CAREBRIDGE_STORE__REDIS_URL", redis.url());
        }
        let mut child = command
            .env("CAREBRIDGE_SERVER__PORT", port.to_string())
            .env("CAREBRIDGE_AUTH__DEV_SECRET", SECRET)
            .env("CAREBRIDGE_POLICIES__DIR", repo().join("policies"))
            .env("CAREBRIDGE_PROMPTS_DIR", repo().join("prompts"))
            .env("CAREBRIDGE_LLM__DEMO_WORD_DELAY_MS", "1")
            .env("RUST_LOG", level)
            .env("CAREBRIDGE_RATE_LIMITS__USER_MESSAGE_BURST", "1000")
            .env("CAREBRIDGE_RATE_LIMITS__USER_MESSAGES_PER_MINUTE", "6000")
            .env("CAREBRIDGE_RATE_LIMITS__ADDRESS_MESSAGES_PER_MINUTE", "0")
            .env(
                "CAREBRIDGE_RATE_LIMITS__ADDRESS_CONNECTIONS_PER_MINUTE",
                "0",
            )
            .env("CAREBRIDGE_RATE_LIMITS__USER_CONNECTIONS_PER_MINUTE", "0")
            .env("CAREBRIDGE_RATE_LIMITS__MAX_SOCKETS_PER_USER", "50")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the carebridge binary starts");
        // A debug build compiles and tests the policy set before it listens.
        for _ in 0..1200 {
            if child.try_wait().ok().flatten().is_some() {
                return None;
            }
            if listens_on(child.id(), port) {
                return Some(Self { port, child });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("carebridge did not listen on {port}");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn token(&self, subject: &str, role: Role) -> String {
        TokenKeys::hs256(SECRET, "carebridge", "carebridge")
            .mint(subject, role, Duration::from_secs(600))
            .expect("token")
    }

    pub async fn patient(&self, subject: &str) -> Client {
        let token = self.token(subject, Role::Patient);
        Client::connect(self.port, "/v1/chat", Some(&token))
            .await
            .expect("connects")
    }

    /// The Prometheus text of this process's own `/metrics`.
    pub async fn metrics(&self) -> String {
        metrics_text(self.port).await
    }
}

async fn metrics_text(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

impl Drop for ProcessApp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway three-node Redis Cluster (no replicas) on free ports, each node with AOF on.
pub struct TestRedisCluster {
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl TestRedisCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            children.push(
                Command::new(redis_server())
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                    ])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                    .args(["--appendonly", "yes"])
                    .arg("--dir")
                    .arg(&node_dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server starts"),
            );
        }
        let cluster = Self {
            ports,
            _dir: dir,
            children,
        };
        for port in &cluster.ports {
            wait_for_port(*port);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new(redis_cli())
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs (the test script installs it with redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        // Every node must agree that all slots are served before clients connect.
        for port in &cluster.ports {
            let mut ready = false;
            for _ in 0..100 {
                let info = Command::new(redis_cli())
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(ready, "cluster node {port} never reported cluster_state:ok");
        }
        cluster
    }

    /// Seed nodes, comma-separated (the `store.redis_url` of cluster mode).
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for TestRedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listened on {port}");
}

fn redis_cli() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}
