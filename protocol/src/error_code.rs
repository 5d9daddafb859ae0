//! Kafka error codes, with Kafka's names and numbers (see Kafka's `Errors` enum): the one table
//! that the broker, the admin client and the load generator share.

use kafka_protocol::error::ResponseError;

// A macro rather than plain constants so that the test below sees every code in the table and
// a new one cannot be left out of it.
macro_rules! error_codes {
    ($($name:ident = $code:expr,)*) => {
        $(pub const $name: i16 = $code;)*

        #[cfg(test)]
        const ALL: &[(&str, i16)] = &[$((stringify!($name), $name)),*];
    };
}

error_codes! {
    NONE = 0,
    UNKNOWN_SERVER_ERROR = -1,

    // Topics, partitions and requests.
    OFFSET_OUT_OF_RANGE = 1,
    CORRUPT_MESSAGE = 2,
    UNKNOWN_TOPIC_OR_PARTITION = 3,
    INVALID_FETCH_SIZE = 4,
    LEADER_NOT_AVAILABLE = 5,
    NOT_LEADER_OR_FOLLOWER = 6,
    REQUEST_TIMED_OUT = 7,
    BROKER_NOT_AVAILABLE = 8,
    MESSAGE_TOO_LARGE = 10,
    INVALID_TOPIC_EXCEPTION = 17,
    RECORD_LIST_TOO_LARGE = 18,
    NOT_ENOUGH_REPLICAS = 19,
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20,
    INVALID_REQUIRED_ACKS = 21,
    INVALID_TIMESTAMP = 32,
    UNSUPPORTED_VERSION = 35,
    TOPIC_ALREADY_EXISTS = 36,
    INVALID_PARTITIONS = 37,
    INVALID_REPLICATION_FACTOR = 38,
    INVALID_REPLICA_ASSIGNMENT = 39,
    INVALID_CONFIG = 40,
    INVALID_REQUEST = 42,
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
    POLICY_VIOLATION = 44,
    KAFKA_STORAGE_ERROR = 56,
    FETCH_SESSION_ID_NOT_FOUND = 70,
    INVALID_FETCH_SESSION_EPOCH = 71,
    FENCED_LEADER_EPOCH = 74,
    UNKNOWN_LEADER_EPOCH = 75,
    UNSUPPORTED_COMPRESSION_TYPE = 76,
    INVALID_RECORD = 87,
    THROTTLING_QUOTA_EXCEEDED = 89,
    UNKNOWN_TOPIC_ID = 100,

    // Idempotent and transactional producers.
    NETWORK_EXCEPTION = 13,
    COORDINATOR_LOAD_IN_PROGRESS = 14,
    COORDINATOR_NOT_AVAILABLE = 15,
    NOT_COORDINATOR = 16,
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
    INVALID_PRODUCER_EPOCH = 47,
    INVALID_TXN_STATE = 48,
    INVALID_PRODUCER_ID_MAPPING = 49,
    INVALID_TRANSACTION_TIMEOUT = 50,
    CONCURRENT_TRANSACTIONS = 51,
    OPERATION_NOT_ATTEMPTED = 55,
    UNSTABLE_OFFSET_COMMIT = 88,
    PRODUCER_FENCED = 90,
    TRANSACTIONAL_ID_NOT_FOUND = 105,
    TRANSACTION_ABORTABLE = 120,

    // Consumer groups, classic (JoinGroup) and KIP-848 (ConsumerGroupHeartbeat).
    OFFSET_METADATA_TOO_LARGE = 12,
    ILLEGAL_GENERATION = 22,
    INCONSISTENT_GROUP_PROTOCOL = 23,
    INVALID_GROUP_ID = 24,
    UNKNOWN_MEMBER_ID = 25,
    INVALID_SESSION_TIMEOUT = 26,
    REBALANCE_IN_PROGRESS = 27,
    NON_EMPTY_GROUP = 68,
    GROUP_ID_NOT_FOUND = 69,
    MEMBER_ID_REQUIRED = 79,
    GROUP_MAX_SIZE_REACHED = 81,
    FENCED_INSTANCE_ID = 82,
    GROUP_SUBSCRIBED_TO_TOPIC = 86,
    FENCED_MEMBER_EPOCH = 110,
    UNRELEASED_INSTANCE_ID = 111,
    UNSUPPORTED_ASSIGNOR = 112,

    // Authorization.
    TOPIC_AUTHORIZATION_FAILED = 29,
    GROUP_AUTHORIZATION_FAILED = 30,
    CLUSTER_AUTHORIZATION_FAILED = 31,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    SECURITY_DISABLED = 54,

    // SASL and SCRAM credentials.
    UNSUPPORTED_SASL_MECHANISM = 33,
    ILLEGAL_SASL_STATE = 34,
    SASL_AUTHENTICATION_FAILED = 58,
    RESOURCE_NOT_FOUND = 91,
    DUPLICATE_RESOURCE = 92,
    UNACCEPTABLE_CREDENTIAL = 93,

    // The cluster and its metadata quorum.
    NOT_CONTROLLER = 41,
    STALE_BROKER_EPOCH = 77,
    DUPLICATE_BROKER_REGISTRATION = 101,

    // Partition replication (AlterPartition).
    INVALID_UPDATE_VERSION = 95,
    INELIGIBLE_REPLICA = 107,

    // Leader elections (ElectLeaders).
    PREFERRED_LEADER_NOT_AVAILABLE = 80,
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83,
    ELECTION_NOT_NEEDED = 84,

    // Partition reassignments (AlterPartitionReassignments).
    NO_REASSIGNMENT_IN_PROGRESS = 85,
    BROKER_ID_NOT_REGISTERED = 102,
    INCONSISTENT_CLUSTER_ID = 104,
    DUPLICATE_VOTER = 126,
    VOTER_NOT_FOUND = 127,
}

/// A Kafka error code as Kafka names it, with the number: `COORDINATOR_NOT_AVAILABLE (15)`.
/// Any code a broker may send is named, not only those in the table above.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE (0)".to_string(),
        Some(ResponseError::Unknown(_)) => format!("unknown error code {code}"),
        Some(e) => format!("{} ({code})", screaming_snake_case(&e.to_string())),
    }
}

/// Whether Kafka says a request that failed with `code` may succeed if sent again.
pub fn is_retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// `CoordinatorNotAvailable` -> `COORDINATOR_NOT_AVAILABLE`.
fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka() {
        assert_eq!(error_name(15), "COORDINATOR_NOT_AVAILABLE (15)");
        assert_eq!(error_name(69), "GROUP_ID_NOT_FOUND (69)");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR (-1)");
        assert_eq!(error_name(0), "NONE (0)");
        assert_eq!(error_name(9999), "unknown error code 9999");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS (36)");
        assert!(!is_retriable(69));
    }

    /// The errors Kafka's `Errors` enum backs with a `RetriableException`, which clients (the
    /// load generator among them) ask again on; and some it does not.
    #[test]
    fn retriable_follows_kafka() {
        for code in [
            NOT_LEADER_OR_FOLLOWER,
            LEADER_NOT_AVAILABLE,
            UNKNOWN_TOPIC_OR_PARTITION,
            REQUEST_TIMED_OUT,
            NOT_ENOUGH_REPLICAS,
            NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            COORDINATOR_NOT_AVAILABLE,
            NOT_COORDINATOR,
            COORDINATOR_LOAD_IN_PROGRESS,
            NETWORK_EXCEPTION,
            NOT_CONTROLLER,
            KAFKA_STORAGE_ERROR,
            CORRUPT_MESSAGE,
        ] {
            assert!(is_retriable(code), "{}", error_name(code));
        }
        for code in [NONE, UNKNOWN_SERVER_ERROR, TOPIC_ALREADY_EXISTS, MESSAGE_TOO_LARGE, INVALID_PARTITIONS, TOPIC_AUTHORIZATION_FAILED, GROUP_ID_NOT_FOUND] {
            assert!(!is_retriable(code), "{}", error_name(code));
        }
    }

    /// A mistyped number would still round-trip as `Unknown`, or as a neighbour's code; checking
    /// that Kafka knows the code and gives it the constant's name catches both.
    #[test]
    fn every_code_in_the_table_is_kafkas() {
        for &(name, code) in ALL {
            if code == NONE {
                assert_eq!(name, "NONE");
                assert_eq!(ResponseError::try_from_code(code), None);
                continue;
            }
            let error = ResponseError::try_from_code(code);
            assert!(!matches!(error, None | Some(ResponseError::Unknown(_))), "{name} = {code} is not a Kafka error code");
            assert_eq!(error.map(|e| e.code()), Some(code), "{name}");
            assert_eq!(error_name(code), format!("{name} ({code})"), "{name} = {code} is Kafka's {}", error_name(code));
        }
    }

    #[test]
    fn each_code_is_in_the_table_once() {
        let mut codes: Vec<i16> = ALL.iter().map(|&(_, code)| code).collect();
        codes.sort_unstable();
        let count = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), count, "two names for one code");
    }
}
