//! RecordBatch v2 headers: the only part of a batch the broker parses on the produce path.
//!
//! Layout (all big-endian), from Kafka's `DefaultRecordBatch`:
//! ```text
//! 0  base_offset i64        8  batch_length i32     12 partition_leader_epoch i32
//! 16 magic i8               17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16         23 last_offset_delta i32 27 base_timestamp i64
//! 35 max_timestamp i64      43 producer_id i64       51 producer_epoch i16
//! 53 base_sequence i32      57 records_count i32     61 records...
//! ```
//! The records themselves (possibly compressed) are stored as received and never re-encoded.

/// Size of the RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `base_offset` and `batch_length`: the part of the header outside `batch_length`.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Byte offsets of the header fields (see the layout above).
pub const OFFSET_BATCH_LENGTH: usize = 8;
pub const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
pub const OFFSET_MAGIC: usize = 16;
pub const OFFSET_CRC: usize = 17;
pub const OFFSET_ATTRIBUTES: usize = 21;
pub const OFFSET_LAST_OFFSET_DELTA: usize = 23;
pub const OFFSET_BASE_TIMESTAMP: usize = 27;
pub const OFFSET_MAX_TIMESTAMP: usize = 35;
pub const OFFSET_PRODUCER_ID: usize = 43;
pub const OFFSET_PRODUCER_EPOCH: usize = 51;
pub const OFFSET_BASE_SEQUENCE: usize = 53;
pub const OFFSET_RECORDS_COUNT: usize = 57;

/// Attribute bits.
pub const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
pub const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
pub const ATTRIBUTE_CONTROL: i16 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch at byte {position} is truncated: {available} bytes left, header says {needed}")]
    Truncated { position: usize, available: usize, needed: usize },
    #[error("record batch at byte {position} has magic {magic}; only v2 (magic 2) is supported")]
    UnsupportedMagic { position: usize, magic: i8 },
    #[error("record batch at byte {position} has batch_length {length}, below the v2 header size")]
    LengthTooSmall { position: usize, length: i32 },
    #[error("record batch at byte {position} fails its CRC-32C check: stored {stored:#010x}, computed {computed:#010x}")]
    CorruptCrc { position: usize, stored: u32, computed: u32 },
    #[error("record batch at byte {position} has invalid last_offset_delta {delta} for {count} records")]
    InvalidOffsetDelta { position: usize, delta: i32, count: i32 },
    #[error("record batch at byte {position} uses compression codec {codec}, which Kafka does not define")]
    UnknownCompression { position: usize, codec: i16 },
    #[error("record batch at byte {position} has base_offset {base_offset} and last_offset_delta {delta}: its last offset does not fit in an i64")]
    OffsetOverflow { position: usize, base_offset: i64, delta: i32 },
}

/// The fields of one batch header that the broker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes of the whole batch, including the 12-byte log overhead.
    pub size_bytes: usize,
    /// The leader epoch the batch was appended in (-1 from a producer: the broker stamps it).
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads `(base_offset, size_bytes)` from the 12-byte log overhead, or None if fewer bytes are left.
pub fn peek_offset_and_size(bytes: &[u8]) -> Option<(i64, i64)> {
    if bytes.len() < BATCH_LOG_OVERHEAD_BYTES {
        return None;
    }
    Some((i64_at(bytes, 0), i32_at(bytes, 8) as i64 + BATCH_LOG_OVERHEAD_BYTES as i64))
}

/// Parses and checks the header of the batch that starts `bytes` (which may hold more batches
/// after it). `position` is only used in error messages. Checks the CRC when `verify_crc`.
pub fn parse_header(bytes: &[u8], position: usize, verify_crc: bool) -> Result<BatchHeader, BatchError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::Truncated { position, available: bytes.len(), needed: BATCH_HEADER_BYTES });
    }
    let length = i32_at(bytes, 8);
    if length < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchError::LengthTooSmall { position, length });
    }
    let size_bytes = length as usize + BATCH_LOG_OVERHEAD_BYTES;
    let magic = bytes[OFFSET_MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic { position, magic });
    }
    if bytes.len() < size_bytes {
        return Err(BatchError::Truncated { position, available: bytes.len(), needed: size_bytes });
    }
    if verify_crc {
        let stored = i32_at(bytes, OFFSET_CRC) as u32;
        let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..size_bytes]);
        if stored != computed {
            return Err(BatchError::CorruptCrc { position, stored, computed });
        }
    }
    let fixed: &[u8; BATCH_HEADER_BYTES] = bytes[..BATCH_HEADER_BYTES].try_into().expect("length checked above");
    let header = parse_header_unchecked(fixed, i64_at(bytes, 0), size_bytes);
    if header.compression() > 4 {
        return Err(BatchError::UnknownCompression { position, codec: header.compression() });
    }
    // An empty batch can only come from compaction; a produced batch carries at least one record,
    // and its offsets must cover its records.
    if header.last_offset_delta < 0 || header.records_count < 0 || (header.records_count > 0 && header.last_offset_delta < header.records_count - 1) {
        return Err(BatchError::InvalidOffsetDelta { position, delta: header.last_offset_delta, count: header.records_count });
    }
    // base_offset is outside the CRC, so a torn or hostile one passes every check above; its
    // last offset would then wrap (or panic in a debug build) wherever `last_offset()` is used,
    // segment recovery included.
    if header.base_offset.checked_add(header.last_offset_delta as i64).is_none() {
        return Err(BatchError::OffsetOverflow { position, base_offset: header.base_offset, delta: header.last_offset_delta });
    }
    Ok(header)
}

/// Reads header fields without checking them: for batches the broker itself wrote and
/// checked before, read back from its own segment files.
pub fn parse_header_unchecked(bytes: &[u8; BATCH_HEADER_BYTES], base_offset: i64, size_bytes: usize) -> BatchHeader {
    BatchHeader {
        base_offset,
        size_bytes,
        partition_leader_epoch: i32_at(bytes, OFFSET_PARTITION_LEADER_EPOCH),
        attributes: i16_at(bytes, OFFSET_ATTRIBUTES),
        last_offset_delta: i32_at(bytes, OFFSET_LAST_OFFSET_DELTA),
        base_timestamp: i64_at(bytes, OFFSET_BASE_TIMESTAMP),
        max_timestamp: i64_at(bytes, OFFSET_MAX_TIMESTAMP),
        producer_id: i64_at(bytes, OFFSET_PRODUCER_ID),
        producer_epoch: i16_at(bytes, OFFSET_PRODUCER_EPOCH),
        base_sequence: i32_at(bytes, OFFSET_BASE_SEQUENCE),
        records_count: i32_at(bytes, OFFSET_RECORDS_COUNT),
    }
}

/// Walks every batch in `bytes`, which must hold whole batches and nothing else.
pub fn parse_all(bytes: &[u8], verify_crc: bool) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let header = parse_header(&bytes[position..], position, verify_crc)?;
        position += header.size_bytes;
        headers.push(header);
    }
    Ok(headers)
}

/// Rewrites the base offset. The base offset is outside the CRC, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps the leader epoch the batch is appended in. Like the base offset it is outside the
/// CRC (which covers the attributes onward), so the CRC stays valid, as in Kafka's
/// `DefaultRecordBatch.setPartitionLeaderEpoch`.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFFSET_PARTITION_LEADER_EPOCH..OFFSET_PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `timestamp_ms` as its max timestamp, as Kafka does,
/// and recomputes the CRC, which covers both fields.
pub fn set_log_append_time(batch: &mut [u8], size_bytes: usize, timestamp_ms: i64) {
    let attributes = i16_at(batch, OFFSET_ATTRIBUTES) | ATTRIBUTE_LOG_APPEND_TIME;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..size_bytes]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record's key and value, either of which may be null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a v2 batch of uncompressed records: for tests, benches and the load generator.
/// Each record is `(key, value)`; timestamps are all `timestamp_ms`.
pub fn build_batch(base_offset: i64, timestamp_ms: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    build_producer_batch(base_offset, timestamp_ms, records, &BatchProducer::NONE)
}

/// The producer fields of a batch the broker writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchProducer {
    pub const NONE: BatchProducer = BatchProducer { attributes: 0, producer_id: -1, producer_epoch: -1, base_sequence: -1 };
}

/// Control record types (the key's second field), as Kafka's `ControlRecordType`.
pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// A transaction marker: a control batch of one record whose key is (version 0, type) and
/// whose value is (version 0, coordinator epoch), as Kafka's `EndTransactionMarker`.
pub fn build_control_batch(timestamp_ms: i64, producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32) -> Vec<u8> {
    let kind = if commit { CONTROL_TYPE_COMMIT } else { CONTROL_TYPE_ABORT };
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&kind.to_be_bytes());
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let producer = BatchProducer { attributes: ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL, producer_id, producer_epoch, base_sequence: -1 };
    build_producer_batch(0, timestamp_ms, &[(Some(&key), Some(&value))], &producer)
}

/// The control type of a control batch's record (commit or abort), None if it is not one.
pub fn control_type(batch_bytes: &[u8]) -> Option<i16> {
    let record = *records(batch_bytes)?.first()?;
    let key = record.key?;
    (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]]))
}

/// Builds a v2 batch of uncompressed records with the given producer fields.
pub fn build_producer_batch(base_offset: i64, timestamp_ms: i64, records: &[KeyValue<'_>], producer: &BatchProducer) -> Vec<u8> {
    let mut body = Vec::new();
    for (delta, (key, value)) in records.iter().enumerate() {
        let mut record = Vec::new();
        record.push(0u8); // attributes
        put_varlong(&mut record, 0); // timestamp delta
        put_varlong(&mut record, delta as i64);
        match key {
            Some(k) => {
                put_varlong(&mut record, k.len() as i64);
                record.extend_from_slice(k);
            }
            None => put_varlong(&mut record, -1),
        }
        match value {
            Some(v) => {
                put_varlong(&mut record, v.len() as i64);
                record.extend_from_slice(v);
            }
            None => put_varlong(&mut record, -1),
        }
        put_varlong(&mut record, 0); // headers
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    batch.extend_from_slice(&base_offset.to_be_bytes());
    batch.extend_from_slice(&((BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    batch.extend_from_slice(&producer.attributes.to_be_bytes());
    batch.extend_from_slice(&(records.len().saturating_sub(1) as i32).to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&producer.producer_id.to_be_bytes());
    batch.extend_from_slice(&producer.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&producer.base_sequence.to_be_bytes());
    batch.extend_from_slice(&(records.len() as i32).to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// One record of an uncompressed batch, borrowed from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole encoded record, its length prefix included (for rewriting a batch with some
    /// of its records, as compaction does).
    pub encoded: &'a [u8],
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// The records of one uncompressed v2 batch (headers are skipped), or None if it is compressed
/// or malformed (a record overrunning the batch, or bytes left after the last one).
pub fn records(batch: &[u8]) -> Option<Vec<RecordView<'_>>> {
    let header = parse_header(batch, 0, false).ok()?;
    if header.compression() != 0 {
        return None;
    }
    records_of(&header, &batch[BATCH_HEADER_BYTES..header.size_bytes])
}

/// The records in `body`, the (uncompressed or already decompressed) records section of the
/// batch whose header is `header`; None if malformed. `header.records_count` is not trusted:
/// the records must fill `body` exactly.
pub fn records_of<'a>(header: &BatchHeader, body: &'a [u8]) -> Option<Vec<RecordView<'a>>> {
    let mut rest = body;
    // Each record takes at least 7 bytes, which bounds the vector by the batch size.
    let mut out = Vec::with_capacity((header.records_count.max(0) as usize).min(rest.len() / 7 + 1));
    for _ in 0..header.records_count {
        let before = rest;
        let length = get_varlong(&mut rest)?;
        if length < 0 || length as usize > rest.len() {
            return None;
        }
        let encoded = &before[..before.len() - rest.len() + length as usize];
        let (mut record, tail) = rest.split_at(length as usize);
        rest = tail;
        record = record.get(1..)?;
        let timestamp_delta = get_varlong(&mut record)?;
        let offset_delta = get_varlong(&mut record)?;
        let key = get_nullable_bytes(&mut record)?;
        let value = get_nullable_bytes(&mut record)?;
        out.push(RecordView { encoded, offset: header.base_offset + offset_delta, timestamp: header.base_timestamp + timestamp_delta, key, value });
    }
    rest.is_empty().then_some(out)
}

/// `batch` (whose first `BATCH_HEADER_BYTES` are kept: offsets, timestamps, producer fields,
/// attributes) with `body` as its records section, holding `records_count` records: a new
/// batch length, record count and CRC-32C. The caller encodes `body` with the codec the
/// attributes name.
pub fn rebuild_batch(batch: &[u8], body: &[u8], records_count: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_BYTES]);
    out.extend_from_slice(body);
    let length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    out[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    out[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&records_count.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

fn get_nullable_bytes<'a>(buf: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let length = get_varlong(buf)?;
    if length < 0 {
        return Some(None);
    }
    if length as usize > buf.len() {
        return None;
    }
    let (bytes, rest) = buf.split_at(length as usize);
    *buf = rest;
    Some(Some(bytes))
}

/// Reads a zigzag varlong.
pub fn get_varlong(buf: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *buf.first()?;
        *buf = &buf[1..];
        value |= ((byte & 0x7f) as u64).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if zigzag < 0x80 {
            out.push(zigzag as u8);
            return;
        }
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[test]
    fn control_batches_round_trip() {
        let b = build_control_batch(5, 42, 3, true, 7);
        let h = parse_header(&b, 0, true).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.records_count), (42, 3, -1, 1));
        assert_eq!(control_type(&b), Some(CONTROL_TYPE_COMMIT));
        assert_eq!(control_type(&build_control_batch(5, 42, 3, false, 7)), Some(CONTROL_TYPE_ABORT));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_batch(0, 1_000, &[(Some(b"k1"), Some(b"v1")), (None, Some(b"v2")), (Some(b"k3"), None)])
    }

    #[test]
    fn parses_what_it_builds() {
        let batch = sample();
        let header = parse_header(&batch, 0, true).unwrap();
        assert_eq!(header.size_bytes, batch.len());
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.max_timestamp, 1_000);
    }

    #[test]
    fn detects_a_flipped_bit() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(parse_header(&batch, 0, true), Err(BatchError::CorruptCrc { .. })));
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_and_log_append_time_recomputes_it() {
        let mut batch = sample();
        set_base_offset(&mut batch, 42);
        let header = parse_header(&batch, 0, true).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 44);
        let size = header.size_bytes;
        set_log_append_time(&mut batch, size, 7_777);
        let header = parse_header(&batch, 0, true).unwrap();
        assert_eq!(header.max_timestamp, 7_777);
        assert_ne!(header.attributes & ATTRIBUTE_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn leader_epoch_stamp_is_outside_the_crc() {
        let mut batch = sample();
        set_partition_leader_epoch(&mut batch, 7);
        // Still valid: Kafka's CRC-32C starts at the attributes, after the leader epoch.
        assert_eq!(parse_header(&batch, 0, true).unwrap().partition_leader_epoch, 7);
        set_partition_leader_epoch(&mut batch, -1);
        assert_eq!(parse_header(&batch, 0, true).unwrap().partition_leader_epoch, -1);
    }

    #[test]
    fn rejects_truncation_and_bad_lengths() {
        let batch = sample();
        for cut in 0..batch.len() {
            assert!(parse_header(&batch[..cut], 0, true).is_err(), "prefix of {cut} bytes accepted");
        }
        let mut short = batch.clone();
        short[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(parse_header(&short, 0, true), Err(BatchError::LengthTooSmall { .. })));
        let mut zeros = vec![0u8; 200];
        zeros[16] = 2;
        assert!(parse_header(&zeros, 0, true).is_err());
    }

    #[test]
    fn record_views_round_trip() {
        let batch = sample();
        let records = records(&batch).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].key, Some(&b"k1"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[2].value, None);
        assert_eq!(records[2].offset, 2);
        assert!(super::records(&batch[..batch.len() - 1]).is_none());
    }

    #[test]
    fn rejects_a_last_offset_past_i64_max() {
        // Found by the batch_parse fuzz target: base_offset is not covered by the CRC.
        let mut batch = sample();
        set_base_offset(&mut batch, i64::MAX - 2);
        assert_eq!(parse_header(&batch, 0, true).unwrap().last_offset(), i64::MAX);
        set_base_offset(&mut batch, i64::MAX - 1);
        let overflow = BatchError::OffsetOverflow { position: 0, base_offset: i64::MAX - 1, delta: 2 };
        assert_eq!(parse_header(&batch, 0, true), Err(overflow.clone()));
        assert_eq!(parse_header(&batch, 0, false), Err(overflow));
        let mut two = sample();
        two.extend_from_slice(&batch);
        assert!(matches!(parse_all(&two, true), Err(BatchError::OffsetOverflow { position, .. }) if position == batch.len()));
    }

    #[test]
    fn walks_several_batches() {
        let mut bytes = sample();
        bytes.extend_from_slice(&sample());
        assert_eq!(parse_all(&bytes, true).unwrap().len(), 2);
        assert!(parse_all(&bytes[..bytes.len() - 1], true).is_err());
    }
}
