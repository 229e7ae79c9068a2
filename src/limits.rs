//! Abuse limits: message and connection rates per user and per address, and a cap on a user's
//! concurrent sockets. A flood slows the flooder, not the service.
//!
//! One safety exception: a message over the rate limit that the policies rate an emergency is
//! still taken, within a small budget of its own, so a distressed patient typing fast is never
//! told to wait. The budget keeps that exception from becoming a way around the limit.
//!
//! Limits are per replica (kept in memory, not in the store): behind a load balancer each replica
//! enforces them on the traffic it sees, which bounds a flood without a store round trip per
//! message.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

/// Rates and caps; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateSettings {
    /// Patient messages per minute per user, with a burst allowance.
    pub user_messages_per_minute: u32,
    pub user_message_burst: u32,
    /// Patient messages per minute per client address (all users behind it).
    pub address_messages_per_minute: u32,
    pub address_message_burst: u32,
    /// WebSocket upgrades per minute per address and per user.
    pub address_connections_per_minute: u32,
    pub user_connections_per_minute: u32,
    pub connection_burst: u32,
    /// Open sockets one user may hold at once (phone, laptop, a reconnect in flight).
    pub max_sockets_per_user: u32,
    /// Emergency messages per minute per user taken even over the message rate.
    pub emergency_overrides_per_minute: u32,
    /// Model replies streaming at once on this replica; more wait their turn.
    pub max_model_streams: usize,
    /// Use the first `X-Forwarded-For` address as the client's (only behind a proxy that sets
    /// it; otherwise a client could pick its own address).
    pub trust_forwarded_for: bool,
    /// How often idle keys are dropped from the limiters.
    pub prune_interval_ms: u64,
}

impl Default for RateSettings {
    fn default() -> Self {
        Self {
            user_messages_per_minute: 20,
            user_message_burst: 10,
            address_messages_per_minute: 300,
            address_message_burst: 60,
            address_connections_per_minute: 120,
            user_connections_per_minute: 30,
            connection_burst: 20,
            max_sockets_per_user: 4,
            emergency_overrides_per_minute: 6,
            max_model_streams: 256,
            trust_forwarded_for: false,
            prune_interval_ms: 60_000,
        }
    }
}

/// A limit was hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many {what}; try again in {} ms", retry_after.as_millis())]
    TooFast {
        what: &'static str,
        retry_after: Duration,
    },
    #[error("this account already has {limit} open connections; close one first")]
    TooManySockets { limit: u32 },
}

impl Refusal {
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::TooFast { retry_after, .. } => Some(
                u64::try_from(retry_after.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            ),
            Self::TooManySockets { .. } => None,
        }
    }
}

struct Rate<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    what: &'static str,
}

impl<K: Hash + Eq + Clone> Rate<K> {
    /// `None` when the rate is 0 (off).
    fn per_minute(rate: u32, burst: u32, what: &'static str) -> Option<Self> {
        let rate = NonZeroU32::new(rate)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            what,
        })
    }

    fn check(&self, key: &K) -> Result<(), Refusal> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| Refusal::TooFast {
                what: self.what,
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    fn prune(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }
}

fn check<K: Hash + Eq + Clone>(rate: Option<&Rate<K>>, key: &K) -> Result<(), Refusal> {
    rate.map_or(Ok(()), |rate| rate.check(key))
}

/// Every limit of one replica.
pub struct Limits {
    settings: RateSettings,
    user_messages: Option<Rate<String>>,
    address_messages: Option<Rate<IpAddr>>,
    user_connections: Option<Rate<String>>,
    address_connections: Option<Rate<IpAddr>>,
    emergency_overrides: Option<Rate<String>>,
    sockets: Mutex<HashMap<String, u32>>,
}

impl Limits {
    pub fn new(settings: &RateSettings) -> Self {
        let burst = settings.connection_burst;
        Self {
            settings: settings.clone(),
            user_messages: Rate::per_minute(
                settings.user_messages_per_minute,
                settings.user_message_burst,
                "messages",
            ),
            address_messages: Rate::per_minute(
                settings.address_messages_per_minute,
                settings.address_message_burst,
                "messages from this address",
            ),
            user_connections: Rate::per_minute(
                settings.user_connections_per_minute,
                burst,
                "connections",
            ),
            address_connections: Rate::per_minute(
                settings.address_connections_per_minute,
                burst,
                "connections from this address",
            ),
            emergency_overrides: Rate::per_minute(
                settings.emergency_overrides_per_minute,
                settings.emergency_overrides_per_minute,
                "emergency messages",
            ),
            sockets: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &RateSettings {
        &self.settings
    }

    /// A new socket for `user` from `address`. The permit frees its place when dropped.
    ///
    /// # Errors
    /// Connecting too fast, or too many sockets open for this user.
    pub fn admit_socket(
        self: &Arc<Self>,
        user: &str,
        address: IpAddr,
    ) -> Result<SocketPermit, Refusal> {
        check(self.address_connections.as_ref(), &address)?;
        check(self.user_connections.as_ref(), &user.to_owned())?;
        let mut sockets = self
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = sockets.entry(user.to_owned()).or_default();
        let limit = self.settings.max_sockets_per_user;
        if limit > 0 && *open >= limit {
            return Err(Refusal::TooManySockets { limit });
        }
        *open += 1;
        Ok(SocketPermit {
            limits: Arc::clone(self),
            user: user.to_owned(),
        })
    }

    /// One patient message.
    ///
    /// # Errors
    /// Over the user's or the address's message rate.
    pub fn admit_message(&self, user: &str, address: IpAddr) -> Result<(), Refusal> {
        check(self.user_messages.as_ref(), &user.to_owned())?;
        check(self.address_messages.as_ref(), &address)
    }

    /// Whether an emergency message over the rate may still be taken.
    pub fn admit_emergency_override(&self, user: &str) -> bool {
        check(self.emergency_overrides.as_ref(), &user.to_owned()).is_ok()
    }

    /// Drops keys whose limits have fully recovered; returns how many keys are still tracked.
    pub fn prune(&self) -> usize {
        [
            self.user_messages.as_ref().map_or(0, Rate::prune),
            self.address_messages.as_ref().map_or(0, Rate::prune),
            self.user_connections.as_ref().map_or(0, Rate::prune),
            self.address_connections.as_ref().map_or(0, Rate::prune),
            self.emergency_overrides.as_ref().map_or(0, Rate::prune),
        ]
        .iter()
        .sum()
    }

    /// Prunes every `prune_interval_ms` until `stop` is cancelled.
    pub async fn run_pruning(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut ticker = tokio::time::interval(Duration::from_millis(
            self.settings.prune_interval_ms.max(100),
        ));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {
                    let tracked = self.prune();
                    metrics::gauge!("carebridge_rate_limit_keys").set(tracked as f64);
                }
            }
        }
    }
}

/// A socket's place in its user's cap.
pub struct SocketPermit {
    limits: Arc<Limits>,
    user: String,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        let mut sockets = self
            .limits
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = sockets.get_mut(&self.user) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sockets.remove(&self.user);
            }
        }
    }
}

/// The client's address: the peer, or the first `X-Forwarded-For` entry behind a trusted proxy.
pub fn client_address(request: &actix_web::HttpRequest, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for
        && let Some(value) = request.headers().get("x-forwarded-for")
        && let Ok(text) = value.to_str()
        && let Some(first) = text.split(',').next()
        && let Ok(address) = first.trim().parse()
    {
        return address;
    }
    request
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |peer| peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RateSettings {
        RateSettings {
            user_messages_per_minute: 60,
            user_message_burst: 3,
            address_messages_per_minute: 600,
            address_message_burst: 5,
            max_sockets_per_user: 2,
            ..RateSettings::default()
        }
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let limits = Limits::new(&settings());
        for _ in 0..3 {
            assert_eq!(limits.admit_message("p1", HOME), Ok(()));
        }
        let refusal = limits
            .admit_message("p1", HOME)
            .expect_err("over the burst");
        let wait = refusal.retry_after_ms().expect("a wait");
        assert!(wait > 0 && wait <= 1_000, "{wait}");
        assert_eq!(limits.admit_message("p2", HOME), Ok(()), "per user");
    }

    #[test]
    fn an_address_limit_covers_every_user_behind_it() {
        let limits = Limits::new(&settings());
        for user in 0..5 {
            assert_eq!(limits.admit_message(&format!("u{user}"), HOME), Ok(()));
        }
        assert!(limits.admit_message("u9", HOME).is_err());
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let limits = Limits::new(&RateSettings {
            user_messages_per_minute: 0,
            address_messages_per_minute: 0,
            ..RateSettings::default()
        });
        for _ in 0..1_000 {
            assert_eq!(limits.admit_message("p1", HOME), Ok(()));
        }
    }

    #[test]
    fn sockets_per_user_are_capped_and_freed() {
        let limits = Arc::new(Limits::new(&settings()));
        let first = limits.admit_socket("p1", HOME).expect("first");
        let _second = limits.admit_socket("p1", HOME).expect("second");
        assert_eq!(
            limits.admit_socket("p1", HOME).err(),
            Some(Refusal::TooManySockets { limit: 2 })
        );
        drop(first);
        assert!(limits.admit_socket("p1", HOME).is_ok());
    }

    #[test]
    fn a_flood_from_many_keys_is_pruned_once_it_stops() {
        // Six hundred per minute: a key's state is back to fresh 100 ms after its one message,
        // after the flood below has been sent even on a busy machine (at 10 ms, the first keys
        // recovered before the flood ended when other tests shared the cores).
        let limits = Limits::new(&RateSettings {
            user_messages_per_minute: 600,
            user_message_burst: 1,
            address_messages_per_minute: 600,
            address_message_burst: 1,
            ..RateSettings::default()
        });
        for index in 0..10_000u32 {
            let address = IpAddr::from(index.to_be_bytes());
            let _ = limits.admit_message(&format!("user-{index}"), address);
        }
        assert!(limits.prune() >= 10_000, "recent keys are kept");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(limits.prune(), 0, "recovered keys are dropped");
    }
}
