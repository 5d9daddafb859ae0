//! Response encoding. Most responses go through `kafka-protocol`; Fetch has its own encoder so
//! that record data can be spliced in from a file (zero copy) instead of being copied.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;

/// Frames `body` with a 4-byte length and a response header of `header_version`.
pub fn encode_response<R: Encodable>(correlation_id: i32, header_version: i16, body: &R, version: i16) -> Result<Bytes, anyhow::Error> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let length = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&length.to_be_bytes());
    Ok(buf.freeze())
}

/// Where throttle_time_ms sits in a response body of `api_key` at `version`, in bytes from the
/// body's start, where that place is fixed: first in nearly every response that has the field
/// (from Kafka's message schemas), after the error code in OffsetDelete's. None for Produce and
/// ApiVersions (the field comes after variable-length arrays: see [`raise_throttle_time`] for
/// Produce) and where the version has none.
pub fn throttle_time_offset(api_key: i16, version: i16) -> Option<usize> {
    let first_from = match api_key {
        1 | 10 | 12 | 13 | 14 | 15 | 16 | 20 => 1,
        2 | 11 | 19 | 23 => 2,
        3 | 8 | 9 => 3,
        47 => return Some(2),
        21 | 22 | 24..=26 | 28..=35 | 37 | 42..=46 | 48..=51 | 56..=57 | 59..=82 => 0,
        _ => return None,
    };
    (version >= first_from).then_some(0)
}

/// Raises the throttle_time_ms of an encoded response frame to `throttle_ms` if it is lower.
/// `head` is the frame's first piece (length prefix, response header, and at least the body's
/// first bytes); answers the patched piece, or None when the field has no fixed place (see
/// [`throttle_time_offset`]) or is already that high. A Produce response's field is its last
/// one (v1+), found from the end when `head` is the whole frame and, in flexible versions, no
/// tagged field follows it.
pub fn raise_throttle_time(api_key: i16, version: i16, head: &[u8], throttle_ms: i32) -> Option<Bytes> {
    let key = kafka_protocol::messages::ApiKey::try_from(api_key).ok()?;
    // Length prefix and correlation id, then (header v1) an empty tagged-field section.
    let header_bytes = 8 + usize::from(key.response_header_version(version) >= 1);
    let at = if key == kafka_protocol::messages::ApiKey::Produce {
        let whole = head.len() >= header_bytes && i32::from_be_bytes(head[0..4].try_into().ok()?) as usize == head.len() - 4;
        let flexible = version >= 9;
        if !whole || version < 1 || (flexible && head.last() != Some(&0)) {
            return None;
        }
        head.len().checked_sub(if flexible { 5 } else { 4 }).filter(|at| *at >= header_bytes)?
    } else {
        header_bytes + throttle_time_offset(api_key, version)?
    };
    let current = i32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?);
    if current >= throttle_ms {
        return None;
    }
    let mut patched = BytesMut::from(head);
    patched[at..at + 4].copy_from_slice(&throttle_ms.to_be_bytes());
    Some(patched.freeze())
}

/// A piece of a response: bytes in memory, or `len` bytes the caller supplies from elsewhere
/// (a segment file, to be sent with sendfile).
#[derive(Debug)]
pub enum Chunk<T> {
    Bytes(Bytes),
    External { len: usize, source: T },
}

impl<T> Chunk<T> {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.len(),
            Chunk::External { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct FetchPartitionData<T> {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// (producer id, first offset) of the aborted transactions in the range read, for
    /// read_committed fetches; None (null) for read_uncommitted.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    /// v11+ (KIP-392): the replica the consumer should fetch from instead, or -1.
    pub preferred_read_replica: i32,
    /// Record-batch bytes as pieces; their lengths add up to the records field.
    pub records: Vec<Chunk<T>>,
}

pub struct FetchTopicData<T> {
    pub name: String,
    pub partitions: Vec<FetchPartitionData<T>>,
}

/// Highest Fetch version this encoder writes (v12: flexible, topic names; v13 switches to ids).
pub const FETCH_VERSION_MAX: i16 = 12;
pub const FETCH_VERSION_MIN: i16 = 4;

/// Record bytes in memory at least this large go out as chunks of their own, shared with the
/// batch cache rather than copied into the response; smaller ones are copied, so that a fetch of
/// many small batches does not become as many pieces to send.
pub const SHARED_CHUNK_BYTES_MIN: usize = 8 << 10;

struct ChunkWriter<T> {
    /// The frame's first bytes (length prefix, header), kept mutable until the length is known.
    head: Option<BytesMut>,
    chunks: Vec<Chunk<T>>,
    current: BytesMut,
}

impl<T> ChunkWriter<T> {
    fn flush_current(&mut self) {
        if self.head.is_none() {
            self.head = Some(self.current.split());
        } else if !self.current.is_empty() {
            self.chunks.push(Chunk::Bytes(self.current.split().freeze()));
        }
    }
    fn uvarint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.current.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.current.put_u8(value as u8);
    }
    fn array_len(&mut self, flexible: bool, len: usize) {
        if flexible {
            self.uvarint(len as u32 + 1);
        } else {
            self.current.put_i32(len as i32);
        }
    }
    fn string(&mut self, flexible: bool, s: &str) {
        if flexible {
            self.uvarint(s.len() as u32 + 1);
        } else {
            self.current.put_i16(s.len() as i16);
        }
        self.current.put_slice(s.as_bytes());
    }
    fn no_tagged_fields(&mut self, flexible: bool) {
        if flexible {
            self.current.put_u8(0);
        }
    }
}

/// Encodes a whole Fetch response frame (length prefix included) for `version` in 4..=12.
/// `records` chunks stay in order: `Chunk::External` sources and in-memory chunks of at least
/// `SHARED_CHUNK_BYTES_MIN` are passed through as pieces of their own (sent without a copy);
/// smaller in-memory chunks are copied in with the header bytes around them.
pub fn encode_fetch_response<T>(
    correlation_id: i32,
    version: i16,
    throttle_time_ms: i32,
    error_code: i16,
    session_id: i32,
    topics: Vec<FetchTopicData<T>>,
) -> Vec<Chunk<T>> {
    assert!((FETCH_VERSION_MIN..=FETCH_VERSION_MAX).contains(&version), "fetch version {version} not encodable");
    let flexible = version >= 12;
    let mut w = ChunkWriter { head: None, chunks: Vec::new(), current: BytesMut::with_capacity(512) };
    w.current.put_i32(0); // frame length, patched below
    w.current.put_i32(correlation_id);
    w.no_tagged_fields(flexible); // response header v1
    w.current.put_i32(throttle_time_ms);
    if version >= 7 {
        w.current.put_i16(error_code);
        w.current.put_i32(session_id);
    }
    w.array_len(flexible, topics.len());
    for topic in topics {
        w.string(flexible, &topic.name);
        w.array_len(flexible, topic.partitions.len());
        for partition in topic.partitions {
            w.current.put_i32(partition.partition_index);
            w.current.put_i16(partition.error_code);
            w.current.put_i64(partition.high_watermark);
            w.current.put_i64(partition.last_stable_offset);
            if version >= 5 {
                w.current.put_i64(partition.log_start_offset);
            }
            match &partition.aborted_transactions {
                None if flexible => w.uvarint(0),
                None => w.current.put_i32(-1),
                Some(aborted) => {
                    w.array_len(flexible, aborted.len());
                    for &(producer_id, first_offset) in aborted {
                        w.current.put_i64(producer_id);
                        w.current.put_i64(first_offset);
                        w.no_tagged_fields(flexible);
                    }
                }
            }
            if version >= 11 {
                w.current.put_i32(partition.preferred_read_replica);
            }
            // records: never null, since librdkafka rejects a null records field.
            let records_len: usize = partition.records.iter().map(Chunk::len).sum();
            if flexible {
                w.uvarint(records_len as u32 + 1);
            } else {
                w.current.put_i32(records_len as i32);
            }
            for chunk in partition.records {
                match chunk {
                    Chunk::Bytes(b) if b.len() < SHARED_CHUNK_BYTES_MIN => w.current.put_slice(&b),
                    shared => {
                        w.flush_current();
                        w.chunks.push(shared);
                    }
                }
            }
            w.no_tagged_fields(flexible);
        }
        w.no_tagged_fields(flexible);
    }
    w.no_tagged_fields(flexible);
    w.flush_current();
    let mut head = w.head.take().expect("the header was written");
    let total: usize = head.len() + w.chunks.iter().map(Chunk::len).sum::<usize>();
    head[0..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
    let mut chunks = Vec::with_capacity(w.chunks.len() + 1);
    chunks.push(Chunk::Bytes(head.freeze()));
    chunks.append(&mut w.chunks);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    fn flatten(chunks: Vec<Chunk<Bytes>>) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            match c {
                Chunk::Bytes(b) => out.extend_from_slice(&b),
                Chunk::External { source, .. } => out.extend_from_slice(&source),
            }
        }
        out
    }

    /// Encodes `response` with throttle time 5 in every version `versions`, raises it to 9 and
    /// decodes it back with kafka-protocol: the field that changed is throttle_time_ms and only it.
    fn raised_in_every_version<R>(api_key: kafka_protocol::messages::ApiKey, versions: std::ops::RangeInclusive<i16>, response: R, throttle: impl Fn(&R) -> i32)
    where
        R: Encodable + Decodable + PartialEq + std::fmt::Debug,
    {
        for version in versions {
            let header_version = api_key.response_header_version(version);
            let frame = encode_response(1, header_version, &response, version).unwrap();
            let has_field = throttle(&R::decode(&mut frame.slice(8 + usize::from(header_version >= 1)..), version).unwrap()) == 5;
            let patched = raise_throttle_time(api_key as i16, version, &frame, 9);
            assert_eq!(patched.is_some(), has_field, "{api_key:?} v{version}: patched where the field is");
            let Some(patched) = patched else { continue };
            let decoded = R::decode(&mut patched.slice(8 + usize::from(header_version >= 1)..), version).unwrap();
            assert_eq!(throttle(&decoded), 9, "{api_key:?} v{version}");
            assert!(raise_throttle_time(api_key as i16, version, &patched, 7).is_none(), "never lowered");
        }
    }

    #[test]
    fn throttle_time_is_raised_in_place_where_it_has_a_fixed_place() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::StrBytes;
        raised_in_every_version(ApiKey::Metadata, 0..=12, MetadataResponse::default().with_throttle_time_ms(5), |r| r.throttle_time_ms);
        raised_in_every_version(ApiKey::FindCoordinator, 0..=5, FindCoordinatorResponse::default().with_throttle_time_ms(5), |r| r.throttle_time_ms);
        raised_in_every_version(ApiKey::OffsetDelete, 0..=0, OffsetDeleteResponse::default().with_throttle_time_ms(5).with_error_code(3), |r| {
            r.throttle_time_ms
        });
        raised_in_every_version(ApiKey::ListOffsets, 1..=8, ListOffsetsResponse::default().with_throttle_time_ms(5), |r| r.throttle_time_ms);
        raised_in_every_version(ApiKey::DescribeConfigs, 1..=4, DescribeConfigsResponse::default().with_throttle_time_ms(5), |r| r.throttle_time_ms);
        raised_in_every_version(ApiKey::JoinGroup, 0..=9, JoinGroupResponse::default().with_throttle_time_ms(5), |r| r.throttle_time_ms);
        assert_eq!(throttle_time_offset(ApiKey::Produce as i16, 9), None, "after the responses array");
        // Produce: the last field, found from the end of the whole frame.
        let partition = produce_response::PartitionProduceResponse::default().with_index(3).with_base_offset(77);
        let topic = produce_response::TopicProduceResponse::default()
            .with_name(TopicName::from(StrBytes::from_static_str("t")))
            .with_partition_responses(vec![partition]);
        raised_in_every_version(ApiKey::Produce, 3..=12, ProduceResponse::default().with_throttle_time_ms(5).with_responses(vec![topic.clone()]), |r| {
            r.throttle_time_ms
        });
        // A tagged field after it (node endpoints, v10+): not found, left as it is.
        let endpoint = produce_response::NodeEndpoint::default().with_node_id(BrokerId(1)).with_host(StrBytes::from_static_str("h")).with_port(9092);
        let tagged = ProduceResponse::default().with_throttle_time_ms(5).with_responses(vec![topic]).with_node_endpoints(vec![endpoint]);
        let frame = encode_response(1, 1, &tagged, 10).unwrap();
        assert!(raise_throttle_time(ApiKey::Produce as i16, 10, &frame, 9).is_none());
        assert!(raise_throttle_time(ApiKey::Produce as i16, 10, &frame[..frame.len() - 1], 9).is_none(), "not the whole frame");
        assert_eq!(throttle_time_offset(ApiKey::ApiVersions as i16, 3), None, "after the api keys array");
        // Our own Fetch encoder: the throttle time sits in the head piece, before any records.
        for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let chunks = encode_fetch_response::<Bytes>(1, version, 5, 0, 0, Vec::new());
            let Chunk::Bytes(head) = &chunks[0] else { panic!("the head is in memory") };
            let patched = raise_throttle_time(ApiKey::Fetch as i16, version, head, 9).expect("fetch has the field first");
            let decoded = FetchResponse::decode(&mut patched.slice(if version >= 12 { 9 } else { 8 }..), version).unwrap();
            assert_eq!(decoded.throttle_time_ms, 9, "fetch v{version}");
        }
    }

    #[test]
    fn large_in_memory_records_are_passed_through_not_copied() {
        let records: Vec<crate::batch::KeyValue<'_>> = vec![(None, Some(&[7u8; 1024][..])); 16];
        let large = Bytes::from(crate::batch::build_batch(0, 1, &records));
        assert!(large.len() >= SHARED_CHUNK_BYTES_MIN);
        let small = Bytes::from(crate::batch::build_batch(16, 1, &[(None, Some(b"v"))]));
        let partition = FetchPartitionData {
            partition_index: 0,
            error_code: 0,
            high_watermark: 17,
            last_stable_offset: 17,
            log_start_offset: 0,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: vec![Chunk::Bytes(large.clone()), Chunk::Bytes(small.clone())],
        };
        let chunks = encode_fetch_response::<Bytes>(3, 12, 0, 0, 0, vec![FetchTopicData { name: "t".into(), partitions: vec![partition] }]);
        let shared: Vec<bool> = chunks.iter().map(|c| matches!(c, Chunk::Bytes(b) if b.as_ptr() == large.as_ptr())).collect();
        assert_eq!(shared, vec![false, true, false], "header, the large batch itself, then the small batch copied with the trailer");
        let bytes = flatten(chunks);
        assert_eq!(i32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize, bytes.len() - 4);
        let decoded = FetchResponse::decode(&mut Bytes::from(bytes).slice(9..), 12).unwrap();
        let got = decoded.responses[0].partitions[0].records.clone().unwrap();
        assert_eq!(got, [&large[..], &small[..]].concat());
    }

    #[test]
    fn fetch_response_decodes_with_kafka_protocol_in_every_version() {
        let batch = Bytes::from(crate::batch::build_batch(5, 1, &[(Some(b"k"), Some(b"v"))]));
        for version in FETCH_VERSION_MIN..=FETCH_VERSION_MAX {
            let topics = vec![FetchTopicData {
                name: "t".into(),
                partitions: vec![
                    FetchPartitionData {
                        partition_index: 0,
                        error_code: 0,
                        high_watermark: 6,
                        last_stable_offset: 6,
                        log_start_offset: 0,
                        aborted_transactions: Some(vec![(77, 2), (78, 4)]),
                        preferred_read_replica: -1,
                        records: vec![Chunk::Bytes(batch.slice(0..10)), Chunk::External { len: batch.len() - 10, source: batch.slice(10..) }],
                    },
                    FetchPartitionData {
                        partition_index: 1,
                        error_code: 1,
                        high_watermark: 0,
                        last_stable_offset: 0,
                        log_start_offset: 0,
                        aborted_transactions: None,
                        preferred_read_replica: 3,
                        records: vec![],
                    },
                ],
            }];
            let bytes = flatten(encode_fetch_response(9, version, 0, 0, 0, topics));
            assert_eq!(i32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize, bytes.len() - 4);
            assert_eq!(i32::from_be_bytes(bytes[4..8].try_into().unwrap()), 9);
            let mut body = Bytes::from(bytes).slice(if version >= 12 { 9 } else { 8 }..);
            let decoded = FetchResponse::decode(&mut body, version).unwrap();
            let p = &decoded.responses[0].partitions;
            assert_eq!(p[0].records.as_ref().unwrap(), &batch, "version {version}");
            let aborted: Vec<(i64, i64)> = p[0].aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
            assert_eq!(aborted, vec![(77, 2), (78, 4)], "version {version}");
            assert!(p[1].aborted_transactions.is_none());
            assert_eq!(p[1].error_code, 1);
            let preferred = if version >= 11 { (-1, 3) } else { (-1, -1) };
            assert_eq!((p[0].preferred_read_replica.0, p[1].preferred_read_replica.0), preferred, "version {version}");
            assert_eq!(p[1].records.as_ref().unwrap().len(), 0);
            assert!(body.is_empty(), "trailing bytes in version {version}");
        }
    }
}
