//! Volume recovery by a new writer over QUIC: runs the rounds of the
//! sans-IO `recovery_core::RecoveryCore` (see there for the steps and why
//! they keep every acknowledged commit), each round's requests concurrently.

use crate::client::{BULK_REQUEST_TIMEOUT, REQUEST_TIMEOUT, StorageClient};
use crate::error::StorageError;
use crate::proto::Request;
use crate::recovery_core::{Recovered, RecoveryCore, RecoverySettings};
use crate::writer::VolumeConfig;

pub(crate) async fn recover(client: &StorageClient, config: &VolumeConfig) -> Result<Recovered, StorageError> {
    let settings = RecoverySettings {
        placement: crate::client::placement_of(&config.nodes),
        write_quorum: config.write_quorum,
        read_quorum: config.read_quorum,
        lsn_allocation_limit: config.lsn_allocation_limit,
    };
    let mut core = RecoveryCore::new(settings);
    loop {
        if let Some(outcome) = core.outcome() {
            return outcome;
        }
        let round = core.requests().to_vec();
        let answers = futures::future::join_all(round.iter().map(|(node, request)| {
            let timeout = match request {
                Request::GetRecords { .. } | Request::Append { .. } => BULK_REQUEST_TIMEOUT,
                _ => REQUEST_TIMEOUT,
            };
            client.request(*node, request, timeout)
        }))
        .await;
        for ((node, request), answer) in round.iter().zip(&answers) {
            if let (Request::Append { .. } | Request::Truncate { .. }, Err(e)) = (request, answer) {
                tracing::warn!(%node, epoch = %core.epoch(), "recovery request failed: {e}");
            }
        }
        core.answered(answers);
    }
}
