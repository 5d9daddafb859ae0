//! Every request schema the validator knows, not only those the broker decodes today.
//! Input: api key (i16), api version (i16), then the request body. Whatever validates is
//! decoded with `kafka-protocol`, which must return, never panic or abort (an abort is what an
//! unchecked `Vec::with_capacity(count)` does; libFuzzer's `-malloc_limit_mb` flags it).
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use shardlog_protocol::validate::validate_request_body;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let api_key = i16::from_be_bytes([head[0], head[1]]);
    let api_version = i16::from_be_bytes([head[2], head[3]]);
    if validate_request_body(api_key, api_version, body).is_err() {
        return;
    }
    let mut buf = Bytes::copy_from_slice(body);
    macro_rules! decode {
        ($($key:literal => $message:ty,)*) => {
            match api_key {
                $($key => { let _ = <$message as Decodable>::decode(&mut buf, api_version); })*
                _ => panic!("validator accepted api key {api_key}, which has no decoder here"),
            }
        };
    }
    decode! {
        0 => ProduceRequest,
        1 => FetchRequest,
        2 => ListOffsetsRequest,
        3 => MetadataRequest,
        8 => OffsetCommitRequest,
        9 => OffsetFetchRequest,
        10 => FindCoordinatorRequest,
        11 => JoinGroupRequest,
        12 => HeartbeatRequest,
        13 => LeaveGroupRequest,
        14 => SyncGroupRequest,
        15 => DescribeGroupsRequest,
        16 => ListGroupsRequest,
        17 => SaslHandshakeRequest,
        18 => ApiVersionsRequest,
        19 => CreateTopicsRequest,
        20 => DeleteTopicsRequest,
        22 => InitProducerIdRequest,
        32 => DescribeConfigsRequest,
        33 => AlterConfigsRequest,
        36 => SaslAuthenticateRequest,
        37 => CreatePartitionsRequest,
        42 => DeleteGroupsRequest,
        44 => IncrementalAlterConfigsRequest,
        47 => OffsetDeleteRequest,
        60 => DescribeClusterRequest,
    }
});
