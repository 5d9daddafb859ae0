//! Produce (key 0): split by owner shard (one message per owner, with all of its partitions),
//! append, wait for the group commit when acks=all, and merge the per-partition results back in
//! request order.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use shardlog_protocol::error_code::{self as ec, TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{group_by_owner, respond, str_bytes, Context, Response};
use crate::authorizer::Operation;
use crate::shard::messages::{Produce, ProduceOutcome};
use crate::shard::TxnVerification;

/// Produce versions whose clients back off by the throttle time themselves (KIP-219).
const CLIENT_THROTTLES_FROM_VERSION: i16 = 6;
/// The first Produce version a transactions-v2 client sends: its transactional batches come
/// without AddPartitionsToTxn (KIP-890 part 2).
const TRANSACTIONS_V2_FROM_VERSION: i16 = 12;
/// The first Produce version whose clients know TRANSACTION_ABORTABLE (KIP-890).
const TRANSACTION_ABORTABLE_FROM_VERSION: i16 = 11;

fn failed(code: i16, message: Option<String>) -> ProduceOutcome {
    ProduceOutcome {
        error_code: code,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: message,
        duplicate: false,
        record_errors: Vec::new(),
    }
}

/// Transactions v2 (KIP-890 part 2): adds every partition of the request that carries the
/// producer's transactional batches to its transaction, in one call to its coordinator, as
/// Kafka's AddPartitionsToTxnManager batches a request's partitions (one call per partition
/// would find the others in progress and get CONCURRENT_TRANSACTIONS). A partition the
/// coordinator refuses is answered with its error and not sent to its owner.
async fn add_to_producer_transaction(
    ctx: &Context<'_>,
    transactional_id: &str,
    work: &[(String, i32, Option<bytes::Bytes>, Option<ProduceOutcome>)],
    outcomes: &mut [Option<ProduceOutcome>],
    owners: &mut [Option<usize>],
) {
    let mut asked = Vec::new();
    let mut producer = None;
    for (i, (_, _, records, _)) in work.iter().enumerate() {
        let Some(records) = records.as_ref().filter(|_| owners[i].is_some()) else { continue };
        // A batch that does not parse is refused by the append.
        let Ok(h) = shardlog_protocol::batch::parse_header(records, 0, false) else { continue };
        if !h.is_transactional() || h.is_control() || h.producer_id < 0 {
            continue;
        }
        // One producer per request; a batch of another is refused by its owner's check.
        if *producer.get_or_insert((h.producer_id, h.producer_epoch)) == (h.producer_id, h.producer_epoch) {
            asked.push(i);
        }
    }
    let Some((producer_id, producer_epoch)) = producer else { return };
    let codes = match ctx.shard.txn_verifier.get() {
        Some(verifier) => {
            let partitions = asked.iter().map(|&i| (work[i].0.clone(), work[i].1)).collect();
            verifier(TxnVerification { transactional_id: transactional_id.to_string(), producer_id, producer_epoch, partitions, add: true }).await
        }
        None => vec![ec::COORDINATOR_NOT_AVAILABLE; asked.len()],
    };
    for (&i, code) in asked.iter().zip(codes) {
        if code == ec::NONE {
            continue;
        }
        // A fenced producer is INVALID_PRODUCER_EPOCH from a partition leader, as in Kafka.
        let code = if code == ec::PRODUCER_FENCED { ec::INVALID_PRODUCER_EPOCH } else { code };
        let (topic, partition) = (&work[i].0, work[i].1);
        let message = format!(
            "the transaction coordinator answered {} to adding {topic}-{partition} to the transaction of producer {producer_id} (transactional id {transactional_id:?})",
            ec::error_name(code)
        );
        tracing::warn!(topic = %topic, partition, error = %message, "transactional produce refused");
        outcomes[i] = Some(failed(code, Some(message)));
        owners[i] = None;
    }
}

pub async fn handle(ctx: &Context<'_>, request: ProduceRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let acks = request.acks;
    let transactional_ok = request.transactional_id.as_ref().is_none_or(|id| authz.transactional_id(Operation::Write, id));
    let acks_valid = matches!(acks, -1..=1);
    let mut work = Vec::new();
    for topic in &request.topic_data {
        let name = topic.name.0.to_string();
        for p in &topic.partition_data {
            let outcome: Option<ProduceOutcome> = if !acks_valid {
                Some(failed(ec::INVALID_REQUIRED_ACKS, None))
            } else if !transactional_ok {
                Some(failed(TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None))
            } else if !authz.topic(Operation::Write, &name) {
                Some(failed(TOPIC_AUTHORIZATION_FAILED, None))
            } else if crate::controller::is_internal_topic(&name) {
                Some(failed(ec::INVALID_TOPIC_EXCEPTION, Some(String::from("clients cannot produce to internal topics"))))
            } else {
                None
            };
            work.push((name.clone(), p.index, p.records.clone(), outcome));
        }
    }
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string());
    let add_to_transaction = crate::txn::client_transaction_version(ctx.shard, header.api_version, TRANSACTIONS_V2_FROM_VERSION) > 0;
    let timeout_ms = request.timeout_ms.max(0) as u64;
    // Answered here, or sent to the owner shard (one message per owner, in request order).
    let mut outcomes: Vec<Option<ProduceOutcome>> = Vec::with_capacity(work.len());
    let mut owners = Vec::with_capacity(work.len());
    for (name, index, records, outcome) in &work {
        let owner = ctx.owner(name, *index);
        let (ready, send_to) = match (outcome, records, owner) {
            (Some(o), _, _) => (Some(o.clone()), None),
            (None, None, _) => (Some(failed(ec::INVALID_RECORD, Some(String::from("null record set")))), None),
            (None, Some(_), None) => (Some(failed(ctx.absent_partition_error(name, *index), None)), None),
            (None, Some(_), Some(owner)) => (None, Some(owner)),
        };
        outcomes.push(ready);
        owners.push(send_to);
    }
    if add_to_transaction {
        if let Some(id) = &transactional_id {
            add_to_producer_transaction(ctx, id, &work, &mut outcomes, &mut owners).await;
        }
    }
    // Each owner shard only checks its partitions against the transaction: they were added above.
    let transaction_abortable_known = header.api_version >= TRANSACTION_ABORTABLE_FROM_VERSION;
    let calls = group_by_owner(owners).into_iter().map(|(owner, positions)| {
        let partitions: Vec<(String, i32, bytes::Bytes)> = positions
            .iter()
            .map(|&i| {
                let (name, index, records, _) = &work[i];
                (name.clone(), *index, records.clone().expect("only partitions with records are sent"))
            })
            .collect();
        let transactional_id = transactional_id.clone();
        async move {
            let count = partitions.len();
            let call = Produce { partitions, request_bytes: ctx.request_bytes, acks, timeout_ms, transactional_id, transaction_abortable_known };
            let replied = match ctx.call(owner, call).await {
                Ok(o) => {
                    assert_eq!(o.len(), count, "owner shard {owner} answered {} of {count} partitions", o.len());
                    o
                }
                // Retriable: the client refreshes its metadata and sends again.
                Err(e) => vec![failed(ec::NOT_LEADER_OR_FOLLOWER, Some(e.to_string())); count],
            };
            positions.into_iter().zip(replied).collect::<Vec<_>>()
        }
    });
    for (i, o) in futures::future::join_all(calls).await.into_iter().flatten() {
        outcomes[i] = Some(o);
    }
    let results: Vec<_> = work.into_iter().zip(outcomes).map(|((name, index, _, _), o)| (name, index, o.expect("every partition has an outcome"))).collect();
    check_order(ctx, &results);
    // Counted against producer_byte_rate when it was read (`handlers::admit`); the client is
    // answered at once, the connection muted for the throttle time.
    let throttle_ms = ctx.produce_throttle_ms;
    if acks == 0 {
        return Response::Nothing;
    }
    if throttle_ms > 0 && header.api_version < CLIENT_THROTTLES_FROM_VERSION {
        // Before KIP-219 the client does not hold back by itself: the broker delays the answer.
        crate::runtime::sleep(std::time::Duration::from_millis(throttle_ms)).await;
    }
    let mut r = ProduceResponse::default();
    r.throttle_time_ms = throttle_ms.min(i32::MAX as u64) as i32;
    for (name, index, outcome) in &results {
        let position = match r.responses.iter().position(|t: &TopicProduceResponse| t.name.0.as_str() == name.as_str()) {
            Some(i) => i,
            None => {
                let mut t = TopicProduceResponse::default();
                t.name = super::topic_name(name);
                r.responses.push(t);
                r.responses.len() - 1
            }
        };
        let mut p = PartitionProduceResponse::default();
        p.index = *index;
        p.error_code = outcome.error_code;
        p.base_offset = outcome.base_offset;
        p.log_append_time_ms = outcome.log_append_time_ms;
        if header.api_version >= 5 {
            p.log_start_offset = outcome.log_start_offset;
        }
        if header.api_version >= 8 {
            p.error_message = outcome.error_message.as_deref().map(str_bytes);
            p.record_errors = outcome
                .record_errors
                .iter()
                .map(|(index, message)| {
                    let mut e = kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default();
                    e.batch_index = *index;
                    e.batch_index_error_message = Some(str_bytes(message));
                    e
                })
                .collect();
        }
        r.responses[position].partition_responses.push(p);
    }
    respond(header, &r)
}

/// Invariant: pipelined produce requests on one connection append to each partition in the
/// order they were sent (idempotent producers with up to five requests in flight rely on it).
/// Nothing enforces it but the order of the steps in between: requests are spawned in the order
/// read, a partition's owner receives one shard's calls in the order sent (the mesh is FIFO),
/// and appends wait for dirty-budget room in line (FIFO). So it is checked here, on every
/// answer: a violation is a bug, logged and counted (`shardlog_produce_order_violations_total`),
/// and fatal in debug builds.
fn check_order(ctx: &Context<'_>, results: &[(String, i32, ProduceOutcome)]) {
    let mut order = ctx.connection.produce_order.borrow_mut();
    let meta = ctx.metadata();
    for (topic, partition, outcome) in results {
        if outcome.error_code != ec::NONE || outcome.duplicate || outcome.base_offset < 0 {
            continue;
        }
        // By topic id: a topic deleted and created again starts its offsets over.
        let Some(topic_id) = meta.topics.get(topic).map(|t| t.id) else { continue };
        if let Err(earlier) = order.record(topic_id, *partition, ctx.request_seq, outcome.base_offset) {
            super::probe::produce_order_violated();
            tracing::error!(
                topic,
                partition,
                request = ctx.request_seq,
                base_offset = outcome.base_offset,
                earlier_request = earlier.0,
                earlier_base_offset = earlier.1,
                "BUG: pipelined produce requests on one connection were appended out of order"
            );
            debug_assert!(false, "produce order violated on {topic}-{partition}");
        }
    }
}

/// Partitions per connection whose produce order is tracked; past it the table starts over (a
/// bound on memory, at the cost of the checks across that moment).
pub const PRODUCE_ORDER_PARTITIONS_MAX: usize = 1024;

/// Per connection: for each partition, the latest produce request (by the order it was read)
/// that appended to it, and where.
#[derive(Debug, Default)]
pub struct ProduceOrder {
    last: std::collections::HashMap<(uuid::Uuid, i32), (u64, i64)>,
}

impl ProduceOrder {
    /// Records that request `seq` appended at `base_offset`. Err with the earlier (request,
    /// base offset) when the two contradict: a later request must append later.
    pub fn record(&mut self, topic_id: uuid::Uuid, partition: i32, seq: u64, base_offset: i64) -> Result<(), (u64, i64)> {
        let key = (topic_id, partition);
        if let Some(&(seq0, base0)) = self.last.get(&key) {
            if (seq > seq0 && base_offset <= base0) || (seq < seq0 && base_offset >= base0) {
                return Err((seq0, base0));
            }
            if seq < seq0 {
                return Ok(());
            }
        } else if self.last.len() >= PRODUCE_ORDER_PARTITIONS_MAX {
            self.last.clear();
        }
        self.last.insert(key, (seq, base_offset));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ProduceOrder;

    #[test]
    fn a_later_request_must_append_later() {
        let (t, u) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut order = ProduceOrder::default();
        assert!(order.record(t, 0, 1, 100).is_ok());
        assert!(order.record(t, 0, 3, 120).is_ok());
        // Answers may arrive out of request order; the offsets must agree with the requests'.
        assert!(order.record(t, 0, 2, 110).is_ok());
        assert_eq!(order.record(t, 0, 4, 115), Err((3, 120)));
        assert_eq!(order.record(t, 0, 2, 130), Err((3, 120)));
        // Other partitions, and a topic created again under the same name (a new id), are
        // tracked apart.
        assert!(order.record(t, 1, 5, 0).is_ok());
        assert!(order.record(u, 0, 6, 0).is_ok());
    }
}
