//! The server's limits over real tonic servers on loopback (plaintext, so that the tests need
//! no certificates; the TLS accept loop shares the same bounds): requests in flight bounded in
//! bytes per connection, per caller and per server, connections per address, and idle
//! connections closed.

#![cfg(feature = "grpc")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dsss_wire::access::{AccessPolicy, Guarded};
use dsss_wire::grpc::{coordinator_client, coordinator_server};
use dsss_wire::limits::ServerLimits;
use dsss_wire::proto::coordinator_server::Coordinator;
use dsss_wire::proto::{
    ReadSealedEpochReply, ReadSealedEpochRequest, Record, RegionBatch, RegionBatchAck,
};
use dsss_wire::tls::Security;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// A coordinator whose `SubmitBatch` holds every call until the test lets it go, so that the
/// test knows what is in flight.
#[derive(Clone, Default)]
struct Holder {
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

#[tonic::async_trait]
impl Coordinator for Holder {
    async fn submit_batch(
        &self,
        request: Request<RegionBatch>,
    ) -> Result<Response<RegionBatchAck>, Status> {
        self.arrived.notify_one();
        self.release.notified().await;
        Ok(Response::new(RegionBatchAck {
            acknowledged_through_batch_number: request.get_ref().records.len() as u64,
            ..RegionBatchAck::default()
        }))
    }

    async fn read_sealed_epoch(
        &self,
        _request: Request<ReadSealedEpochRequest>,
    ) -> Result<Response<ReadSealedEpochReply>, Status> {
        Ok(Response::new(ReadSealedEpochReply {
            epoch_number: 7,
            ..ReadSealedEpochReply::default()
        }))
    }

    async fn status(
        &self,
        _request: Request<dsss_wire::proto::CoordinatorStatusRequest>,
    ) -> Result<Response<dsss_wire::proto::CoordinatorStatusReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// A plaintext server of `holder` under `limits` on a free loopback port; it stops when the
/// sender drops.
async fn serve(holder: Holder, limits: ServerLimits) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let policy = Arc::new(AccessPolicy::default().with_limits(limits.clone()));
    let router = dsss_wire::tls::server_builder(&limits)
        .add_service(Guarded::new(coordinator_server(holder), policy));
    tokio::spawn(async move {
        Security::Plaintext
            .serve(router, listener, &limits, async {
                let _ = stopped.await;
            })
            .await
    });
    (address, stop)
}

async fn channel(address: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect")
}

/// A batch whose encoding is about `bytes` long.
fn batch(bytes: usize) -> RegionBatch {
    RegionBatch {
        region: "a".to_owned(),
        records: vec![Record {
            arguments: vec![7; bytes],
            ..Record::default()
        }],
        ..RegionBatch::default()
    }
}

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn requests_past_a_byte_bound_are_refused_naming_it_and_taken_again_once_answered() {
    let holder = Holder::default();
    let limits = ServerLimits {
        request_bytes_per_connection_max: MIB,
        request_bytes_per_caller_max: 3 * MIB / 2,
        request_bytes_per_server_max: 64 * MIB,
        ..ServerLimits::default()
    };
    let (address, _stop) = serve(holder.clone(), limits).await;
    let first = channel(address).await;
    let second = channel(address).await;

    // One request larger than a connection may hold is refused whole, whatever else waits.
    let status = coordinator_client(first.clone())
        .submit_batch(batch(2 * MIB as usize))
        .await
        .expect_err("larger than the connection's bound");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("request_mb_per_connection"),
        "{status:?}"
    );

    // 700 KiB held on the first connection: another 700 KiB there passes its bound...
    let held = tokio::spawn({
        let first = first.clone();
        async move {
            coordinator_client(first)
                .submit_batch(batch(700 * 1024))
                .await
        }
    });
    holder.arrived.notified().await;
    let status = coordinator_client(first.clone())
        .submit_batch(batch(700 * 1024))
        .await
        .expect_err("past the connection's bound");
    assert!(
        status.message().contains("request_mb_per_connection"),
        "{status:?}"
    );
    // ...and on a second connection of the same caller (one address over plaintext), it
    // passes the caller's.
    let status = coordinator_client(second.clone())
        .submit_batch(batch(900 * 1024))
        .await
        .expect_err("past the caller's bound");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("request_mb_per_caller"),
        "{status:?}"
    );
    // Small calls still go through meanwhile.
    let epoch = coordinator_client(second.clone())
        .read_sealed_epoch(ReadSealedEpochRequest::default())
        .await
        .expect("a small call");
    assert_eq!(epoch.into_inner().epoch_number, 7);

    // Once the held call is answered, its bytes are given back.
    holder.release.notify_one();
    let answered = held.await.expect("joined").expect("the held call");
    assert_eq!(answered.into_inner().acknowledged_through_batch_number, 1);
    let again = tokio::spawn(async move {
        coordinator_client(second)
            .submit_batch(batch(900 * 1024))
            .await
    });
    holder.arrived.notified().await;
    holder.release.notify_one();
    again
        .await
        .expect("joined")
        .expect("taken once the earlier call was answered");
}

#[tokio::test]
async fn the_servers_bound_holds_across_callers() {
    let holder = Holder::default();
    let limits = ServerLimits {
        request_bytes_per_server_max: MIB,
        ..ServerLimits::default()
    };
    let (address, _stop) = serve(holder.clone(), limits).await;
    let first = channel(address).await;
    let held = tokio::spawn(async move {
        coordinator_client(first)
            .submit_batch(batch(700 * 1024))
            .await
    });
    holder.arrived.notified().await;
    let status = coordinator_client(channel(address).await)
        .submit_batch(batch(700 * 1024))
        .await
        .expect_err("past the server's bound");
    assert!(
        status.message().contains("request_mb_per_server"),
        "{status:?}"
    );
    holder.release.notify_one();
    held.await.expect("joined").expect("the held call");
}

#[tokio::test]
async fn a_plaintext_server_bounds_connections_per_address_too() {
    let limits = ServerLimits {
        connections_per_address_max: 1,
        ..ServerLimits::default()
    };
    let (address, _stop) = serve(Holder::default(), limits).await;
    let first = channel(address).await;
    let ask = |channel: Channel| async move {
        coordinator_client(channel)
            .read_sealed_epoch(ReadSealedEpochRequest::default())
            .await
    };
    ask(first.clone()).await.expect("the first connection");
    let second = Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    let refused = match second {
        Ok(channel) => ask(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a second connection from one address was served");
    ask(first).await.expect("the first is still served");
}

#[tokio::test]
async fn a_connection_that_carries_no_request_is_closed_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = ServerLimits {
        connection_idle_timeout_us: 500_000,
        // Pings would not close this connection first: its client answers none.
        keepalive_interval_us: 600_000_000,
        ..ServerLimits::default()
    };
    let (address, _stop) = serve(Holder::default(), limits).await;
    // An HTTP/2 connection that never makes a request.
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("the preface and empty settings");
    let mut buffer = [0_u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection was kept open");

    // A connection whose call is in flight is not idle: the held call is answered after
    // more than the idle timeout.
    let holder = Holder::default();
    let limits = ServerLimits {
        connection_idle_timeout_us: 300_000,
        ..ServerLimits::default()
    };
    let (address, _stop) = serve(holder.clone(), limits).await;
    let busy = channel(address).await;
    let held = tokio::spawn(async move { coordinator_client(busy).submit_batch(batch(10)).await });
    holder.arrived.notified().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    holder.release.notify_one();
    held.await
        .expect("joined")
        .expect("a call in flight keeps its connection");
}
