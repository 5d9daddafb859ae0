//! Building the string types of `kafka-protocol`'s messages from `&str`: every layer that
//! writes a response (the handlers, and the group coordinator below them) needs these, so they
//! live at the bottom, where nothing above has to be imported to get them.

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_keep_their_text() {
        assert_eq!(str_bytes("group-1").as_str(), "group-1");
        assert_eq!(topic_name("orders").0.as_str(), "orders");
        assert_eq!(str_bytes("").as_str(), "");
    }
}
