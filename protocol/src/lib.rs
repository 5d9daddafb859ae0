//! shardlog-protocol: the Kafka wire protocol, without I/O ("sans-io").
//!
//! It owns framing, request headers, the validation that every request body passes before it is
//! decoded, RecordBatch v2 header parsing and checking, and response encoding (with a Fetch
//! encoder that leaves record bytes to the caller, for zero-copy sends), and the one table of
//! Kafka error codes. It also owns the client side that shardlog's own tools (the admin CLI, the
//! load generator) share: version negotiation, correlation ids, response framing, and response
//! bodies validated before they are decoded (`client`). Everything here works on byte slices, so
//! it can be unit-tested and fuzzed without a runtime.
pub mod batch;
pub mod client;
pub mod compression;
pub mod error_code;
pub mod frame;
pub mod request;
pub mod response;
pub mod strings;
pub mod validate;

pub use kafka_protocol;
