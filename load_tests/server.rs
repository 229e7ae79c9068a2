//! The Carebridge under test: built in this process, started as a child process (so its memory
//! and file descriptors are measured alone), or an external server on a loopback address.
//! Also reads a process's resident memory and open descriptors from `/proc`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use carebridge::auth::{Role, TokenKeys};
use carebridge::config::{Provider, Settings, StoreBackend};
use carebridge::startup::Application;
use clap::{Args, ValueEnum};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Tokens must outlive the longest run; sockets close with 4001 when they expire.
const TOKEN_LIFETIME: Duration = Duration::from_secs(6 * 3600);
/// Names the environment variable the server reads its provider key from; the fake needs none,
/// and pointing at our own variable keeps a real `OPENAI_API_KEY` away from it.
const FAKE_KEY_VARIABLE: &str = "CAREBRIDGE_LOAD_FAKE_KEY";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Placement {
    /// Built in this process with `Application::build` (memory figures include the clients).
    InProcess,
    /// `carebridge serve` as a child process configured through `CAREBRIDGE_*` variables.
    Child,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where the server runs (default: in-process for `mixed`, child for `idle` and `soak`).
    #[arg(long, value_enum)]
    pub server: Option<Placement>,
    /// Test an already running server instead (loopback only), e.g. ws://127.0.0.1:8080.
    #[arg(long)]
    pub target: Option<String>,
    /// The external server's `auth.dev_secret`, to mint patient and nurse tokens.
    #[arg(long, requires = "target")]
    pub secret: Option<String>,
    /// The external server's process id, to read its memory and descriptors from /proc.
    #[arg(long, requires = "target")]
    pub server_pid: Option<u32>,
    /// Use a Redis store at this URL (loopback only) instead of the memory store.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Send patient text to the model as is (`llm.trust = trusted`), skipping identifier
    /// redaction; the default is the shipped `external` setting, which redacts.
    #[arg(long)]
    pub trusted_provider: bool,
    /// The `carebridge` binary for `--server child` (default: next to this example).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Write the child server's log (RUST_LOG=warn) to this file.
    #[arg(long)]
    pub server_log: Option<PathBuf>,
    /// Extra environment for the child server, KEY=VALUE (repeatable), e.g.
    /// `MALLOC_ARENA_MAX=2` to see how much of its memory is allocator arenas.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// Keep the server's per-minute rate limits. By default they are turned off: every load
    /// client shares 127.0.0.1, so per-address limits would measure the limiter, not the service.
    #[arg(long)]
    pub keep_rate_limits: bool,
}

/// The per-minute rates in this build's `rate_limits` settings (a rate of 0 is off). Read from
/// the serialised defaults, so the load runs against builds with and without those settings.
fn rate_limit_keys() -> Vec<String> {
    serde_json::to_value(Settings::default())
        .ok()
        .and_then(|value| {
            value.get("rate_limits").and_then(|limits| {
                limits.as_object().map(|limits| {
                    limits
                        .keys()
                        .filter(|key| key.ends_with("_per_minute"))
                        .cloned()
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

fn without_rate_limits(settings: Settings) -> anyhow::Result<Settings> {
    let keys = rate_limit_keys();
    if keys.is_empty() {
        return Ok(settings);
    }
    let mut value = serde_json::to_value(&settings)?;
    if let Some(limits) = value
        .get_mut("rate_limits")
        .and_then(serde_json::Value::as_object_mut)
    {
        for key in keys {
            limits.insert(key, serde_json::Value::from(0));
        }
    }
    Ok(serde_json::from_value(value)?)
}

/// What the server's model is.
pub enum Model<'a> {
    /// The built-in demo model (idle sockets never ask it anything).
    Demo,
    /// The fake provider at this base URL.
    Fake(&'a str),
}

/// A running server under test.
pub struct ServerUnderTest {
    /// `ws://127.0.0.1:PORT`
    pub ws_base: String,
    pub keys: TokenKeys,
    /// The process whose memory and descriptors are the server's own (`None`: unknown).
    pub pid: Option<u32>,
    pub description: String,
    running: Running,
}

enum Running {
    InProcess {
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    },
    Child(tokio::process::Child),
    External,
}

/// The repository root, where the shipped policies and prompts are.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Accepts only loopback hosts: load must never leave this machine.
///
/// # Errors
/// A host that is not a loopback address or `localhost`.
pub fn require_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{url}: only loopback targets are allowed (127.0.0.0/8, ::1, localhost)");
    }
    Ok(())
}

/// A fresh `auth.dev_secret`; replicas that share one accept each other's tokens.
pub fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl ServerUnderTest {
    /// Starts (or connects to) the server.
    ///
    /// # Errors
    /// A non-loopback target or Redis URL, a server that does not build or start.
    pub async fn start(
        args: &ServerArgs,
        default: Placement,
        model: Model<'_>,
        max_conversation_events: u64,
    ) -> anyhow::Result<Self> {
        if let Some(url) = &args.redis_url {
            require_loopback(url)?;
        }
        if let Some(target) = &args.target {
            require_loopback(target)?;
            let secret = args
                .secret
                .clone()
                .context("--target needs --secret (the server's auth.dev_secret)")?;
            let ws_base = target.trim_end_matches('/').to_owned();
            anyhow::ensure!(
                ws_base.starts_with("ws://"),
                "--target must be a ws:// URL such as ws://127.0.0.1:8080"
            );
            return Ok(Self {
                description: format!("external server at {ws_base}"),
                ws_base,
                keys: TokenKeys::hs256(&secret, "carebridge", "carebridge"),
                pid: args.server_pid,
                running: Running::External,
            });
        }
        let placement = args.server.unwrap_or(default);
        let secret = random_secret();
        let keys = TokenKeys::hs256(&secret, "carebridge", "carebridge");
        let store = match &args.redis_url {
            Some(url) => format!("Redis store at {url}"),
            None => "memory store".to_owned(),
        };
        match placement {
            Placement::InProcess => {
                let mut settings = settings(args, &secret, &model, max_conversation_events);
                if !args.keep_rate_limits {
                    settings = without_rate_limits(settings)?;
                }
                let application = Application::build(settings)
                    .await
                    .context("the in-process Carebridge did not build")?;
                let port = application.port();
                let shutdown = application.shutdown_token();
                let task = tokio::spawn(async move {
                    if let Err(error) = application.run_until(std::future::pending()).await {
                        eprintln!("in-process server stopped: {error}");
                    }
                });
                Ok(Self {
                    ws_base: format!("ws://127.0.0.1:{port}"),
                    keys,
                    pid: Some(std::process::id()),
                    description: format!("in-process server, {store}"),
                    running: Running::InProcess { shutdown, task },
                })
            }
            Placement::Child => {
                Self::start_child(args, &secret, model, max_conversation_events).await
            }
        }
    }

    /// Starts `carebridge serve` as a child process signing tokens with `secret`: replicas
    /// started with one secret (and one `--redis-url`) serve the same patients.
    ///
    /// # Errors
    /// A non-loopback Redis URL, a server that does not start or never reports its port.
    pub async fn start_child(
        args: &ServerArgs,
        secret: &str,
        model: Model<'_>,
        max_conversation_events: u64,
    ) -> anyhow::Result<Self> {
        if let Some(url) = &args.redis_url {
            require_loopback(url)?;
        }
        let store = match &args.redis_url {
            Some(url) => format!("Redis store at {url}"),
            None => "memory store".to_owned(),
        };
        let (child, port) = start_child(args, secret, &model, max_conversation_events).await?;
        let pid = child.id();
        Ok(Self {
            ws_base: format!("ws://127.0.0.1:{port}"),
            keys: TokenKeys::hs256(secret, "carebridge", "carebridge"),
            pid,
            description: format!(
                "child process `carebridge serve` (pid {}), {store}",
                pid.unwrap_or(0)
            ),
            running: Running::Child(child),
        })
    }

    pub fn is_in_process(&self) -> bool {
        matches!(self.running, Running::InProcess { .. })
    }

    /// A token for `subject` with `role`.
    ///
    /// # Errors
    /// Signing failed.
    pub fn token(&self, subject: &str, role: Role) -> anyhow::Result<String> {
        self.keys
            .mint(subject, role, TOKEN_LIFETIME)
            .map_err(|error| anyhow::anyhow!("cannot mint a token: {error}"))
    }

    pub async fn stop(self) {
        match self.running {
            Running::InProcess { shutdown, task } => {
                shutdown.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
            Running::Child(mut child) => {
                let _ = child.kill().await;
            }
            Running::External => {}
        }
    }
}

fn settings(
    args: &ServerArgs,
    secret: &str,
    model: &Model<'_>,
    max_conversation_events: u64,
) -> Settings {
    let root = repo();
    let mut settings = Settings::default();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.shutdown_grace_ms = 2_000;
    settings.policies.dir = root.join("policies");
    settings.policies.watch_interval_ms = 0;
    settings.prompts_dir = root.join("prompts");
    settings.auth.dev_secret = secret.to_owned();
    settings.limits.max_conversation_events = settings
        .limits
        .max_conversation_events
        .max(max_conversation_events);
    settings.llm.redaction_file = root.join("policies/redaction.toml");
    settings.llm.api_key_env = FAKE_KEY_VARIABLE.into();
    if args.trusted_provider {
        settings.llm.trust = carebridge::config::ProviderTrust::Trusted;
    }
    if let Model::Fake(base_url) = model {
        settings.llm.provider = Provider::Openai;
        settings.llm.base_url = (*base_url).to_owned();
        settings.llm.model = "fake-load".into();
    }
    if let Some(url) = &args.redis_url {
        settings.store.backend = StoreBackend::Redis;
        settings.store.redis_url = url.clone();
    }
    settings
}

fn server_binary(args: &ServerArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.server_bin {
        return Ok(path.clone());
    }
    // target/<profile>/examples/load -> target/<profile>/carebridge
    let example = std::env::current_exe().context("cannot locate this executable")?;
    let binary = example
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("carebridge"))
        .context("cannot find the target directory")?;
    if !binary.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release` (or pass --server-bin)",
            binary.display()
        );
    }
    Ok(binary)
}

async fn start_child(
    args: &ServerArgs,
    secret: &str,
    model: &Model<'_>,
    max_conversation_events: u64,
) -> anyhow::Result<(tokio::process::Child, u16)> {
    let root = repo();
    let binary = server_binary(args)?;
    let mut command = tokio::process::Command::new(&binary);
    command
        .arg("serve")
        .current_dir(&root)
        .env("CAREBRIDGE_SERVER__HOST", "127.0.0.1")
        .env("CAREBRIDGE_SERVER__PORT", "0")
        .env("CAREBRIDGE_SERVER__SHUTDOWN_GRACE_MS", "2000")
        .env("CAREBRIDGE_POLICIES__DIR", root.join("policies"))
        .env("CAREBRIDGE_POLICIES__WATCH_INTERVAL_MS", "0")
        .env("CAREBRIDGE_PROMPTS_DIR", root.join("prompts"))
        .env("CAREBRIDGE_AUTH__DEV_SECRET", secret)
        .env(
            "CAREBRIDGE_LIMITS__MAX_CONVERSATION_EVENTS",
            max_conversation_events.max(2_000).to_string(),
        )
        .env(
            "CAREBRIDGE_LLM__REDACTION_FILE",
            root.join("policies/redaction.toml"),
        )
        .env("CAREBRIDGE_LLM__API_KEY_ENV", FAKE_KEY_VARIABLE)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if args.trusted_provider {
        command.env("CAREBRIDGE_LLM__TRUST", "trusted");
    }
    for pair in &args.server_env {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--server-env {pair}: expected KEY=VALUE"))?;
        command.env(key, value);
    }
    if !args.keep_rate_limits {
        for key in rate_limit_keys() {
            command.env(
                format!("CAREBRIDGE_RATE_LIMITS__{}", key.to_uppercase()),
                "0",
            );
        }
    }
    match model {
        Model::Demo => {
            command.env("CAREBRIDGE_LLM__PROVIDER", "demo");
        }
        Model::Fake(base_url) => {
            command
                .env("CAREBRIDGE_LLM__PROVIDER", "openai")
                .env("CAREBRIDGE_LLM__BASE_URL", base_url)
                .env("CAREBRIDGE_LLM__MODEL", "fake-load");
        }
    }
    match &args.redis_url {
        Some(url) => {
            command
                .env("CAREBRIDGE_STORE__BACKEND", "redis")
                .env("CAREBRIDGE_STORE__REDIS_URL", url);
        }
        None => {
            command.env("CAREBRIDGE_STORE__BACKEND", "memory");
        }
    }
    match &args.server_log {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            command.stderr(file);
        }
        None => {
            command.stderr(Stdio::null());
        }
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("the child server has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            // "carebridge listening on http://127.0.0.1:PORT  (patients: …)"
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let address = rest.split_whitespace().next().unwrap_or_default();
                if let Some(port) = address
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                {
                    return Ok::<_, std::io::Error>(Some(port));
                }
            }
        }
        Ok(None)
    })
    .await
    .context("the child server did not report its port within 120 s")??;
    let Some(port) = port else {
        let status = child.wait().await.ok();
        bail!(
            "the child server exited before listening ({status:?}); run with --server-log FILE to see why"
        );
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, port))
}

/// What `/proc` says about a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub open_fds: usize,
    /// Descriptors that are TCP connections to the model provider (the HTTP client's keep-alive
    /// pool), counted apart: they close on the pool's idle timeout, not when the load ends.
    pub provider_connections: usize,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, 100 on every Linux
/// architecture we run on (reading it properly needs `sysconf`, that is libc).
const TICKS_PER_SECOND: u64 = 100;

fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based, man proc).
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (user + system) * 1000 / TICKS_PER_SECOND,
    ))
}

/// Reads the resident memory and open descriptors of `pid`.
///
/// # Errors
/// The process is gone or `/proc` is not readable.
pub fn process_stats(pid: u32, provider_port: Option<u16>) -> anyhow::Result<ProcessStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    let mut socket_inodes = Vec::new();
    let mut open_fds = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
    {
        let Ok(entry) = entry else { continue };
        open_fds += 1;
        if let Ok(link) = std::fs::read_link(entry.path())
            && let Some(inode) = link
                .to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
        {
            socket_inodes.push(inode);
        }
    }
    let provider_connections = match provider_port {
        Some(port) => {
            let to_provider = tcp_inodes_with_remote_port(pid, port);
            socket_inodes
                .iter()
                .filter(|inode| to_provider.contains(inode))
                .count()
        }
        None => 0,
    };
    Ok(ProcessStats {
        rss_bytes: rss_kib * 1024,
        open_fds,
        provider_connections,
        cpu: cpu_time(pid).unwrap_or_default(),
    })
}

/// Inodes of TCP sockets in `pid`'s network namespace whose remote port is `port`.
fn tcp_inodes_with_remote_port(pid: u32, port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.rsplit_once(':'))
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            if remote_port == Some(port)
                && let Some(inode) = fields.get(9).and_then(|inode| inode.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// The soft and hard limits on open files of `pid` (`None` for "unlimited" or unreadable).
pub fn open_file_limits(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(limits) = std::fs::read_to_string(format!("/proc/{pid}/limits")) else {
        return (None, None);
    };
    let Some(line) = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
    else {
        return (None, None);
    };
    // "Max open files            20000                20000                files"
    let mut fields = line.split_whitespace().skip(3);
    let soft = fields.next().and_then(|value| value.parse().ok());
    let hard = fields.next().and_then(|value| value.parse().ok());
    (soft, hard)
}

/// CPU time all processes on this machine have used so far (`/proc/stat`, every core).
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|value| value.parse().ok())
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .map(|(_, value)| value)
        .sum();
    Some(Duration::from_millis(busy * 1000 / TICKS_PER_SECOND))
}

/// CPU used by other processes (a compiler, another test) while the load ran: the figures are
/// only as good as the machine was quiet.
pub struct OtherLoad {
    busy: Option<Duration>,
    ours: Vec<Option<Duration>>,
    /// The CPU time of one of our processes that ended before the count did.
    last: Vec<Option<Duration>>,
    pids: Vec<u32>,
    started: std::time::Instant,
}

impl OtherLoad {
    /// Starts counting; `pids` are this run's own processes (load generator, server).
    pub fn start(pids: &[u32]) -> Self {
        let mut pids = pids.to_vec();
        pids.sort_unstable();
        pids.dedup();
        Self {
            busy: machine_busy(),
            ours: pids.iter().map(|pid| cpu_time(*pid)).collect(),
            last: vec![None; pids.len()],
            pids,
            started: std::time::Instant::now(),
        }
    }

    /// Takes the CPU time of one of our processes that is about to end, which `/proc` will no
    /// longer show.
    pub fn ending(&mut self, pid: u32) {
        if let Some(index) = self.pids.iter().position(|ours| *ours == pid) {
            self.last[index] = cpu_time(pid);
        }
    }

    /// Other processes' CPU since `start`, as a share of one core (1.0 = one core busy).
    pub fn cores(&self) -> Option<f64> {
        let busy = machine_busy()?.checked_sub(self.busy?)?;
        let mut ours = Duration::ZERO;
        for ((pid, before), last) in self.pids.iter().zip(&self.ours).zip(&self.last) {
            let now = match last {
                Some(last) => *last,
                None => cpu_time(*pid)?,
            };
            ours += now.checked_sub((*before)?)?;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        (elapsed > 0.0).then(|| busy.saturating_sub(ours).as_secs_f64() / elapsed)
    }
}

/// A little about this machine for the report: CPUs, CPU model, memory.
pub fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_default();
    let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0);
    serde_json::json!({
        "cpus": cpus,
        "cpu_model": model,
        "memory_mib": memory_kib / 1024,
    })
}

/// Quantiles (`0.5`, `0.99`, …) of one summary metric on the server's `/metrics`, in seconds.
pub type Quantiles = Vec<(String, f64)>;

/// Reads the server's own summaries of `names` from `GET /metrics`.
///
/// # Errors
/// The endpoint did not answer.
pub async fn server_quantiles(
    ws_base: &str,
    names: &[&str],
) -> anyhow::Result<Vec<(String, Quantiles)>> {
    let url = format!("{}/metrics", ws_base.replacen("ws://", "http://", 1));
    let text = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .text()
        .await?;
    let mut found = Vec::new();
    for name in names {
        let prefix = format!("{name}{{");
        let quantiles: Quantiles = text
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .filter_map(|line| {
                let quantile = line.split("quantile=\"").nth(1)?.split('"').next()?;
                let value: f64 = line.rsplit_once(' ')?.1.parse().ok()?;
                Some((quantile.to_owned(), value))
            })
            .collect();
        found.push(((*name).to_owned(), quantiles));
    }
    Ok(found)
}
