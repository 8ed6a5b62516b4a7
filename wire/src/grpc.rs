//! gRPC glue (feature `grpc`): the interceptors that send and check the protocol version, and
//! constructors for every DSSS client and server with the version check and the message size
//! limit already applied.
//!
//! Drivers should build their servers and clients with these constructors rather than with the
//! generated `new` functions, so that no service can be exposed without the version check or
//! with tonic's default message limits.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::GRPC_MESSAGE_BYTES_MAX;
use crate::proto::{
    coordinator_client::CoordinatorClient,
    coordinator_peer_client::CoordinatorPeerClient,
    coordinator_peer_server::{CoordinatorPeer, CoordinatorPeerServer},
    coordinator_server::{Coordinator, CoordinatorServer},
    region_admin_client::RegionAdminClient,
    region_admin_server::{RegionAdmin, RegionAdminServer},
    region_client_client::RegionClientClient,
    region_client_server::{RegionClient, RegionClientServer},
    region_epochs_client::RegionEpochsClient,
    region_epochs_server::{RegionEpochs, RegionEpochsServer},
    region_peer_client::RegionPeerClient,
    region_peer_server::{RegionPeer, RegionPeerServer},
};
use crate::version::{
    HEADER_ECHO_CHARS_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER, VersionError,
    check_protocol_version,
};

impl From<VersionError> for Status {
    /// Every refusal is `FAILED_PRECONDITION`: the request was well formed, but the two sides
    /// cannot talk until they run the same release. The message says which case it is.
    fn from(error: VersionError) -> Self {
        Status::failed_precondition(error.to_string())
    }
}

/// Client interceptor: adds the [`PROTOCOL_VERSION_HEADER`] header with [`PROTOCOL_VERSION`] to
/// every request, and the client's bearer token when it has one.
#[derive(Debug, Clone, Default)]
pub struct AttachProtocolVersion {
    bearer: Option<MetadataValue<Ascii>>,
}

impl AttachProtocolVersion {
    /// Also sends `authorization: Bearer <token>` with every request (see
    /// [`crate::access::AccessPolicy::with_tokens`]); the error says why the token cannot go
    /// in a header.
    pub fn with_token(token: &str) -> Result<AttachProtocolVersion, String> {
        crate::access::check_token(token)?;
        let value = format!("{}{token}", crate::access::BEARER_PREFIX)
            .parse()
            .map_err(|_| "the bearer token cannot go in a header".to_owned())?;
        Ok(AttachProtocolVersion {
            bearer: Some(value),
        })
    }
}

impl Interceptor for AttachProtocolVersion {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert(PROTOCOL_VERSION_HEADER, PROTOCOL_VERSION.into());
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert(crate::access::AUTHORIZATION_HEADER, bearer.clone());
        }
        Ok(request)
    }
}

/// A `RegionClient` client over `channel` like [`region_client_client`], whose requests also
/// carry `attach`'s bearer token.
pub fn region_client_client_with(
    channel: Channel,
    attach: AttachProtocolVersion,
) -> RegionClientClient<VersionedChannel> {
    RegionClientClient::with_interceptor(channel, attach)
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
}

/// Server interceptor: refuses, with `FAILED_PRECONDITION`, every request whose
/// [`PROTOCOL_VERSION_HEADER`] header is missing, unparsable, or not [`PROTOCOL_VERSION`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequireProtocolVersion;

impl Interceptor for RequireProtocolVersion {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        check_request_version(&request)?;
        Ok(request)
    }
}

/// Checks the protocol version header of a tonic request.
pub fn check_request_version<T>(request: &Request<T>) -> Result<(), VersionError> {
    let Some(value) = request.metadata().get(PROTOCOL_VERSION_HEADER) else {
        return check_protocol_version(None);
    };
    match value.to_str() {
        Ok(text) => check_protocol_version(Some(text)),
        // Header values may hold bytes that are not visible ASCII; no version looks like that.
        Err(_) => Err(VersionError::Unparsable {
            value: String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(HEADER_ECHO_CHARS_MAX)
                .collect(),
        }),
    }
}

/// A DSSS client stub over a channel, sending the protocol version with every request.
pub type VersionedChannel = InterceptedService<Channel, AttachProtocolVersion>;

macro_rules! service_constructors {
    (
        $service:literal,
        $server_fn:ident, $client_fn:ident,
        $trait:ident, $server:ident, $client:ident
    ) => {
        #[doc = concat!("The `", $service, "` server for `service`, refusing other protocol ")]
        #[doc = "versions and messages larger than [`GRPC_MESSAGE_BYTES_MAX`]."]
        pub fn $server_fn<T: $trait>(
            service: T,
        ) -> InterceptedService<$server<T>, RequireProtocolVersion> {
            let server = $server::new(service)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
            InterceptedService::new(server, RequireProtocolVersion)
        }

        #[doc = concat!("A `", $service, "` client over `channel`, sending the protocol ")]
        #[doc = "version and limiting messages to [`GRPC_MESSAGE_BYTES_MAX`] both ways."]
        pub fn $client_fn(channel: Channel) -> $client<VersionedChannel> {
            $client::with_interceptor(channel, AttachProtocolVersion::default())
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        }
    };
}

service_constructors!(
    "RegionClient",
    region_client_server,
    region_client_client,
    RegionClient,
    RegionClientServer,
    RegionClientClient
);
service_constructors!(
    "RegionPeer",
    region_peer_server,
    region_peer_client,
    RegionPeer,
    RegionPeerServer,
    RegionPeerClient
);
service_constructors!(
    "RegionAdmin",
    region_admin_server,
    region_admin_client,
    RegionAdmin,
    RegionAdminServer,
    RegionAdminClient
);
service_constructors!(
    "RegionEpochs",
    region_epochs_server,
    region_epochs_client,
    RegionEpochs,
    RegionEpochsServer,
    RegionEpochsClient
);
service_constructors!(
    "Coordinator",
    coordinator_server,
    coordinator_client,
    Coordinator,
    CoordinatorServer,
    CoordinatorClient
);
service_constructors!(
    "CoordinatorPeer",
    coordinator_peer_server,
    coordinator_peer_client,
    CoordinatorPeer,
    CoordinatorPeerServer,
    CoordinatorPeerClient
);

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn request_with_header(value: Option<&'static str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = value {
            request.metadata_mut().insert(
                PROTOCOL_VERSION_HEADER,
                value.parse().expect("test header values are ASCII"),
            );
        }
        request
    }

    #[test]
    fn attached_header_passes_the_server_check() {
        let request = AttachProtocolVersion::default()
            .call(Request::new(()))
            .expect("attaching never fails");
        assert_eq!(
            request
                .metadata()
                .get(PROTOCOL_VERSION_HEADER)
                .map(|v| v.to_str().ok()),
            Some(Some("1"))
        );
        assert!(RequireProtocolVersion.call(request).is_ok());
    }

    #[test]
    fn server_check_refuses_with_failed_precondition() {
        for (header, expected) in [
            (
                Some("2"),
                "this node speaks DSSS protocol 1, the peer speaks 2",
            ),
            (None, "missing dsss-protocol-version header"),
            (Some("v1"), "unparsable dsss-protocol-version header \"v1\""),
        ] {
            let status = RequireProtocolVersion
                .call(request_with_header(header))
                .expect_err("refused");
            assert_eq!(status.code(), Code::FailedPrecondition, "{header:?}");
            assert!(status.message().contains(expected), "{}", status.message());
        }
    }

    #[test]
    fn non_ascii_header_bytes_are_unparsable() {
        let mut request = Request::new(());
        let value = tonic::metadata::MetadataValue::try_from(&b"\xff1"[..])
            .expect("opaque bytes are a valid header value");
        request
            .metadata_mut()
            .insert(PROTOCOL_VERSION_HEADER, value);
        let error = check_request_version(&request).expect_err("not a number");
        assert!(
            matches!(error, VersionError::Unparsable { .. }),
            "{error:?}"
        );
    }
}
