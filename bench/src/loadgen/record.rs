//! What the load generator writes and reads: record values that carry their own identity and
//! checksum, the RecordBatch v2 bytes around them, and the partitioner.
//!
//! Every value starts with a 32-byte header (big-endian):
//! ```text
//! 0  run_id u32       4  producer u32       8  partition u32     12 sequence u64
//! 20 intended send time, u64 nanoseconds since the Unix epoch     28 crc32c u32
//! 32 payload (random bytes or text, from a buffer made at start)
//! ```
//! The CRC-32C covers bytes 0..28 and 32..end, so a consumer detects any changed byte, a record
//! from another run or partition, and (with the per-producer, per-partition sequence) duplicates,
//! reordering and gaps. The intended send time gives the end-to-end latency: the consumer
//! subtracts it from its own clock, so producers and consumers must share a clock (they run in
//! one process here).

use anyhow::{anyhow, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};
use shardlog_protocol::batch::{self, BatchError, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};
use shardlog_protocol::kafka_protocol;

use super::workload::{Compression, Payload, VALUE_HEADER_BYTES};

const OFFSET_CRC: usize = 28;

/// The identity a record value carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader {
    pub run_id: u32,
    pub producer: u32,
    pub partition: u32,
    pub sequence: u64,
    pub intended_unix_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    /// Shorter than the header: not one of ours, or cut.
    TooShort(usize),
    /// A byte changed somewhere.
    Checksum { stored: u32, computed: u32 },
}

fn value_crc(value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&value[..OFFSET_CRC]), &value[VALUE_HEADER_BYTES..])
}

/// Fills `out` (the whole value) with the header and payload bytes from `source`, which must
/// hold at least `out.len()` bytes; `source_offset` picks where the payload is taken from, so
/// that consecutive records differ.
pub fn write_value(out: &mut [u8], header: &ValueHeader, source: &[u8], source_offset: usize) {
    assert!(out.len() >= VALUE_HEADER_BYTES, "value of {} bytes cannot hold the {VALUE_HEADER_BYTES}-byte header", out.len());
    out[0..4].copy_from_slice(&header.run_id.to_be_bytes());
    out[4..8].copy_from_slice(&header.producer.to_be_bytes());
    out[8..12].copy_from_slice(&header.partition.to_be_bytes());
    out[12..20].copy_from_slice(&header.sequence.to_be_bytes());
    out[20..28].copy_from_slice(&header.intended_unix_ns.to_be_bytes());
    let payload_bytes = out.len() - VALUE_HEADER_BYTES;
    let start = source_offset % (source.len() - payload_bytes + 1);
    out[VALUE_HEADER_BYTES..].copy_from_slice(&source[start..start + payload_bytes]);
    let crc = value_crc(out);
    out[OFFSET_CRC..VALUE_HEADER_BYTES].copy_from_slice(&crc.to_be_bytes());
}

/// Reads and checks a value written by [`write_value`].
pub fn read_value(value: &[u8]) -> Result<ValueHeader, ValueError> {
    if value.len() < VALUE_HEADER_BYTES {
        return Err(ValueError::TooShort(value.len()));
    }
    let stored = u32::from_be_bytes(value[OFFSET_CRC..VALUE_HEADER_BYTES].try_into().expect("4 bytes"));
    let computed = value_crc(value);
    if stored != computed {
        return Err(ValueError::Checksum { stored, computed });
    }
    Ok(ValueHeader {
        run_id: u32::from_be_bytes(value[0..4].try_into().expect("4 bytes")),
        producer: u32::from_be_bytes(value[4..8].try_into().expect("4 bytes")),
        partition: u32::from_be_bytes(value[8..12].try_into().expect("4 bytes")),
        sequence: u64::from_be_bytes(value[12..20].try_into().expect("8 bytes")),
        intended_unix_ns: u64::from_be_bytes(value[20..28].try_into().expect("8 bytes")),
    })
}

/// A small fast PRNG (xorshift64*): keys and payload bytes need to be varied, not secure.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Bytes the payload of each record is copied from: made once per run, so that producing a
/// record costs a copy, not a random-number call per byte.
pub fn payload_source(kind: Payload, record_bytes: usize, seed: u64) -> Vec<u8> {
    const SOURCE_BYTES_MIN: usize = 1024 * 1024;
    let length = SOURCE_BYTES_MIN + record_bytes;
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(length + 16);
    match kind {
        Payload::Random => {
            while out.len() < length {
                out.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
        }
        Payload::Text => {
            let words: Vec<Vec<u8>> = (0..2000)
                .map(|_| {
                    let n = 2 + (rng.next_u64() % 9) as usize;
                    (0..n).map(|_| b'a' + (rng.next_u64() % 26) as u8).collect()
                })
                .collect();
            while out.len() < length {
                out.extend_from_slice(&words[(rng.next_u64() % words.len() as u64) as usize]);
                out.push(b' ');
            }
        }
    }
    out.truncate(length);
    out
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), so that keyed records
/// land in the same partitions as with the Java client.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h = SEED ^ length as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record, as Kafka's default partitioner picks it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

fn varint_len(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

/// Builds one RecordBatch v2, record by record, straight into its final buffer: the producer's
/// accumulator appends to it as records are generated, with no per-record allocation.
#[derive(Debug)]
pub struct BatchBuilder {
    /// The encoded records (the batch body, before compression).
    body: BytesMut,
    records: u32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl BatchBuilder {
    pub fn new(capacity_bytes: usize) -> BatchBuilder {
        BatchBuilder { body: BytesMut::with_capacity(capacity_bytes), records: 0, base_timestamp_ms: 0, max_timestamp_ms: 0 }
    }

    pub fn records(&self) -> u32 {
        self.records
    }

    /// Bytes of the encoded records so far, uncompressed.
    pub fn body_bytes(&self) -> usize {
        self.body.len()
    }

    /// Bytes of the batch so far, uncompressed, with its header.
    pub fn size_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.body.len()
    }

    /// Appends one record whose value is `value_bytes` long and written in place by `fill`.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value_bytes: usize, fill: impl FnOnce(&mut [u8])) {
        if self.records == 0 {
            self.base_timestamp_ms = timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let timestamp_delta = timestamp_ms - self.base_timestamp_ms;
        let offset_delta = self.records as i64;
        let key_bytes = key.map_or(0, <[u8]>::len);
        let key_length = key.map_or(-1, |k| k.len() as i64);
        let length =
            1 + varint_len(timestamp_delta) + varint_len(offset_delta) + varint_len(key_length) + key_bytes + varint_len(value_bytes as i64) + value_bytes + 1;
        self.body.reserve(length + 5);
        put_varint(&mut self.body, length as i64);
        self.body.put_u8(0); // attributes
        put_varint(&mut self.body, timestamp_delta);
        put_varint(&mut self.body, offset_delta);
        put_varint(&mut self.body, key_length);
        if let Some(key) = key {
            self.body.put_slice(key);
        }
        put_varint(&mut self.body, value_bytes as i64);
        let start = self.body.len();
        self.body.resize(start + value_bytes, 0);
        fill(&mut self.body[start..]);
        put_varint(&mut self.body, 0); // headers
        self.records += 1;
    }

    /// The finished batch: header, CRC-32C, and the body compressed with `compression`.
    pub fn finish(self, compression: Compression) -> Result<Bytes> {
        assert!(self.records > 0, "an empty batch is never sent");
        let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + self.body.len());
        out.put_i64(0); // base offset: the broker assigns it
        out.put_i32(0); // batch length, set below
        out.put_i32(-1); // partition leader epoch
        out.put_i8(2); // magic
        out.put_u32(0); // crc, set below
        out.put_i16(compression.attribute());
        out.put_i32(self.records as i32 - 1); // last offset delta
        out.put_i64(self.base_timestamp_ms);
        out.put_i64(self.max_timestamp_ms);
        out.put_i64(-1); // producer id: not idempotent
        out.put_i16(-1); // producer epoch
        out.put_i32(-1); // base sequence
        out.put_i32(self.records as i32);
        let body = self.body;
        let copy = |tmp: &mut BytesMut| {
            tmp.extend_from_slice(&body);
            Ok(())
        };
        match compression {
            Compression::None => out.extend_from_slice(&body),
            Compression::Gzip => codec::Gzip::compress(&mut out, copy)?,
            Compression::Snappy => codec::Snappy::compress(&mut out, copy)?,
            Compression::Lz4 => codec::Lz4::compress(&mut out, copy)?,
            Compression::Zstd => codec::Zstd::compress(&mut out, copy)?,
        }
        let length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
        out[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(out.freeze())
    }
}

/// One record read back from a fetch.
#[derive(Debug, Clone, Copy)]
pub struct ReadRecord<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What walking the records of one partition's fetch answer found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Where the next fetch starts: one past the last whole batch.
    pub next_offset: i64,
    pub batches: u64,
    /// Bytes of whole batches, as received (compressed if they were).
    pub batch_bytes: u64,
}

#[derive(Debug)]
pub enum ReadError {
    Batch(BatchError),
    Records { base_offset: i64, reason: String },
}

impl std::error::Error for ReadError {}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Batch(e) => write!(f, "{e}"),
            ReadError::Records { base_offset, reason } => write!(f, "batch at offset {base_offset}: {reason}"),
        }
    }
}

fn decompress<D: Decompressor<Bytes, Buf = Bytes>>(mut body: Bytes) -> Result<Bytes> {
    D::decompress(&mut body, |b: &mut Bytes| Ok(b.split_to(b.len())))
}

/// Calls `on_record` for each record at or after `fetch_offset` in `bytes` (the records field of
/// a fetch answer: whole batches, perhaps followed by a cut one, which is left for the next
/// fetch). Checks each batch's CRC-32C and decompresses compressed ones. Control batches
/// (transaction markers) are skipped.
pub fn read_batches(bytes: &Bytes, fetch_offset: i64, mut on_record: impl FnMut(ReadRecord<'_>)) -> Result<ReadSummary, ReadError> {
    let mut summary = ReadSummary { next_offset: fetch_offset, ..ReadSummary::default() };
    let mut position = 0;
    while position < bytes.len() {
        let header = match batch::parse_header(&bytes[position..], position, true) {
            Ok(header) => header,
            // A fetch may end in the middle of a batch: the rest comes with the next fetch.
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(ReadError::Batch(e)),
        };
        let batch_end = position + header.size_bytes;
        if !header.is_control() && header.last_offset() >= fetch_offset {
            let body = bytes.slice(position + BATCH_HEADER_BYTES..batch_end);
            let body = match header.compression() {
                0 => Ok(body),
                1 => decompress::<codec::Gzip>(body),
                2 => decompress::<codec::Snappy>(body),
                3 => decompress::<codec::Lz4>(body),
                4 => decompress::<codec::Zstd>(body),
                c => Err(anyhow!("unknown compression codec {c}")),
            }
            .map_err(|e| ReadError::Records { base_offset: header.base_offset, reason: format!("cannot decompress: {e:#}") })?;
            walk_records(&body, header.base_offset, header.records_count, fetch_offset, &mut on_record)
                .map_err(|reason| ReadError::Records { base_offset: header.base_offset, reason })?;
        }
        summary.batches += 1;
        summary.batch_bytes += header.size_bytes as u64;
        summary.next_offset = summary.next_offset.max(header.last_offset() + 1);
        position = batch_end;
    }
    Ok(summary)
}

fn walk_records(mut rest: &[u8], base_offset: i64, count: i32, fetch_offset: i64, on_record: &mut impl FnMut(ReadRecord<'_>)) -> Result<(), String> {
    for i in 0..count {
        let length = batch::get_varlong(&mut rest).ok_or_else(|| format!("record {i}: bad length"))?;
        if length < 0 || length as usize > rest.len() {
            return Err(format!("record {i}: length {length} with {} bytes left", rest.len()));
        }
        let (mut record, tail) = rest.split_at(length as usize);
        rest = tail;
        record = record.get(1..).ok_or_else(|| format!("record {i}: empty"))?;
        let _timestamp_delta = batch::get_varlong(&mut record).ok_or_else(|| format!("record {i}: bad timestamp"))?;
        let offset_delta = batch::get_varlong(&mut record).ok_or_else(|| format!("record {i}: bad offset delta"))?;
        let key = nullable_bytes(&mut record).ok_or_else(|| format!("record {i}: bad key"))?;
        let value = nullable_bytes(&mut record).ok_or_else(|| format!("record {i}: bad value"))?;
        let offset = base_offset + offset_delta;
        if offset >= fetch_offset {
            on_record(ReadRecord { offset, key, value });
        }
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the last of {count} records", rest.len()));
    }
    Ok(())
}

fn nullable_bytes<'a>(buf: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let length = batch::get_varlong(buf)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(sequence: u64) -> ValueHeader {
        ValueHeader { run_id: 7, producer: 2, partition: 5, sequence, intended_unix_ns: 1_700_000_000_123_456_789 }
    }

    #[test]
    fn value_round_trip() {
        let source = payload_source(Payload::Random, 100, 1);
        let mut value = vec![0u8; 100];
        write_value(&mut value, &header(42), &source, 12345);
        assert_eq!(read_value(&value).unwrap(), header(42));
        // The smallest value is the header alone.
        let mut small = vec![0u8; VALUE_HEADER_BYTES];
        write_value(&mut small, &header(1), &source, 99);
        assert_eq!(read_value(&small).unwrap(), header(1));
    }

    #[test]
    fn value_check_catches_any_changed_byte() {
        let source = payload_source(Payload::Text, 64, 1);
        let mut value = vec![0u8; 64];
        write_value(&mut value, &header(1), &source, 0);
        for i in 0..value.len() {
            let mut bad = value.clone();
            bad[i] ^= 0x10;
            assert!(matches!(read_value(&bad), Err(ValueError::Checksum { .. })), "byte {i}");
        }
        assert_eq!(read_value(&value[..10]), Err(ValueError::TooShort(10)));
    }

    #[test]
    fn murmur2_matches_kafka() {
        // From Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    fn sample_batch(compression: Compression, records: u64) -> Bytes {
        let source = payload_source(Payload::Text, 200, 3);
        let mut builder = BatchBuilder::new(1024);
        for i in 0..records {
            let key = format!("key-{i}");
            let key = if i % 2 == 0 { Some(key.as_bytes()) } else { None };
            builder.push(1_000 + i as i64, key, 200, |out| write_value(out, &header(i), &source, i as usize * 31));
        }
        builder.finish(compression).unwrap()
    }

    #[test]
    fn batches_parse_with_the_brokers_parser_and_read_back() {
        for compression in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let bytes = sample_batch(compression, 10);
            let parsed = batch::parse_header(&bytes, 0, true).unwrap();
            assert_eq!(parsed.records_count, 10);
            assert_eq!(parsed.last_offset_delta, 9);
            assert_eq!(parsed.compression(), compression.attribute());
            assert_eq!((parsed.base_timestamp, parsed.max_timestamp), (1_000, 1_009));
            let mut sequences = Vec::new();
            let summary = read_batches(&bytes, 0, |r| sequences.push((r.offset, read_value(r.value.unwrap()).unwrap().sequence))).unwrap();
            assert_eq!(sequences, (0..10).map(|i| (i as i64, i)).collect::<Vec<_>>(), "{compression:?}");
            assert_eq!(summary, ReadSummary { next_offset: 10, batches: 1, batch_bytes: bytes.len() as u64 });
            // kafka-protocol's decoder reads the same records.
            let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
            assert_eq!(decoded.records.len(), 10);
            assert_eq!(decoded.records[0].key.as_deref(), Some(&b"key-0"[..]));
            assert_eq!(decoded.records[1].key, None);
        }
        // The uncompressed bytes are what the protocol crate's own reader sees too.
        let bytes = sample_batch(Compression::None, 3);
        let views = batch::records(&bytes).unwrap();
        assert_eq!(views.len(), 3);
        assert_eq!(views[2].timestamp, 1_002);
    }

    #[test]
    fn reading_skips_records_before_the_fetch_offset_and_stops_at_a_cut_batch() {
        let first = sample_batch(Compression::None, 4);
        let mut second = BytesMut::from(&sample_batch(Compression::Lz4, 4)[..]);
        second[0..8].copy_from_slice(&4i64.to_be_bytes());
        let mut all = BytesMut::new();
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        let cut = all.len() - 5;
        let all = all.freeze();
        let mut offsets = Vec::new();
        let summary = read_batches(&all, 2, |r| offsets.push(r.offset)).unwrap();
        assert_eq!(offsets, [2, 3, 4, 5, 6, 7]);
        assert_eq!(summary.next_offset, 8);
        let mut offsets = Vec::new();
        let summary = read_batches(&all.slice(..cut), 0, |r| offsets.push(r.offset)).unwrap();
        assert_eq!(offsets, [0, 1, 2, 3]);
        assert_eq!(summary.next_offset, 4);
    }

    #[test]
    fn a_corrupt_batch_is_an_error() {
        let mut bytes = BytesMut::from(&sample_batch(Compression::None, 2)[..]);
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        assert!(matches!(read_batches(&bytes.freeze(), 0, |_| {}), Err(ReadError::Batch(BatchError::CorruptCrc { .. }))));
    }

    #[test]
    fn keyed_partitioning_spreads_keys() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[partition_for_key(format!("key-{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
