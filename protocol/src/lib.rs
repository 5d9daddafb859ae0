//! shardlog-protocol: the Kafka wire protocol without I/O.
pub mod validate;
