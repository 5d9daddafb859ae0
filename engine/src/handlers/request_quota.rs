//! `request_percentage` (KIP-124): the time a client's requests take on the shard's thread,
//! measured per (user, client-id) as Kafka measures request-handler thread time, and the
//! throttle that follows: the connection muted for that long and the response's throttle_time_ms
//! raised to it (every response but ApiVersions', whose field follows variable-length data: its
//! clients still find the connection muted).
//!
//! What counts is the time spent polling the request's handler on this shard: waits for the
//! disk, a timer or another shard cost the shard nothing and are not counted, and work another
//! shard does for the request (appends to the partitions it owns) counts there for nobody. A
//! shard's thread is what one of Kafka's request-handler threads is, so 100 is one whole shard.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request;
use shardlog_protocol::response::{raise_throttle_time, Chunk};

use super::{record_quota, resolve_client_quota, ConnectionState, Response};
use crate::quota::manager::QuotaType;
use crate::security::Session;
use crate::shard::Shard;

/// The first AddPartitionsToTxn version only brokers send (verification, KIP-890).
const ADD_PARTITIONS_TO_TXN_BROKER_VERSION: i16 = 4;

/// Requests a broker sends for the cluster, which Kafka exempts from request quotas.
fn exempt(api_key: i16, api_version: i16, connection: &ConnectionState) -> bool {
    connection.is_replica_link()
        || api_key == ApiKey::WriteTxnMarkers as i16
        || (api_key == ApiKey::AddPartitionsToTxn as i16 && api_version >= ADD_PARTITIONS_TO_TXN_BROKER_VERSION)
        || api_key == ApiKey::SaslHandshake as i16
        || api_key == ApiKey::SaslAuthenticate as i16
}

/// Counts `busy` against the client's request_percentage, if it has one, and throttles it when
/// it is over: `frame` is the request, `response` its answer.
pub fn apply(shard: &Shard, session: &Session, connection: &ConnectionState, frame: &Bytes, busy: Duration, response: Response) -> Response {
    let Ok(header) = request::parse_header(frame) else { return response };
    if exempt(header.api_key, header.api_version, connection) {
        return response;
    }
    let resolved = resolve_client_quota(&shard.metadata.borrow(), &header, session, QuotaType::Request);
    let Some(quota) = resolved else { return response };
    let percent = busy.as_nanos() as f64 * 100.0 / 1e9;
    let throttle_ms = record_quota(&shard.config, session, connection, QuotaType::Request, &quota, percent);
    if throttle_ms == 0 {
        return response;
    }
    let throttle_ms = throttle_ms.min(i32::MAX as u64) as i32;
    let raise = |mut chunks: Vec<Chunk<crate::storage::FileRange>>| {
        if let Some(Chunk::Bytes(head)) = chunks.first_mut() {
            if let Some(patched) = raise_throttle_time(header.api_key, header.api_version, head, throttle_ms) {
                *head = patched;
            }
        }
        chunks
    };
    match response {
        Response::Frame(chunks) => Response::Frame(raise(chunks)),
        Response::FrameThenClose(chunks, reason) => Response::FrameThenClose(raise(chunks), reason),
        other => other,
    }
}
