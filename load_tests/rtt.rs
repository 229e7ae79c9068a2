//! `rtt`: what one round trip costs, from the client's side, on this machine: a plain loopback
//! TCP echo, a WebSocket ping answered by the server's reader, and a `ping` frame answered
//! through the socket's outbox and writer. Every time-to-first-token figure carries one such
//! patient-to-server round trip that a client talking to the provider directly does not, so this
//! is the floor under "Carebridge minus direct".

use std::time::{Duration, Instant};

use anyhow::Context;
use carebridge::auth::Role;
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Buffers, Client, Incoming};
use crate::server::{Model, Placement, ServerArgs, ServerUnderTest};
use crate::stats::{Samples, Table};

#[derive(Args, Debug, Clone)]
pub struct RttArgs {
    /// Round trips of each kind.
    #[arg(long, default_value_t = 500)]
    pub count: usize,
    /// Pause between round trips, in milliseconds (a streamed reply's chunks come about 20 ms
    /// apart, so threads sleep between them as they do here).
    #[arg(long, default_value_t = 20)]
    pub pause_ms: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

const WAIT: Duration = Duration::from_secs(5);

/// Runs `rtt` and prints its report.
///
/// # Errors
/// The server or a socket failed.
pub async fn run(args: RttArgs, json_output: bool) -> anyhow::Result<bool> {
    let pause = Duration::from_millis(args.pause_ms);
    let tcp = tcp_echo(args.count, pause).await?;

    let server =
        ServerUnderTest::start(&args.server, Placement::InProcess, Model::Demo, 64).await?;
    let token = server.token("rtt-patient", Role::Patient)?;
    let url = format!("{}/v1/chat", server.ws_base);
    let mut client = Client::connect(&url, &token, Buffers::Default).await?;
    client.send(&json!({"type": "hello"})).await?;
    client
        .wait_for("welcome", WAIT)
        .await
        .context("no welcome after hello")?;

    let mut ws_ping = Samples::default();
    let mut frame_ping = Samples::default();
    for _ in 0..args.count {
        tokio::time::sleep(pause).await;
        let started = Instant::now();
        client
            .ws_ping(WAIT)
            .await
            .context("no pong to a WebSocket ping")?;
        ws_ping.push(started.elapsed());

        tokio::time::sleep(pause).await;
        let started = Instant::now();
        client.send(&json!({"type": "ping"})).await?;
        match client.next(WAIT).await {
            Incoming::Frame(frame) if frame["type"] == "pong" => frame_ping.push(started.elapsed()),
            _ => anyhow::bail!("no pong frame to a ping frame"),
        }
    }
    client.close().await;

    let mut table = Table::new();
    table.row("loopback TCP echo (no Carebridge)", &tcp);
    table.row("WebSocket ping -> pong (server's reader)", &ws_ping);
    table.row("ping frame -> pong frame (outbox, writer)", &frame_ping);
    if json_output {
        println!(
            "{}",
            json!({ "mode": "rtt", "pause_ms": args.pause_ms, "measures": table.to_json() })
        );
    } else {
        println!(
            "\nround trips from the client, {} each, {} ms apart; {}\n",
            args.count, args.pause_ms, server.description
        );
        println!("{}", table.render());
    }
    Ok(true)
}

/// A loopback echo on a thread and single-threaded runtime of its own, as each of the server's
/// workers is: the transport floor without Carebridge.
async fn tcp_echo(count: usize, pause: Duration) -> anyhow::Result<Samples> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let _ = socket.set_nodelay(true);
            let mut buffer = [0_u8; 64];
            while let Ok(read) = socket.read(&mut buffer).await {
                if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        });
    });
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    socket.set_nodelay(true)?;
    let mut samples = Samples::default();
    let mut buffer = [0_u8; 64];
    for _ in 0..count {
        tokio::time::sleep(pause).await;
        let started = Instant::now();
        socket.write_all(b"x").await?;
        let read = socket.read(&mut buffer).await?;
        anyhow::ensure!(read > 0, "the echo closed");
        samples.push(started.elapsed());
    }
    drop(socket);
    let _ = tokio::task::spawn_blocking(move || echo.join()).await;
    Ok(samples)
}
