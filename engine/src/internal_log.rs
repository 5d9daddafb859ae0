//! The broker's own logs (`__consumer_offsets`, `__transaction_state`): replaying a partition
//! into memory at startup, and appending a batch durably.

use std::rc::Rc;

use bytes::BytesMut;
use shardlog_protocol::batch::{self, BatchHeader};
use shardlog_protocol::error_code as ec;

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

/// Appends one batch the broker built and waits for the fdatasync that covers it.
pub async fn append_durably(p: &Rc<Partition>, batch_bytes: &[u8], origin: AppendOrigin) -> Result<AppendInfo, i16> {
    let info = p.append_from(BytesMut::from(batch_bytes), now_ms(), origin).map_err(|e| {
        tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "cannot append to an internal log");
        match e {
            crate::storage::log::AppendError::Producer(e) => crate::shard::partition_ops::producer_error_code(&e),
            _ => ec::KAFKA_STORAGE_ERROR,
        }
    })?;
    p.wait_durable(info.last_offset).await.map_err(|why| {
        tracing::error!(topic = %p.topic, partition = p.partition, error = %why, "internal log write not durable");
        ec::KAFKA_STORAGE_ERROR
    })?;
    Ok(info)
}
