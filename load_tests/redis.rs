//! A throwaway `redis-server` for `faults`: a free loopback port, its own temporary directory,
//! and the durability the Helm chart ships (AOF, `appendfsync everysec`, no RDB snapshots), so a
//! SIGKILL and a restart on the same directory behave as the chart's Redis pod would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a start (or a restart that replays the AOF) may take before we give up.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` child process; killed when this value is dropped, whatever the exit path.
pub struct ThrowawayRedis {
    pub port: u16,
    binary: PathBuf,
    /// Holds the AOF across a kill and restart; removed on drop.
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The first `redis-server` on `PATH`.
fn find_on_path(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!("{name} is not on PATH: install Redis (apt-get install redis-server)")
        })
}

/// A port nothing listens on right now (the kernel's pick for port 0 on 127.0.0.1).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

impl ThrowawayRedis {
    /// Starts `redis-server` and waits until it answers `PING`.
    ///
    /// # Errors
    /// No `redis-server` on `PATH`, no temporary directory, or a server that does not answer.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = find_on_path("redis-server")?;
        let dir = tempfile::Builder::new()
            .prefix("carebridge-faults-redis-")
            .tempdir()
            .context("cannot create a temporary directory for Redis")?;
        let mut redis = Self {
            port: free_port()?,
            binary,
            dir,
            child: None,
        };
        redis.launch().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--logfile", "redis.log"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < READY_WITHIN {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!(
                    "redis-server on port {} exited at start ({status}); see {}",
                    self.port,
                    self.dir.path().join("redis.log").display()
                );
            }
            // A restarted Redis accepts connections while it replays the AOF and answers
            // `-LOADING` until done: only `+PONG` means it serves the data again.
            if self.answers_ping().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "redis-server on port {} did not answer PING within {} s",
            self.port,
            READY_WITHIN.as_secs()
        )
    }

    async fn answers_ping(&self) -> bool {
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut answer = [0u8; 16];
            let read = stream.read(&mut answer).await?;
            Ok::<_, std::io::Error>(answer[..read].starts_with(b"+PONG"))
        };
        tokio::time::timeout(Duration::from_millis(500), exchange)
            .await
            .is_ok_and(|answered| answered.unwrap_or(false))
    }

    /// SIGKILL: Redis gets no chance to flush anything beyond what it already wrote.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port and directory, so it replays its AOF.
    ///
    /// # Errors
    /// The server does not start or does not answer (the port may have been taken meanwhile).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.launch().await
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
