//! Compaction's decompression of producer data (`shardlog_protocol::compression`), then the
//! record parser on what comes out. Input: the codec (low 3 bits of the first byte), then the
//! compressed records section. Any bytes must give an error or at most the bound, never a
//! panic, an abort, or an allocation past the bound (libFuzzer's `-malloc_limit_mb` flags one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog_protocol::batch::{self, BatchHeader};
use shardlog_protocol::compression::{self, Codec};

const DECOMPRESSED_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&codec, compressed)) = data.split_first() else {
        return;
    };
    let Ok(codec) = Codec::of((codec & 7) as i16, compressed) else {
        return;
    };
    let Ok(body) = compression::decompress(codec, compressed, DECOMPRESSED_BYTES_MAX) else {
        return;
    };
    assert!(body.len() <= DECOMPRESSED_BYTES_MAX);
    // A header that claims as many records as it can: the parser must trust the bytes, not it.
    let header = BatchHeader {
        base_offset: 0,
        size_bytes: 0,
        partition_leader_epoch: -1,
        attributes: 0,
        last_offset_delta: i32::MAX,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: i32::MAX,
    };
    if let Some(records) = batch::records_of(&header, &body) {
        assert!(records.iter().all(|r| r.encoded.len() <= body.len()));
    }
    // Recompressing what came out must work for every codec.
    let again = compression::compress(codec, &body).expect("compressing a bounded buffer");
    assert_eq!(compression::decompress(codec, &again, DECOMPRESSED_BYTES_MAX).as_deref(), Ok(&body[..]));
});
