//! The record-batch walker, `batch::parse_all`, which every produced byte reaches before the log
//! takes it. Input: a mode byte, then either raw bytes (even modes) or a description of batches
//! (odd modes) that are built well formed, with their lengths and CRC-32C computed, joined, then
//! damaged in one way or left whole. Raw bytes almost never carry a valid CRC, so the built mode
//! is what reaches the checks after the CRC and the exact answer on valid input.
//!
//! Every walk runs with and without the CRC check and is held to the walker's contract: on Ok the
//! batches cover the input exactly and each header is what its bytes say and passes the checks;
//! on Err the batches before the error position are whole and good, and the error describes the
//! bytes at that position.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shardlog_protocol::batch::{self, BatchError, BatchHeader, BatchProducer, KeyValue};
use shardlog_protocol::batch::{ATTRIBUTE_COMPRESSION_MASK, ATTRIBUTE_CONTROL, ATTRIBUTE_LOG_APPEND_TIME, ATTRIBUTE_TRANSACTIONAL};
use shardlog_protocol::batch::{BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};
use shardlog_protocol::batch::{
    OFFSET_ATTRIBUTES, OFFSET_BATCH_LENGTH, OFFSET_CRC, OFFSET_LAST_OFFSET_DELTA, OFFSET_MAGIC, OFFSET_PARTITION_LEADER_EPOCH, OFFSET_RECORDS_COUNT,
};

/// Bounds that keep one execution short; more batches or records find nothing new.
const BATCHES_MAX: usize = 6;
const RECORDS_MAX: usize = 12;
/// The highest codec Kafka defines (zstd).
const CODEC_MAX: i16 = 4;
/// Kafka's v2 batches are magic 2; the walker takes no other.
const MAGIC_V2: u8 = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = walk(rest);
        return;
    }
    let mut input = Unstructured::new(rest);
    let Ok((bytes, expected)) = build_batches(&mut input) else {
        return;
    };
    let (checked, unchecked) = walk(&bytes);
    assert_eq!(checked.as_ref(), Ok(&expected), "well-formed batches, CRC checked");
    assert_eq!(unchecked.as_ref(), Ok(&expected), "well-formed batches, CRC not checked");
    let _ = damage(&mut input, bytes, &expected);
});

type Walked = std::result::Result<Vec<BatchHeader>, BatchError>;

/// Walks `bytes` with and without the CRC check, holds both outcomes to the contract and to
/// each other, and returns them (checked first).
fn walk(bytes: &[u8]) -> (Walked, Walked) {
    let checked = batch::parse_all(bytes, true);
    let unchecked = batch::parse_all(bytes, false);
    for (result, verify_crc) in [(&checked, true), (&unchecked, false)] {
        match result {
            Ok(headers) => check_headers(bytes, headers, verify_crc),
            Err(error) => check_error(bytes, error, verify_crc),
        }
    }
    // The CRC check can only turn an Ok into a CorruptCrc at some batch; every other outcome
    // must be the same with it and without it.
    match (&checked, &unchecked) {
        (Err(BatchError::CorruptCrc { position, .. }), Err(other)) => assert!(position_of(other) >= *position, "{other:?} before the CRC error at {position}"),
        (Err(BatchError::CorruptCrc { .. }), Ok(_)) => {}
        _ => assert_eq!(checked, unchecked, "the CRC check changed an outcome other than a CRC error"),
    }
    (checked, unchecked)
}

fn check_headers(bytes: &[u8], headers: &[BatchHeader], verify_crc: bool) {
    let mut position = 0;
    for header in headers {
        assert!(header.size_bytes >= BATCH_HEADER_BYTES, "batch at {position} of {} bytes", header.size_bytes);
        assert!(header.size_bytes <= bytes.len() - position, "batch at {position} of {} bytes overruns {}", header.size_bytes, bytes.len());
        let batch_bytes = &bytes[position..position + header.size_bytes];
        assert_eq!(header.base_offset, i64_at(batch_bytes, 0));
        assert_eq!(header.size_bytes as i64, i32_at(batch_bytes, OFFSET_BATCH_LENGTH) as i64 + BATCH_LOG_OVERHEAD_BYTES as i64);
        assert_eq!(header.partition_leader_epoch, i32_at(batch_bytes, OFFSET_PARTITION_LEADER_EPOCH));
        assert_eq!(batch_bytes[OFFSET_MAGIC], MAGIC_V2);
        assert!(header.compression() <= CODEC_MAX, "codec {}", header.compression());
        assert!(header.records_count >= 0 && header.last_offset_delta >= 0, "{header:?}");
        assert!(header.records_count == 0 || header.last_offset_delta >= header.records_count - 1, "offsets do not cover the records: {header:?}");
        let last_offset = header.base_offset.checked_add(header.last_offset_delta as i64);
        assert!(last_offset.is_some(), "last offset of the batch at {position} overflows: {header:?}");
        assert_eq!(Some(header.last_offset()), last_offset);
        if verify_crc {
            let stored = i32_at(batch_bytes, OFFSET_CRC) as u32;
            assert_eq!(stored, crc32c::crc32c(&batch_bytes[OFFSET_ATTRIBUTES..]), "batch at {position}");
        }
        // The log reads its own segments back with the unchecked reader: it must agree.
        let fixed = batch_bytes[..BATCH_HEADER_BYTES].try_into().expect("size checked above");
        assert_eq!(batch::parse_header_unchecked(fixed, header.base_offset, header.size_bytes), *header);
        // A batch parses the same alone, whatever follows it.
        assert_eq!(batch::parse_all(batch_bytes, verify_crc).as_deref(), Ok(&[*header][..]));
        position += header.size_bytes;
    }
    assert_eq!(position, bytes.len(), "the batches do not cover the input");
}

fn check_error(bytes: &[u8], error: &BatchError, verify_crc: bool) {
    let position = position_of(error);
    assert!(position < bytes.len(), "{error:?} past the end of {} bytes", bytes.len());
    assert!(verify_crc || !matches!(error, BatchError::CorruptCrc { .. }), "CRC error with the CRC check off");
    // Everything before the bad batch is whole batches that pass.
    assert!(batch::parse_all(&bytes[..position], verify_crc).is_ok(), "{error:?}, but the batches before it do not parse");
    assert_eq!(batch::parse_header(&bytes[position..], position, verify_crc).as_ref(), Err(error));
    let rest = &bytes[position..];
    match *error {
        BatchError::Truncated { available, needed, .. } => assert!(available == rest.len() && needed > available, "{error:?}"),
        BatchError::LengthTooSmall { length, .. } => {
            assert!(length == i32_at(rest, OFFSET_BATCH_LENGTH) && (length as i64) < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i64, "{error:?}")
        }
        BatchError::UnsupportedMagic { magic, .. } => assert!(magic as u8 == rest[OFFSET_MAGIC] && magic as u8 != MAGIC_V2, "{error:?}"),
        BatchError::CorruptCrc { stored, computed, .. } => assert_ne!(stored, computed),
        BatchError::InvalidOffsetDelta { delta, count, .. } => {
            assert_eq!((delta, count), (i32_at(rest, OFFSET_LAST_OFFSET_DELTA), i32_at(rest, OFFSET_RECORDS_COUNT)))
        }
        BatchError::UnknownCompression { codec, .. } => assert!(codec > CODEC_MAX && codec == i16_at(rest, OFFSET_ATTRIBUTES) & ATTRIBUTE_COMPRESSION_MASK),
        BatchError::OffsetOverflow { base_offset, delta, .. } => {
            assert_eq!((base_offset, delta), (i64_at(rest, 0), i32_at(rest, OFFSET_LAST_OFFSET_DELTA)));
            assert!(base_offset.checked_add(delta as i64).is_none(), "{error:?}");
        }
    }
}

/// Exhaustive on purpose: a new error must say where it is before this target builds.
fn position_of(error: &BatchError) -> usize {
    match *error {
        BatchError::Truncated { position, .. }
        | BatchError::UnsupportedMagic { position, .. }
        | BatchError::LengthTooSmall { position, .. }
        | BatchError::CorruptCrc { position, .. }
        | BatchError::InvalidOffsetDelta { position, .. }
        | BatchError::UnknownCompression { position, .. }
        | BatchError::OffsetOverflow { position, .. } => position,
    }
}

/// One to `BATCHES_MAX` well-formed batches, joined, and the headers the walker must return.
fn build_batches(input: &mut Unstructured<'_>) -> Result<(Vec<u8>, Vec<BatchHeader>)> {
    let mut bytes = Vec::new();
    let mut headers = Vec::new();
    for _ in 0..input.int_in_range(1..=BATCHES_MAX)? {
        let (batch_bytes, header) = if input.arbitrary()? { producer_batch(input)? } else { opaque_batch(input)? };
        bytes.extend_from_slice(&batch_bytes);
        headers.push(header);
    }
    Ok((bytes, headers))
}

/// A batch of real uncompressed records, from the builder the load generator and tests use.
fn producer_batch(input: &mut Unstructured<'_>) -> Result<(Vec<u8>, BatchHeader)> {
    let mut records: Vec<KeyValue<'_>> = Vec::new();
    for _ in 0..input.int_in_range(0..=RECORDS_MAX)? {
        records.push((input.arbitrary()?, input.arbitrary()?));
    }
    let flags = [0, ATTRIBUTE_TRANSACTIONAL, ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL];
    let producer = BatchProducer {
        attributes: *input.choose(&flags)?,
        producer_id: input.arbitrary()?,
        producer_epoch: input.arbitrary()?,
        base_sequence: input.arbitrary()?,
    };
    let last_offset_delta = records.len().saturating_sub(1) as i32;
    let base_offset = input.int_in_range(i64::MIN..=i64::MAX - last_offset_delta as i64)?;
    let timestamp_ms: i64 = input.arbitrary()?;
    let mut batch_bytes = batch::build_producer_batch(base_offset, timestamp_ms, &records, &producer);
    let decoded = batch::records(&batch_bytes).expect("the builder's records parse");
    assert_eq!(decoded.iter().map(|r| (r.key, r.value)).collect::<Vec<_>>(), records);
    let mut header = BatchHeader {
        base_offset,
        size_bytes: batch_bytes.len(),
        // What `build_producer_batch` writes: a producer's batch carries no leader epoch yet.
        partition_leader_epoch: 0,
        attributes: producer.attributes,
        last_offset_delta,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
        records_count: records.len() as i32,
    };
    if input.arbitrary()? {
        // The broker's own rewrite, which recomputes the CRC.
        let append_time_ms: i64 = input.arbitrary()?;
        batch::set_log_append_time(&mut batch_bytes, header.size_bytes, append_time_ms);
        header.attributes |= ATTRIBUTE_LOG_APPEND_TIME;
        header.max_timestamp = append_time_ms;
    }
    Ok((batch_bytes, header))
}

/// A batch with every header field drawn from the input (within what the walker accepts) and
/// an opaque records section, sealed by `rebuild_batch` (length, count, CRC).
fn opaque_batch(input: &mut Unstructured<'_>) -> Result<(Vec<u8>, BatchHeader)> {
    let codec = input.int_in_range(0..=CODEC_MAX)?;
    let attributes = (input.arbitrary::<i16>()? & !ATTRIBUTE_COMPRESSION_MASK) | codec;
    let records_count = input.int_in_range(0..=i32::MAX)?;
    let last_offset_delta = input.int_in_range(records_count.max(1) - 1..=i32::MAX)?;
    let base_offset = input.int_in_range(i64::MIN..=i64::MAX - last_offset_delta as i64)?;
    let partition_leader_epoch: i32 = input.arbitrary()?;
    let (base_timestamp, max_timestamp): (i64, i64) = input.arbitrary()?;
    let (producer_id, producer_epoch, base_sequence): (i64, i16, i32) = input.arbitrary()?;
    let body: &[u8] = input.arbitrary()?;

    let mut fixed = Vec::with_capacity(BATCH_HEADER_BYTES);
    fixed.extend_from_slice(&base_offset.to_be_bytes());
    fixed.extend_from_slice(&0i32.to_be_bytes()); // batch length, set by rebuild_batch
    fixed.extend_from_slice(&partition_leader_epoch.to_be_bytes());
    fixed.push(MAGIC_V2);
    fixed.extend_from_slice(&0u32.to_be_bytes()); // CRC, set by rebuild_batch
    fixed.extend_from_slice(&attributes.to_be_bytes());
    fixed.extend_from_slice(&last_offset_delta.to_be_bytes());
    fixed.extend_from_slice(&base_timestamp.to_be_bytes());
    fixed.extend_from_slice(&max_timestamp.to_be_bytes());
    fixed.extend_from_slice(&producer_id.to_be_bytes());
    fixed.extend_from_slice(&producer_epoch.to_be_bytes());
    fixed.extend_from_slice(&base_sequence.to_be_bytes());
    fixed.extend_from_slice(&0i32.to_be_bytes()); // records count, set by rebuild_batch
    assert_eq!(fixed.len(), BATCH_HEADER_BYTES);
    let batch_bytes = batch::rebuild_batch(&fixed, body, records_count);
    let header = BatchHeader {
        base_offset,
        size_bytes: batch_bytes.len(),
        partition_leader_epoch,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records_count,
    };
    Ok((batch_bytes, header))
}

/// Damages well-formed `bytes` in one way drawn from the input, and checks the exact outcome
/// where the format fixes it.
fn damage(input: &mut Unstructured<'_>, mut bytes: Vec<u8>, expected: &[BatchHeader]) -> Result<()> {
    let starts: Vec<usize> = expected.iter().scan(0, |start, h| Some(std::mem::replace(start, *start + h.size_bytes))).collect();
    // The batch holding byte `at`: (its index, its first byte).
    let batch_at = |at: usize| starts.iter().enumerate().rev().find(|&(_, &start)| start <= at).map(|(index, &start)| (index, start)).expect("at < len");
    match input.int_in_range(0..=2u8)? {
        0 => {
            let at = input.choose_index(bytes.len())?;
            let flip = input.int_in_range(1..=u8::MAX)?;
            bytes[at] ^= flip;
            let (index, start) = batch_at(at);
            let (checked, unchecked) = walk(&bytes);
            match at - start {
                // base_offset: outside the CRC, so only the offset checks can see it.
                0..8 => {
                    let mut moved = expected.to_vec();
                    moved[index].base_offset = i64_at(&bytes, start);
                    let outcome = match moved[index].base_offset.checked_add(moved[index].last_offset_delta as i64) {
                        Some(_) => Ok(moved),
                        None => {
                            Err(BatchError::OffsetOverflow { position: start, base_offset: moved[index].base_offset, delta: moved[index].last_offset_delta })
                        }
                    };
                    assert_eq!((checked, unchecked), (outcome.clone(), outcome));
                }
                // batch_length: the walker reframes the rest; only the contract holds.
                8..12 => {}
                // partition_leader_epoch: outside the CRC (the leader stamps it), so no check sees
                // it; the header says what the bytes now hold.
                12..16 => {
                    let mut stamped = expected.to_vec();
                    stamped[index].partition_leader_epoch = i32_at(&bytes, start + OFFSET_PARTITION_LEADER_EPOCH);
                    assert_eq!((checked, unchecked), (Ok(stamped.clone()), Ok(stamped)));
                }
                16 => assert!(matches!(checked, Err(BatchError::UnsupportedMagic { position, .. }) if position == start), "{checked:?}"),
                // The CRC field or what it covers: CRC-32C catches every single-byte change.
                _ => assert!(matches!(checked, Err(BatchError::CorruptCrc { position, .. }) if position == start), "{checked:?}"),
            }
        }
        1 => {
            let cut = input.choose_index(bytes.len())?;
            let (checked, unchecked) = walk(&bytes[..cut]);
            let (index, start) = batch_at(cut);
            if start == cut {
                assert_eq!((checked, unchecked), (Ok(expected[..index].to_vec()), Ok(expected[..index].to_vec())));
            } else {
                for result in [checked, unchecked] {
                    assert!(matches!(result, Err(BatchError::Truncated { position, .. }) if position == start), "cut at {cut}: {result:?}");
                }
            }
        }
        _ => {
            // Bytes after the last whole batch: never read as part of it.
            let tail: &[u8] = input.arbitrary()?;
            if tail.is_empty() {
                return Ok(());
            }
            let length = bytes.len();
            bytes.extend_from_slice(tail);
            for result in <[Walked; 2]>::from(walk(&bytes)) {
                match result {
                    Ok(headers) => assert_eq!(&headers[..expected.len()], expected),
                    Err(error) => assert!(position_of(&error) >= length, "{error:?} inside the whole batches"),
                }
            }
        }
    }
    Ok(())
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
