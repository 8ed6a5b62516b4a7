//! An opened object: its replica, the task that follows the region's log into it, the task that
//! uploads its checkpoints, and the calls waiting for their records to apply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsss_wire::Scope;
use dsss_wire::proto::{self, log_entry};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::{Code, Request};

use crate::client::ClientShared;
use crate::client::error::CallError;
use crate::object::{MethodError, SCHEMA_METHOD_ID, SharedObject};
use crate::region_client::{Call, ClientError, RegionClient};
use crate::replica::{Applied, Checkpoint, RecordRef, Replica, SharedReplica};

/// The wait before following the log again after a member failed, in milliseconds; it grows
/// with consecutive failures up to [`FOLLOW_RETRY_WAIT_MS_MAX`].
const FOLLOW_RETRY_WAIT_MS: u64 = 20;
/// The longest wait between attempts to follow the log, in milliseconds.
const FOLLOW_RETRY_WAIT_MS_MAX: u64 = 1_000;
/// How long one attempt of a checkpoint fetch, upload or sync may take.
const REQUEST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The most checkpoints waiting to be uploaded; a newer one replaces nothing and is dropped
/// while the uploader is busy, since the next one comes N records later anyway.
const CHECKPOINTS_QUEUED_MAX: usize = 1;

/// Where a waiting call's outcome goes.
type Waiter = oneshot::Sender<Result<Vec<u8>, MethodError>>;

/// What the log-following task and the callers share.
struct ReplicaCell<T: SharedObject> {
    name: String,
    scope: Scope,
    client_id: u64,
    replica: SharedReplica<T>,
    /// The applied position, for callers that wait for it.
    applied: watch::Sender<u64>,
    /// Calls of this client waiting for their records, by request sequence.
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// Set once the replica can no longer follow the log.
    stopped: watch::Sender<Option<String>>,
}

impl<T: SharedObject> ReplicaCell<T> {
    fn position(&self) -> u64 {
        self.replica.lock_read().position()
    }

    /// Applies one reply of the log stream: this object's records, then the gap through the
    /// reply's `through_position`.
    fn handle_reply(&self, reply: proto::SubscribeReply, uploads: &mpsc::Sender<Checkpoint>) {
        let mut completed = Vec::new();
        let mut stop_reason = None;
        let position = {
            let mut replica = self.replica.lock_write();
            for entry in &reply.entries {
                if entry.position <= replica.position() {
                    // A repeat after a reconnect: already applied.
                    continue;
                }
                let record = match (&entry.entry, self.scope) {
                    (Some(log_entry::Entry::Regional(record)), Scope::Regional) => record,
                    (Some(log_entry::Entry::Global(sequenced)), Scope::Global) => {
                        match &sequenced.record {
                            Some(record) => record,
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                if record.object_id != self.name {
                    continue;
                }
                let applied = replica.handle_record(
                    entry.position,
                    RecordRef {
                        client_id: record.client_id,
                        request_sequence: record.request_sequence,
                        method_id: record.method_id,
                        arguments: &record.arguments,
                    },
                );
                match applied {
                    Ok(applied) => {
                        if applied.client_id == self.client_id {
                            completed.push(applied);
                        }
                    }
                    Err(stopped) => {
                        stop_reason = Some(stopped.to_string());
                        break;
                    }
                }
            }
            if stop_reason.is_none() {
                replica.handle_gap(reply.through_position);
            }
            if let Some(checkpoint) = replica.poll_checkpoint() {
                // Dropped when the uploader is still busy with the previous one.
                let _ = uploads.try_send(checkpoint);
            }
            replica.position()
        };
        self.complete(completed);
        // Waiters first, then the position: a caller that sees the position reached finds its
        // result already delivered.
        self.applied.send_replace(position);
        if let Some(reason) = stop_reason {
            self.stop(reason);
        }
    }

    fn complete(&self, completed: Vec<Applied>) {
        if completed.is_empty() {
            return;
        }
        let mut waiters = lock(&self.waiters);
        for applied in completed {
            if let Some(waiter) = waiters.remove(&applied.request_sequence) {
                let _ = waiter.send(applied.outcome);
            }
        }
    }

    fn stop(&self, reason: String) {
        self.stopped.send_replace(Some(reason));
        // Dropping the senders wakes every waiting caller.
        lock(&self.waiters).clear();
    }

    fn stopped_error(&self) -> Option<CallError> {
        self.stopped
            .borrow()
            .clone()
            .map(|reason| CallError::Stopped {
                object: self.name.clone(),
                reason,
            })
    }

    /// Waits until the replica has applied through `position`.
    async fn wait_applied(&self, position: u64) -> Result<(), CallError> {
        let mut applied = self.applied.subscribe();
        let mut stopped = self.stopped.subscribe();
        loop {
            if *applied.borrow_and_update() >= position {
                return Ok(());
            }
            if let Some(error) = self.stopped_error() {
                return Err(error);
            }
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return Err(self.gone()); },
                changed = stopped.changed() => if changed.is_err() { return Err(self.gone()); },
            }
        }
    }

    fn gone(&self) -> CallError {
        CallError::Stopped {
            object: self.name.clone(),
            reason: "the object was closed".to_owned(),
        }
    }
}

/// An opened object. Dropping it stops following the log.
pub(crate) struct OpenedObject<T: SharedObject> {
    client: Arc<ClientShared>,
    cell: Arc<ReplicaCell<T>>,
    follower: JoinHandle<()>,
    uploader: JoinHandle<()>,
}

impl<T: SharedObject> Drop for OpenedObject<T> {
    fn drop(&mut self) {
        self.follower.abort();
        self.uploader.abort();
        self.client.object_closed();
    }
}

impl<T: SharedObject> OpenedObject<T> {
    /// Builds the replica from the newest checkpoint, starts following the log, and declares
    /// `T`'s schema in the object's log.
    pub(crate) async fn open(
        client: Arc<ClientShared>,
        name: &str,
        scope: Scope,
    ) -> Result<Arc<Self>, CallError> {
        dsss_wire::ObjectId::new(name).map_err(|error| CallError::Config(error.to_string()))?;
        T::schema().validate().map_err(|error| CallError::Schema {
            object: name.to_owned(),
            reason: error.to_string(),
        })?;
        let fetched = fetch_checkpoint(&client, name).await?;
        let replica = replica_from_fetched::<T>(&client, name, fetched).map_err(|reason| {
            CallError::Schema {
                object: name.to_owned(),
                reason,
            }
        })?;
        let position = replica.position();
        let cell = Arc::new(ReplicaCell {
            name: name.to_owned(),
            scope,
            client_id: client.client_id,
            replica: SharedReplica::new(replica),
            applied: watch::Sender::new(position),
            waiters: Mutex::new(HashMap::new()),
            stopped: watch::Sender::new(None),
        });
        let (uploads, uploads_received) = mpsc::channel(CHECKPOINTS_QUEUED_MAX);
        let follower = tokio::spawn(follow(Arc::clone(&client), Arc::clone(&cell), uploads));
        let uploader = tokio::spawn(upload(
            Arc::clone(&client),
            name.to_owned(),
            uploads_received,
        ));
        let opened = Arc::new(OpenedObject {
            client,
            cell,
            follower,
            uploader,
        });
        match opened.call(SCHEMA_METHOD_ID, T::schema().encode()).await {
            Ok(_) => {}
            Err(CallError::Method(MethodError::IncompatibleSchema(reason))) => {
                return Err(CallError::Schema {
                    object: name.to_owned(),
                    reason,
                });
            }
            Err(error) => return Err(error),
        }
        if let Some(error) = opened.cell.stopped_error() {
            return Err(error);
        }
        Ok(opened)
    }

    pub(crate) fn name(&self) -> &str {
        &self.cell.name
    }

    pub(crate) fn position(&self) -> u64 {
        self.cell.position()
    }

    pub(crate) fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        self.cell.replica.read(read)
    }

    /// The SHA-256 of the replica's checkpoint envelope and the position it reflects.
    pub(crate) fn state_hash(&self) -> (u64, [u8; 32]) {
        let replica = self.cell.replica.lock_read();
        (replica.position(), replica.state_hash())
    }

    pub(crate) async fn call(
        &self,
        method_id: u32,
        arguments: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        if let Some(error) = self.cell.stopped_error() {
            return Err(error);
        }
        let _permit = self
            .client
            .calls_in_flight
            .acquire()
            .await
            .map_err(|_| self.cell.gone())?;
        let sequence = self.client.next_sequence();
        let (sender, mut result) = oneshot::channel();
        lock(&self.cell.waiters).insert(sequence, sender);
        let call = Call {
            object_id: self.cell.name.clone(),
            method_id,
            arguments,
            scope: self.cell.scope,
        };
        let mut region = RegionClient::new(self.client.connections.clone(), self.client.client_id)
            .with_timeouts(REQUEST_ATTEMPT_TIMEOUT, self.client.config.call_timeout);
        let committed = match region.propose_with_sequence(sequence, &call).await {
            Ok(committed) => committed,
            Err(error) => {
                lock(&self.cell.waiters).remove(&sequence);
                return Err(error.into());
            }
        };
        let waited = tokio::select! {
            outcome = &mut result => outcome.ok(),
            applied = self.cell.wait_applied(committed.position) => {
                applied?;
                result.try_recv().ok()
            }
        };
        match waited {
            Some(outcome) => outcome.map_err(CallError::from),
            None => {
                lock(&self.cell.waiters).remove(&sequence);
                Err(self.cell.stopped_error().unwrap_or(CallError::Stopped {
                    object: self.cell.name.clone(),
                    reason: format!(
                        "the call was committed at position {} but this replica passed it \
                         without applying it (it restarted from a newer checkpoint)",
                        committed.position
                    ),
                }))
            }
        }
    }

    pub(crate) async fn sync(&self) -> Result<(), CallError> {
        let barrier = sync_barrier(&self.client, &self.cell.name).await?;
        self.cell.wait_applied(barrier).await
    }
}

/// Follows the region's log into the replica, failing over between members, until the
/// replica stops or the object is closed.
async fn follow<T: SharedObject>(
    client: Arc<ClientShared>,
    cell: Arc<ReplicaCell<T>>,
    uploads: mpsc::Sender<Checkpoint>,
) {
    let members = client.connections.node_ids();
    // Spread the clients of a region over its members.
    let mut index = (client.client_id % members.len() as u64) as usize;
    let mut failures: u32 = 0;
    loop {
        if cell.stopped.borrow().is_some() {
            return;
        }
        let node_id = members[index];
        let from_position = cell.position() + 1;
        let outcome = follow_member(&client, &cell, node_id, from_position, &uploads).await;
        match outcome {
            Ok(()) => failures = 0,
            Err(status) if status.code() == Code::OutOfRange => {
                // The log is truncated below where the replica stands (or this member restored
                // a snapshot that starts higher up): move to the checkpoint when it is ahead,
                // then go on, at another member.
                if let Err(reason) = restart_from_checkpoint(&client, &cell).await {
                    cell.stop(reason);
                    return;
                }
                failures = failures.saturating_add(1);
            }
            Err(_) => failures = failures.saturating_add(1),
        }
        index = (index + 1) % members.len();
        let wait_ms =
            (FOLLOW_RETRY_WAIT_MS * u64::from(failures.max(1))).min(FOLLOW_RETRY_WAIT_MS_MAX);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
}

/// Streams the log from one member until the stream breaks. Returns the status that ended it.
async fn follow_member<T: SharedObject>(
    client: &ClientShared,
    cell: &ReplicaCell<T>,
    node_id: u64,
    from_position: u64,
    uploads: &mpsc::Sender<Checkpoint>,
) -> Result<(), tonic::Status> {
    let mut stub = client
        .connections
        .stub(node_id)
        .map_err(|error| tonic::Status::internal(error.to_string()))?;
    let request = proto::SubscribeRequest {
        from_position,
        object_ids: vec![cell.name.clone()],
    };
    let mut stream = stub.subscribe(request).await?.into_inner();
    loop {
        match stream.message().await? {
            Some(reply) => {
                cell.handle_reply(reply, uploads);
                if cell.stopped.borrow().is_some() {
                    return Ok(());
                }
            }
            None => return Err(tonic::Status::unavailable("the log stream ended")),
        }
    }
}

/// The region truncated the log below where the replica stands: start again from the newest
/// checkpoint if it is ahead, and skip to the truncation point (the region truncates only what
/// agreed checkpoints cover, so the object has no record between the two).
async fn restart_from_checkpoint<T: SharedObject>(
    client: &ClientShared,
    cell: &ReplicaCell<T>,
) -> Result<(), String> {
    let fetched = fetch_checkpoint(client, &cell.name)
        .await
        .map_err(|error| error.to_string())?;
    let position = cell.position();
    let newer = fetched
        .checkpoint
        .as_ref()
        .is_some_and(|checkpoint| checkpoint.position > position);
    let position = if newer {
        let replica = replica_from_fetched::<T>(client, &cell.name, fetched)?;
        let position = replica.position();
        *cell.replica.lock_write() = replica;
        position
    } else {
        let mut replica = cell.replica.lock_write();
        replica.handle_gap(fetched.truncated_through_position);
        replica.position()
    };
    cell.applied.send_replace(position);
    Ok(())
}

/// The replica a fetched checkpoint gives: the checkpoint's state, or the default state at the
/// truncation point when the region keeps no checkpoint (the object has no record below it).
fn replica_from_fetched<T: SharedObject>(
    client: &ClientShared,
    name: &str,
    fetched: proto::FetchCheckpointReply,
) -> Result<Replica<T>, String> {
    match fetched.checkpoint {
        Some(checkpoint) => Replica::from_checkpoint(
            name,
            client.config.replica,
            checkpoint.position,
            &checkpoint.state,
            &checkpoint.state_hash,
        ),
        None => {
            let mut replica = Replica::new(name, client.config.replica);
            replica.handle_gap(fetched.truncated_through_position);
            Ok(replica)
        }
    }
}

/// Uploads the replica's checkpoints as they come.
async fn upload(
    client: Arc<ClientShared>,
    name: String,
    mut checkpoints: mpsc::Receiver<Checkpoint>,
) {
    while let Some(checkpoint) = checkpoints.recv().await {
        let request = proto::UploadCheckpointRequest {
            checkpoint: Some(proto::Checkpoint {
                object_id: name.clone(),
                position: checkpoint.position,
                state: checkpoint.state,
                state_hash: checkpoint.state_hash.to_vec(),
            }),
            client_id: client.client_id,
        };
        for node_id in client.connections.node_ids() {
            let Ok(mut stub) = client.connections.stub(node_id) else {
                continue;
            };
            let mut attempt = Request::new(request.clone());
            attempt.set_timeout(REQUEST_ATTEMPT_TIMEOUT);
            let Ok(reply) = stub.upload_checkpoint(attempt).await else {
                continue;
            };
            let reply = reply.into_inner();
            if reply.not_leader.is_some() {
                continue;
            }
            if reply.outcome == proto::CheckpointOutcome::HashMismatch as i32 {
                tracing::error!(
                    object = %name,
                    position = checkpoint.position,
                    "checkpoint hash differs from another replica's at the same position: a \
                     method of this object is not deterministic"
                );
            }
            break;
        }
    }
}

/// The newest checkpoint the region keeps of `name` and the region's truncation point, from the
/// first member that answers.
async fn fetch_checkpoint(
    client: &ClientShared,
    name: &str,
) -> Result<proto::FetchCheckpointReply, CallError> {
    ask_any_member(client, |mut stub| {
        let name = name.to_owned();
        async move {
            let mut request = Request::new(proto::FetchCheckpointRequest { object_id: name });
            request.set_timeout(REQUEST_ATTEMPT_TIMEOUT);
            stub.fetch_checkpoint(request).await
        }
    })
    .await
}

/// The position a `sync` waits for, from the first member that answers.
async fn sync_barrier(client: &ClientShared, name: &str) -> Result<u64, CallError> {
    let reply = ask_any_member(client, |mut stub| {
        let name = name.to_owned();
        async move {
            let mut request = Request::new(proto::SyncRequest {
                object_ids: vec![name],
            });
            request.set_timeout(REQUEST_ATTEMPT_TIMEOUT);
            stub.sync(request).await
        }
    })
    .await?;
    Ok(reply.apply_through_position)
}

/// Sends one request to the members in turn until one answers, within the call timeout.
async fn ask_any_member<R, F, Fut>(client: &ClientShared, ask: F) -> Result<R, CallError>
where
    F: Fn(
        dsss_wire::proto::region_client_client::RegionClientClient<
            dsss_wire::grpc::VersionedChannel,
        >,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let started = tokio::time::Instant::now();
    let members = client.connections.node_ids();
    let mut index = (client.client_id % members.len() as u64) as usize;
    let mut attempts: u32 = 0;
    let mut last_error = String::from("no attempt made");
    while started.elapsed() < client.config.call_timeout {
        attempts += 1;
        let node_id = members[index];
        let stub = client.connections.stub(node_id)?;
        match tokio::time::timeout(REQUEST_ATTEMPT_TIMEOUT, ask(stub)).await {
            Ok(Ok(reply)) => return Ok(reply.into_inner()),
            Ok(Err(status)) => {
                if matches!(
                    status.code(),
                    Code::InvalidArgument | Code::Unimplemented | Code::FailedPrecondition
                ) {
                    return Err(ClientError::Refused {
                        node_id,
                        code: status.code(),
                        message: status.message().to_owned(),
                    }
                    .into());
                }
                last_error = format!("node {node_id}: {:?}: {}", status.code(), status.message());
            }
            Err(_) => last_error = format!("node {node_id}: no answer within the attempt timeout"),
        }
        index = (index + 1) % members.len();
        tokio::time::sleep(Duration::from_millis(FOLLOW_RETRY_WAIT_MS)).await;
    }
    Err(ClientError::GaveUp {
        attempts,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        last_error,
    }
    .into())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
