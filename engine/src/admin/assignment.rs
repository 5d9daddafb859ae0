//! Decoding of the consumer protocol's assignment bytes (`ConsumerProtocolAssignment`), which
//! DescribeGroups returns as an opaque blob per member.
//!
//! The bytes are written by clients and passed through by the broker unchanged, so they are
//! untrusted: every count and length is checked against the bytes actually left before anything
//! is reserved, and a bad blob is an error, never a panic.
//!
//! Layout (every version so far, 0-3; later versions append fields, so we read the prefix we
//! know, as Kafka's own consumer does):
//! ```text
//! version       i16
//! topics        i32 count, then per topic:
//!   topic       i16 length + UTF-8 bytes
//!   partitions  i32 count, then i32 each
//! user_data     nullable bytes (i32 length, -1 for null)   -- not needed here, not read
//! ```

use std::fmt;

/// Topic names are at most 249 bytes in Kafka; anything longer is not a topic this broker has.
const TOPIC_NAME_BYTES_MAX: usize = 249;

/// One member's assignment: (topic, partition) pairs in the order the blob lists them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub version: i16,
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentError {
    Truncated {
        offset: usize,
        field: &'static str,
    },
    NegativeVersion(i16),
    /// A count that is negative (null where the protocol forbids it) or larger than the bytes left.
    BadCount {
        offset: usize,
        field: &'static str,
        count: i32,
    },
    BadTopicName {
        offset: usize,
    },
}

impl fmt::Display for AssignmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssignmentError::Truncated { offset, field } => write!(f, "truncated at byte {offset} while reading the {field}"),
            AssignmentError::NegativeVersion(v) => write!(f, "negative version {v}"),
            AssignmentError::BadCount { offset, field, count } => write!(f, "{field} count {count} at byte {offset} does not fit the bytes left"),
            AssignmentError::BadTopicName { offset } => write!(f, "topic name at byte {offset} is not a valid topic name (empty, too long, or not UTF-8)"),
        }
    }
}

impl std::error::Error for AssignmentError {}

/// Decodes a member's assignment. Empty bytes mean "no assignment yet" (a member between
/// JoinGroup and SyncGroup) and decode to an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, AssignmentError> {
    if bytes.is_empty() {
        return Ok(Assignment::default());
    }
    let mut r = Reader { bytes, offset: 0 };
    let version = r.i16("version")?;
    if version < 0 {
        return Err(AssignmentError::NegativeVersion(version));
    }
    // Each topic takes at least 6 bytes (empty name length + partition count).
    let topic_count = r.count("topics", 6)?;
    let mut partitions = Vec::new();
    for _ in 0..topic_count {
        let name_offset = r.offset;
        let name_length = r.i16("topic name length")?;
        if name_length <= 0 || name_length as usize > TOPIC_NAME_BYTES_MAX {
            return Err(AssignmentError::BadTopicName { offset: name_offset });
        }
        let name = r.take(name_length as usize, "topic name")?;
        let topic = std::str::from_utf8(name).map_err(|_| AssignmentError::BadTopicName { offset: name_offset })?;
        let partition_count = r.count("partitions", 4)?;
        // The count is bounded by the bytes left, so this reserves at most bytes.len() / 4 entries.
        partitions.reserve(partition_count);
        for _ in 0..partition_count {
            let partition = r.i32("partition")?;
            partitions.push((topic.to_string(), partition));
        }
    }
    Ok(Assignment { version, partitions })
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], AssignmentError> {
        let end = self.offset.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(AssignmentError::Truncated { offset: self.offset, field })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, AssignmentError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, AssignmentError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array count, checked against the bytes left given each element's smallest size.
    fn count(&mut self, field: &'static str, element_bytes_min: usize) -> Result<usize, AssignmentError> {
        let offset = self.offset;
        let count = self.i32(field)?;
        let left = self.bytes.len() - self.offset;
        match usize::try_from(count) {
            Ok(n) if n.saturating_mul(element_bytes_min) <= left => Ok(n),
            _ => Err(AssignmentError::BadCount { offset, field, count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes an assignment the way Kafka's consumer does (user data null).
    fn encode(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&version.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend_from_slice(&p.to_be_bytes());
            }
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b
    }

    #[test]
    fn decodes_a_consumer_assignment() {
        let bytes = encode(3, &[("orders", &[0, 2]), ("audit", &[1])]);
        let a = decode_assignment(&bytes).unwrap();
        assert_eq!(a.version, 3);
        assert_eq!(a.partitions, vec![("orders".to_string(), 0), ("orders".to_string(), 2), ("audit".to_string(), 1)]);
    }

    #[test]
    fn empty_bytes_are_no_assignment() {
        assert_eq!(decode_assignment(&[]).unwrap(), Assignment::default());
    }

    #[test]
    fn user_data_and_later_fields_are_ignored() {
        let mut bytes = encode(1, &[("t", &[5])]);
        bytes.truncate(bytes.len() - 4);
        bytes.extend_from_slice(&3i32.to_be_bytes());
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(b"a field from version 9");
        assert_eq!(decode_assignment(&bytes).unwrap().partitions, vec![("t".to_string(), 5)]);
        // Missing user data: we do not need it, so we do not insist on it.
        let mut bytes = encode(0, &[("t", &[5])]);
        bytes.truncate(bytes.len() - 4);
        assert_eq!(decode_assignment(&bytes).unwrap().partitions, vec![("t".to_string(), 5)]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(0, &[("orders", &[0, 1, 2]), ("x", &[7])]);
        let user_data_bytes = 4;
        for length in 1..bytes.len() - user_data_bytes {
            let e = decode_assignment(&bytes[..length]).unwrap_err();
            assert!(matches!(e, AssignmentError::Truncated { .. } | AssignmentError::BadCount { .. }), "length {length}: {e}");
        }
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_assignment(&bytes).unwrap_err(), AssignmentError::BadCount { offset: 2, field: "topics", count: i32::MAX });

        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&1i16.to_be_bytes());
        bytes.push(b't');
        bytes.extend_from_slice(&(1i32 << 28).to_be_bytes());
        bytes.extend_from_slice(&[0; 8]);
        assert!(matches!(decode_assignment(&bytes).unwrap_err(), AssignmentError::BadCount { field: "partitions", .. }));

        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(decode_assignment(&bytes).unwrap_err(), AssignmentError::BadCount { count: -1, .. }));
    }

    #[test]
    fn bad_versions_and_names_are_refused() {
        assert_eq!(decode_assignment(&encode(-2, &[])).unwrap_err(), AssignmentError::NegativeVersion(-2));
        assert!(matches!(decode_assignment(&encode(0, &[("", &[0])])).unwrap_err(), AssignmentError::BadTopicName { offset: 6 }));
        let mut bytes = encode(0, &[("ab", &[0])]);
        bytes[8] = 0xff; // not UTF-8
        assert!(matches!(decode_assignment(&bytes).unwrap_err(), AssignmentError::BadTopicName { .. }));
        let mut bytes = encode(0, &[("ab", &[0])]);
        bytes[6..8].copy_from_slice(&(-1i16).to_be_bytes()); // null topic name
        assert!(matches!(decode_assignment(&bytes).unwrap_err(), AssignmentError::BadTopicName { .. }));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every byte string from a simple generator must decode or
        // fail cleanly.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 40) as usize;
            let bytes: Vec<u8> = (0..length).map(|i| (state >> (i % 8 * 8)) as u8 % 8).collect();
            let _ = decode_assignment(&bytes);
        }
    }
}
