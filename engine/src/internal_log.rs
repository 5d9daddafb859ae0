//! The broker's own logs (`__consumer_offsets`, `__transaction_state`): replaying a partition
//! into memory when a coordinator takes the partition over, and appending a batch durably and
//! replicated.

use std::rc::Rc;

use bytes::BytesMut;
use shardlog_protocol::batch::{self, BatchHeader};
use shardlog_protocol::error_code as ec;

use crate::shard::Shard;
use crate::storage::log::{now_ms, AppendInfo, AppendOrigin, Partition, ReadPiece};

/// Bytes read per step of a replay.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// Calls `apply` with every batch of the partition, in offset order, and returns how many
/// batches it saw. A read error ends the replay with a log line: what was read stays applied.
pub fn replay(p: &Partition, mut apply: impl FnMut(&BatchHeader, &[u8])) -> usize {
    let mut offset = p.log.borrow().log_start_offset();
    let mut batches = 0;
    loop {
        let read = match p.log.borrow().read(offset, REPLAY_READ_BYTES) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.partition, error = ?e, "cannot replay an internal log");
                break;
            }
        };
        if read.bytes == 0 {
            break;
        }
        let bytes = match collect_pieces(read.pieces) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "cannot read an internal log");
                break;
            }
        };
        let mut rest = &bytes[..];
        let before = offset;
        while let Ok(h) = batch::parse_header(rest, 0, false) {
            apply(&h, &rest[..h.size_bytes]);
            batches += 1;
            offset = h.last_offset() + 1;
            rest = &rest[h.size_bytes..];
        }
        if offset == before {
            tracing::error!(topic = %p.topic, partition = p.partition, offset, "internal log replay stopped at an unreadable batch");
            break;
        }
    }
    batches
}

/// Reads the pieces of a read into one buffer.
pub fn collect_pieces(pieces: Vec<ReadPiece>) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            ReadPiece::Memory(b) => out.extend_from_slice(&b),
            ReadPiece::File { file, position, len } => {
                let start = out.len();
                out.resize(start + len, 0);
                file.read_exact_at(&mut out[start..], position)?;
            }
        }
    }
    Ok(out)
}

/// How long a coordinator's write waits for the in-sync replicas of its state partition
/// (Kafka's `offsets.commit.timeout.ms` default); the client then retries.
const REPLICATION_TIMEOUT_MS: u64 = 5_000;

/// Appends one batch a coordinator built to its state partition, and waits until it is
/// durable here and held by every in-sync replica: a write the coordinator answers for must
/// survive the move of the partition's leadership. Errors are the coordinator's, as Kafka's
/// coordinators map them: NOT_COORDINATOR when this broker does not (or no longer) lead the
/// partition or its log failed, COORDINATOR_NOT_AVAILABLE when the in-sync replicas are too
/// few or too slow; a producer's fenced epoch or broken sequence keeps its own code.
pub async fn append_durably(shard: &Shard, p: &Rc<Partition>, batch_bytes: &[u8], origin: AppendOrigin) -> Result<AppendInfo, i16> {
    if shard.owner(&p.topic, p.partition) != Some(shard.id) {
        tracing::debug!(topic = %p.topic, partition = p.partition, "coordinator write refused: this broker does not lead the partition");
        return Err(ec::NOT_COORDINATOR);
    }
    if shard.leaders.borrow().get(&(p.topic.clone(), p.partition)).is_some_and(|l| l.under_min_isr()) {
        tracing::warn!(topic = %p.topic, partition = p.partition, "coordinator write refused: fewer in-sync replicas than min.insync.replicas");
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    }
    // No await between the leadership check and the append: a follower's copy is never written.
    let info = p.append_from(BytesMut::from(batch_bytes), now_ms(), origin).map_err(|e| {
        tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "cannot append to an internal log");
        match e {
            crate::storage::log::AppendError::Producer(e) => crate::shard::partition_ops::producer_error_code(&e),
            _ => ec::NOT_COORDINATOR,
        }
    })?;
    p.wait_durable(info.last_offset).await.map_err(|why| {
        tracing::error!(topic = %p.topic, partition = p.partition, error = %why, "internal log write not durable");
        ec::NOT_COORDINATOR
    })?;
    crate::shard::partition_ops::wait_replicated(shard, p, info.last_offset, REPLICATION_TIMEOUT_MS).await.map_err(|(code, why)| {
        tracing::warn!(topic = %p.topic, partition = p.partition, error = %why, "internal log write not replicated");
        match code {
            ec::NOT_LEADER_OR_FOLLOWER | ec::KAFKA_STORAGE_ERROR => ec::NOT_COORDINATOR,
            _ => ec::COORDINATOR_NOT_AVAILABLE,
        }
    })?;
    Ok(info)
}

/// The fields of the records in the broker's own logs, in Kafka's classic (non-flexible)
/// encoding: big-endian integers, strings and byte arrays after an i16 / i32 length (-1: null).
/// Reads answer None when the input ends early or a length does not fit what is left, so a
/// damaged record is skipped, never trusted.
pub mod fields {
    use bytes::{Buf, Bytes};

    pub fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    pub fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => put_string(out, s),
            None => out.extend_from_slice(&(-1i16).to_be_bytes()),
        }
    }

    pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
        out.extend_from_slice(b);
    }

    pub fn get_i8(buf: &mut &[u8]) -> Option<i8> {
        buf.try_get_i8().ok()
    }

    pub fn get_i16(buf: &mut &[u8]) -> Option<i16> {
        buf.try_get_i16().ok()
    }

    pub fn get_i32(buf: &mut &[u8]) -> Option<i32> {
        buf.try_get_i32().ok()
    }

    pub fn get_i64(buf: &mut &[u8]) -> Option<i64> {
        buf.try_get_i64().ok()
    }

    /// A non-null string (a null one is damage here).
    pub fn get_string(buf: &mut &[u8]) -> Option<String> {
        let len = usize::try_from(get_i16(buf)?).ok()?;
        let s = buf.get(..len)?;
        let s = String::from_utf8(s.to_vec()).ok()?;
        buf.advance(len);
        Some(s)
    }

    pub fn get_nullable_string(buf: &mut &[u8]) -> Option<Option<String>> {
        let mut peek = *buf;
        if get_i16(&mut peek)? == -1 {
            *buf = peek;
            return Some(None);
        }
        get_string(buf).map(Some)
    }

    /// Bytes after an i32 length; a null (-1) reads as empty.
    pub fn get_bytes(buf: &mut &[u8]) -> Option<Bytes> {
        let len = usize::try_from(get_i32(buf)?).unwrap_or(0);
        let b = Bytes::copy_from_slice(buf.get(..len)?);
        buf.advance(len);
        Some(b)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn fields_round_trip_and_short_input_is_none() {
            let mut out = Vec::new();
            put_string(&mut out, "id");
            put_nullable_string(&mut out, None);
            put_bytes(&mut out, b"xyz");
            out.extend_from_slice(&7i64.to_be_bytes());
            let mut buf = &out[..];
            assert_eq!(get_string(&mut buf).as_deref(), Some("id"));
            assert_eq!(get_nullable_string(&mut buf), Some(None));
            assert_eq!(get_bytes(&mut buf), Some(Bytes::from_static(b"xyz")));
            assert_eq!(get_i64(&mut buf), Some(7));
            assert!(buf.is_empty());
            for cut in [1, 3, 7, 9] {
                let mut short = &out[..cut];
                let whole = (|| Some((get_string(&mut short)?, get_nullable_string(&mut short)?, get_bytes(&mut short)?, get_i64(&mut short)?)))();
                assert_eq!(whole, None, "cut at {cut}");
            }
            assert_eq!(get_string(&mut &(-1i16).to_be_bytes()[..]), None, "a null where a string must be");
        }
    }
}
