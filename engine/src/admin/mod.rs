//! Admin command-line tools (`shardlog group ...`): a small blocking Kafka client that talks to
//! a running broker over its listener, like Kafka's own scripts do.
