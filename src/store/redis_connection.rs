//! One connection type for a single Redis server or a Redis Cluster, so the store and the audit
//! trail run the same commands and scripts on both.
//!
//! Every key a command or script touches shares one hash tag (`cb:{<session>}:…`,
//! `cb:{queue}:…`, `cb:{audit}:…`), so each lands in one Cluster slot. Notices use classic
//! pub/sub, which a Cluster forwards to every node: listening on any one node is enough.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A comma-separated list of seed nodes (cluster) or one URL.
fn urls(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect()
}

impl RedisConnection {
    /// Connects to one server, or with `cluster` to the Cluster that `url`'s comma-separated seed
    /// nodes belong to. Reconnects by itself after a failure.
    ///
    /// # Errors
    /// An invalid URL, or nothing reachable.
    pub async fn open(url: &str, cluster: bool) -> RedisResult<Self> {
        let connect = Duration::from_secs(1);
        let response = Duration::from_secs(2);
        if cluster {
            let connection = ClusterClientBuilder::new(urls(url))
                .connection_timeout(connect)
                .response_timeout(response)
                .retries(3)
                .build()?
                .get_async_connection()
                .await?;
            return Ok(Self::Cluster(connection));
        }
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self::Single(
            client.get_connection_manager_with_config(config).await?,
        ))
    }

    /// Clients to listen for notices on: each node named in `url`, tried in turn.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn pubsub_clients(url: &str) -> RedisResult<Vec<redis::Client>> {
        urls(url).into_iter().map(redis::Client::open).collect()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
