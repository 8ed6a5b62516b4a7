//! What one DSSS server holds for its callers, bounded in bytes and time (feature `grpc`).
//!
//! Every bound is a field of [`ServerLimits`], settable in the topology's `[limits]` table:
//!
//! - connections: at most `connections_per_address_max` open connections per remote IP
//!   address and `handshakes_in_flight_max` TLS handshakes at once, each given
//!   `handshake_timeout_us`;
//! - liveness: an HTTP/2 ping every `keepalive_interval_us`, the connection closed when one
//!   goes unanswered for `keepalive_timeout_us` (a peer that vanished without closing);
//! - idleness: a connection that carried no request for `connection_idle_timeout_us` is closed
//!   (a client's channel connects again on its next call);
//! - requests in flight: at most `streams_per_connection_max` at once on one connection, and
//!   their bytes (counted as they arrive, held until the call is answered) at most
//!   `request_bytes_per_connection_max` per connection, `request_bytes_per_caller_max` per
//!   caller (a certificate's identity, or a remote IP address over plaintext) and
//!   `request_bytes_per_server_max` for the whole server. A request that would pass one is
//!   refused with `RESOURCE_EXHAUSTED` naming the bound; the bytes of a request stream
//!   (`DeliverStream`) count only while the server holds them, one message at a time.
//!
//! The connection side lives in [`crate::tls`] (the accept loop and [`ConnectionState`]); the
//! request side in [`crate::access::Guarded`], which charges every admitted request to a
//! [`RequestBudgets`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tonic::Status;

/// Open connections per remote IP address, by default.
pub const CONNECTIONS_PER_ADDRESS_MAX_DEFAULT: usize = 512;
/// TLS handshakes in flight at once, by default.
pub const HANDSHAKES_IN_FLIGHT_MAX_DEFAULT: usize = 256;
/// How long a TLS handshake may take, in microseconds, by default.
pub const HANDSHAKE_TIMEOUT_US_DEFAULT: u64 = 10_000_000;
/// The HTTP/2 keepalive interval, in microseconds, by default: a peer that vanished without
/// closing (a host that died, a cut link that drops packets) is found within this and
/// [`KEEPALIVE_TIMEOUT_US_DEFAULT`], instead of when the operating system gives up on the
/// connection, minutes later.
pub const KEEPALIVE_INTERVAL_US_DEFAULT: u64 = 10_000_000;
/// How long a ping may stay unanswered before the connection is closed, by default.
pub const KEEPALIVE_TIMEOUT_US_DEFAULT: u64 = 20_000_000;
/// How long a connection may carry no request before it is closed, by default: ten minutes.
pub const CONNECTION_IDLE_TIMEOUT_US_DEFAULT: u64 = 600_000_000;
/// Requests (HTTP/2 streams) in flight at once on one connection, by default.
pub const STREAMS_PER_CONNECTION_MAX_DEFAULT: u32 = 1_024;
/// Bytes of requests in flight on one connection, by default: two of the largest messages.
pub const REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT: u64 = 2 * crate::GRPC_MESSAGE_BYTES_MAX as u64;
/// Bytes of requests in flight from one caller, by default.
pub const REQUEST_BYTES_PER_CALLER_MAX_DEFAULT: u64 = 4 * crate::GRPC_MESSAGE_BYTES_MAX as u64;
/// Bytes of requests in flight on the whole server, by default.
pub const REQUEST_BYTES_PER_SERVER_MAX_DEFAULT: u64 = 16 * crate::GRPC_MESSAGE_BYTES_MAX as u64;

/// The bounds of one server (see the module's list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections per remote IP address.
    pub connections_per_address_max: usize,
    /// TLS handshakes in flight at once.
    pub handshakes_in_flight_max: usize,
    /// How long a TLS handshake may take, in microseconds.
    pub handshake_timeout_us: u64,
    /// The HTTP/2 keepalive interval, in microseconds.
    pub keepalive_interval_us: u64,
    /// How long a keepalive ping may go unanswered, in microseconds.
    pub keepalive_timeout_us: u64,
    /// How long a connection may carry no request, in microseconds.
    pub connection_idle_timeout_us: u64,
    /// Requests in flight on one connection.
    pub streams_per_connection_max: u32,
    /// Bytes of requests in flight on one connection.
    pub request_bytes_per_connection_max: u64,
    /// Bytes of requests in flight from one caller.
    pub request_bytes_per_caller_max: u64,
    /// Bytes of requests in flight on the server.
    pub request_bytes_per_server_max: u64,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
            handshakes_in_flight_max: HANDSHAKES_IN_FLIGHT_MAX_DEFAULT,
            handshake_timeout_us: HANDSHAKE_TIMEOUT_US_DEFAULT,
            keepalive_interval_us: KEEPALIVE_INTERVAL_US_DEFAULT,
            keepalive_timeout_us: KEEPALIVE_TIMEOUT_US_DEFAULT,
            connection_idle_timeout_us: CONNECTION_IDLE_TIMEOUT_US_DEFAULT,
            streams_per_connection_max: STREAMS_PER_CONNECTION_MAX_DEFAULT,
            request_bytes_per_connection_max: REQUEST_BYTES_PER_CONNECTION_MAX_DEFAULT,
            request_bytes_per_caller_max: REQUEST_BYTES_PER_CALLER_MAX_DEFAULT,
            request_bytes_per_server_max: REQUEST_BYTES_PER_SERVER_MAX_DEFAULT,
        }
    }
}

impl ServerLimits {
    /// Checks that every bound admits something; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            (
                "connections_per_address_max",
                self.connections_per_address_max as u64,
            ),
            (
                "handshakes_in_flight_max",
                self.handshakes_in_flight_max as u64,
            ),
            ("handshake_timeout_us", self.handshake_timeout_us),
            ("keepalive_interval_us", self.keepalive_interval_us),
            ("keepalive_timeout_us", self.keepalive_timeout_us),
            (
                "connection_idle_timeout_us",
                self.connection_idle_timeout_us,
            ),
            (
                "streams_per_connection_max",
                u64::from(self.streams_per_connection_max),
            ),
            (
                "request_bytes_per_connection_max",
                self.request_bytes_per_connection_max,
            ),
            (
                "request_bytes_per_caller_max",
                self.request_bytes_per_caller_max,
            ),
            (
                "request_bytes_per_server_max",
                self.request_bytes_per_server_max,
            ),
        ] {
            if value == 0 {
                return Err(format!("limits: {name} is 0, which admits nothing"));
            }
        }
        Ok(())
    }
}

/// Microseconds on the process's monotonic clock (tokio's, so that tests may pause it).
pub(crate) fn monotonic_us() -> u64 {
    static BASE: OnceLock<tokio::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(tokio::time::Instant::now);
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// What a server knows of one open connection: the requests it carries, when it last carried
/// one, the bytes of its requests in flight, and (once asked) who its certificate says the
/// caller is.
#[derive(Debug)]
pub struct ConnectionState {
    requests_in_flight: AtomicU64,
    /// When the connection was accepted or last finished a request ([`monotonic_us`]).
    last_request_us: AtomicU64,
    request_bytes: AtomicU64,
    /// The caller the connection's certificate names, read at its first request.
    pub(crate) caller: OnceLock<Result<crate::access::Caller, Status>>,
}

impl ConnectionState {
    /// The state of a connection accepted now.
    pub fn accepted() -> ConnectionState {
        ConnectionState {
            requests_in_flight: AtomicU64::new(0),
            last_request_us: AtomicU64::new(monotonic_us()),
            request_bytes: AtomicU64::new(0),
            caller: OnceLock::new(),
        }
    }

    /// When the connection becomes idle past `idle_timeout_us` ([`monotonic_us`]); `None`
    /// while it carries a request.
    pub(crate) fn idle_deadline_us(&self, idle_timeout_us: u64) -> Option<u64> {
        if self.requests_in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            self.last_request_us
                .load(Ordering::Acquire)
                .saturating_add(idle_timeout_us),
        )
    }

    /// Counts a request until the returned guard drops.
    pub(crate) fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.requests_in_flight.fetch_add(1, Ordering::AcqRel);
        ActiveRequest {
            connection: Arc::clone(self),
        }
    }

    /// The bytes of this connection's requests in flight.
    pub fn request_bytes(&self) -> u64 {
        self.request_bytes.load(Ordering::Acquire)
    }
}

/// One request a connection carries; its end is the connection's latest activity.
#[derive(Debug)]
pub(crate) struct ActiveRequest {
    connection: Arc<ConnectionState>,
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.connection
            .last_request_us
            .store(monotonic_us(), Ordering::Release);
        self.connection
            .requests_in_flight
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bytes of requests in flight on one server, per caller and in all (each connection
/// counts its own in its [`ConnectionState`]).
#[derive(Debug, Default)]
pub struct RequestBudgets {
    limits: ServerLimits,
    per_caller: Mutex<HashMap<String, u64>>,
    server: AtomicU64,
}

impl PartialEq for RequestBudgets {
    /// Budgets are alike when their bounds are: what is in flight is not part of what a
    /// server was configured with.
    fn eq(&self, other: &RequestBudgets) -> bool {
        self.limits == other.limits
    }
}

impl Eq for RequestBudgets {}

impl RequestBudgets {
    /// Empty budgets under `limits`.
    pub fn new(limits: ServerLimits) -> RequestBudgets {
        RequestBudgets {
            limits,
            per_caller: Mutex::new(HashMap::new()),
            server: AtomicU64::new(0),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// The bytes of requests in flight on the server.
    pub fn server_bytes(&self) -> u64 {
        self.server.load(Ordering::Acquire)
    }

    /// The bytes of requests in flight from `caller`.
    pub fn caller_bytes(&self, caller: &str) -> u64 {
        self.lock_callers().get(caller).copied().unwrap_or(0)
    }

    fn lock_callers(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.per_caller
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one request holds of its connection's, its caller's and its server's budgets; given
/// back when it drops.
#[derive(Debug)]
pub(crate) struct Charge {
    budgets: Arc<RequestBudgets>,
    connection: Option<Arc<ConnectionState>>,
    caller: String,
    path: String,
    bytes: AtomicU64,
}

impl Charge {
    /// A charge of nothing yet, for a request of `caller` (a key naming it) to `path`.
    pub(crate) fn new(
        budgets: Arc<RequestBudgets>,
        connection: Option<Arc<ConnectionState>>,
        caller: String,
        path: String,
    ) -> Charge {
        Charge {
            budgets,
            connection,
            caller,
            path,
            bytes: AtomicU64::new(0),
        }
    }

    /// Adds `bytes` that arrived, or refuses them (taking nothing) when they would pass a
    /// bound; the refusal names the bound and its setting.
    pub(crate) fn add(&self, bytes: u64) -> Result<(), Status> {
        let limits = &self.budgets.limits;
        if let Some(connection) = &self.connection {
            let held = connection.request_bytes.fetch_add(bytes, Ordering::AcqRel);
            if held.saturating_add(bytes) > limits.request_bytes_per_connection_max {
                connection.request_bytes.fetch_sub(bytes, Ordering::AcqRel);
                return Err(self.refuse(
                    "this connection",
                    held,
                    bytes,
                    limits.request_bytes_per_connection_max,
                    "request_mb_per_connection",
                ));
            }
        }
        let undo_connection = |charge: &Charge| {
            if let Some(connection) = &charge.connection {
                connection.request_bytes.fetch_sub(bytes, Ordering::AcqRel);
            }
        };
        {
            let mut callers = self.budgets.lock_callers();
            let held = callers.get(&self.caller).copied().unwrap_or(0);
            if held.saturating_add(bytes) > limits.request_bytes_per_caller_max {
                drop(callers);
                undo_connection(self);
                return Err(self.refuse(
                    "this caller",
                    held,
                    bytes,
                    limits.request_bytes_per_caller_max,
                    "request_mb_per_caller",
                ));
            }
            *callers.entry(self.caller.clone()).or_insert(0) += bytes;
        }
        let held = self.budgets.server.fetch_add(bytes, Ordering::AcqRel);
        if held.saturating_add(bytes) > limits.request_bytes_per_server_max {
            self.budgets.server.fetch_sub(bytes, Ordering::AcqRel);
            self.release_caller(bytes);
            undo_connection(self);
            return Err(self.refuse(
                "this server",
                held,
                bytes,
                limits.request_bytes_per_server_max,
                "request_mb_per_server",
            ));
        }
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Gives back everything this charge holds.
    pub(crate) fn release_all(&self) {
        let bytes = self.bytes.swap(0, Ordering::AcqRel);
        self.give_back(bytes);
    }

    /// Gives back `bytes` of what this charge holds (at most all of it).
    pub(crate) fn release(&self, bytes: u64) {
        let mut held = self.bytes.load(Ordering::Acquire);
        loop {
            let taken = bytes.min(held);
            match self.bytes.compare_exchange(
                held,
                held - taken,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return self.give_back(taken),
                Err(now) => held = now,
            }
        }
    }

    fn give_back(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if let Some(connection) = &self.connection {
            connection.request_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
        self.release_caller(bytes);
        self.budgets.server.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn release_caller(&self, bytes: u64) {
        let mut callers = self.budgets.lock_callers();
        if let Some(held) = callers.get_mut(&self.caller) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                callers.remove(&self.caller);
            }
        }
    }

    fn refuse(&self, whose: &str, held: u64, bytes: u64, bound: u64, setting: &str) -> Status {
        let message = format!(
            "{}: {whose} has {held} bytes of requests in flight, and {bytes} more would pass \
             its bound of {bound} bytes (the topology's [limits] {setting}); retry once calls \
             in flight are answered",
            self.path
        );
        tracing::warn!(
            caller = self.caller.as_str(),
            reason = message.as_str(),
            "request refused"
        );
        Status::resource_exhausted(message)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connection: u64, caller: u64, server: u64) -> ServerLimits {
        ServerLimits {
            request_bytes_per_connection_max: connection,
            request_bytes_per_caller_max: caller,
            request_bytes_per_server_max: server,
            ..ServerLimits::default()
        }
    }

    fn charge(
        budgets: &Arc<RequestBudgets>,
        connection: &Arc<ConnectionState>,
        caller: &str,
    ) -> Charge {
        Charge::new(
            Arc::clone(budgets),
            Some(Arc::clone(connection)),
            caller.to_owned(),
            "/dsss.v1.RegionClient/Propose".to_owned(),
        )
    }

    #[test]
    fn each_bound_refuses_what_would_pass_it_and_takes_nothing_then() {
        let budgets = Arc::new(RequestBudgets::new(limits(100, 150, 200)));
        let first = Arc::new(ConnectionState::accepted());
        let second = Arc::new(ConnectionState::accepted());
        let third = Arc::new(ConnectionState::accepted());
        let a = charge(&budgets, &first, "alice");
        a.add(60).expect("within every bound");
        a.add(40).expect("exactly at the connection's bound");
        let refused = a.add(1).expect_err("past the connection's bound");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("request_mb_per_connection"),
            "{refused:?}"
        );
        let b = charge(&budgets, &second, "alice");
        b.add(50).expect("alice at 150");
        let refused = b.add(1).expect_err("past alice's bound");
        assert!(
            refused.message().contains("request_mb_per_caller"),
            "{refused:?}"
        );
        assert_eq!(
            second.request_bytes(),
            50,
            "the refused bytes were not kept"
        );
        let c = charge(&budgets, &third, "bob");
        c.add(50).expect("the server at 200");
        let refused = c.add(1).expect_err("past the server's bound");
        assert!(
            refused.message().contains("request_mb_per_server"),
            "{refused:?}"
        );
        assert_eq!(budgets.caller_bytes("bob"), 50);
        assert_eq!(budgets.server_bytes(), 200);
        drop(a);
        assert_eq!(first.request_bytes(), 0);
        assert_eq!(budgets.caller_bytes("alice"), 50);
        c.add(1).expect("room again once a request was answered");
        drop((b, c));
        assert_eq!(budgets.server_bytes(), 0);
        assert_eq!(budgets.caller_bytes("alice"), 0);
    }

    #[test]
    fn a_connection_is_idle_only_while_it_carries_no_request() {
        let connection = Arc::new(ConnectionState::accepted());
        let accepted = connection.idle_deadline_us(1_000).expect("idle at first");
        let request = connection.start_request();
        assert_eq!(connection.idle_deadline_us(1_000), None);
        drop(request);
        let after = connection.idle_deadline_us(1_000).expect("idle again");
        assert!(after >= accepted, "the deadline moved back");
    }

    #[test]
    fn a_bound_of_zero_is_named() {
        let limits = ServerLimits {
            request_bytes_per_caller_max: 0,
            ..ServerLimits::default()
        };
        assert!(
            limits
                .validate()
                .expect_err("zero")
                .contains("request_bytes_per_caller_max")
        );
        ServerLimits::default().validate().expect("defaults");
    }
}
