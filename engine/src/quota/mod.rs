//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-219, KIP-257, KIP-546): what is kept in the
//! cluster metadata ([`ClientQuotas`], altered with AlterClientQuotas and read with
//! DescribeClientQuotas), how a (user, client-id) finds the quota that applies to it (Kafka's
//! precedence order, [`ClientQuotas::resolve`]), and the per-shard measurement that turns bytes
//! into a throttle time ([`manager`]).

pub mod manager;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// The longest entity name accepted (a user, a client id, an address): names travel in every
/// metadata snapshot, so one request cannot make them arbitrarily large.
pub const ENTITY_NAME_BYTES_MAX: usize = 1024;

/// Quota entities kept at most: every one is in every broker's image.
pub const ENTITIES_MAX: usize = 100_000;

/// How a quota value must look: Kafka's config types of the quota keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    Long,
    Int,
    Double,
}

/// The keys a user or client-id entity may have.
const CLIENT_KEYS: &[(&str, ValueType)] = &[
    (PRODUCER_BYTE_RATE, ValueType::Long),
    (CONSUMER_BYTE_RATE, ValueType::Long),
    (REQUEST_PERCENTAGE, ValueType::Double),
    (CONTROLLER_MUTATION_RATE, ValueType::Double),
];

/// The keys an ip entity may have.
const IP_KEYS: &[(&str, ValueType)] = &[(CONNECTION_CREATION_RATE, ValueType::Int)];

/// One component of an entity: a name, or the default for every name of its type (Kafka's
/// `<default>`, a null name on the wire).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    pub fn from_wire(name: Option<&str>) -> EntityName {
        name.map_or(EntityName::Default, |n| EntityName::Named(n.to_string()))
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// A quota entity: a user, a client id, both, or an ip. Components absent are not part of it
/// (`user=alice` alone is not `user=alice, client-id=<default>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<EntityName>,
}

impl QuotaEntity {
    /// (entity type, name) of each component, in Kafka's order.
    pub fn components(&self) -> Vec<(&'static str, &EntityName)> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push((USER, u));
        }
        if let Some(c) = &self.client_id {
            out.push((CLIENT_ID, c));
        }
        if let Some(i) = &self.ip {
            out.push((IP, i));
        }
        out
    }

    fn component(&self, entity_type: &str) -> Option<&EntityName> {
        match entity_type {
            USER => self.user.as_ref(),
            CLIENT_ID => self.client_id.as_ref(),
            IP => self.ip.as_ref(),
            _ => None,
        }
    }

    /// Builds and validates an entity from the request's (type, name) pairs, with Kafka's
    /// checks and messages (each one INVALID_REQUEST).
    pub fn from_wire<'a>(components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Result<QuotaEntity, String> {
        let mut entity = QuotaEntity::default();
        let mut any = false;
        for (entity_type, name) in components {
            any = true;
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => &mut entity.ip,
                other => return Err(format!("Unhandled client quota entity type: {other}")),
            };
            if slot.is_some() {
                return Err(format!("Invalid client quota entity: duplicate entity entry {entity_type}"));
            }
            if let Some(n) = name {
                if n.is_empty() {
                    return Err(format!("Empty {entity_type} not supported"));
                }
                if n.len() > ENTITY_NAME_BYTES_MAX {
                    return Err(format!("{entity_type} names may have at most {ENTITY_NAME_BYTES_MAX} bytes"));
                }
                // Kafka resolves host names too; an address here must be written as one, so
                // that what is stored does not depend on a resolver.
                if entity_type == IP && n.parse::<std::net::IpAddr>().is_err() {
                    return Err(format!("Unable to resolve address {n}: give an IPv4 or IPv6 address"));
                }
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if !any {
            return Err(String::from("Invalid empty client quota entity"));
        }
        if entity.ip.is_some() && (entity.user.is_some() || entity.client_id.is_some()) {
            return Err(String::from("Invalid quota entity combination, IP quota should not be combined with User or ClientId"));
        }
        Ok(entity)
    }

    fn valid_keys(&self) -> &'static [(&'static str, ValueType)] {
        if self.ip.is_some() {
            IP_KEYS
        } else {
            CLIENT_KEYS
        }
    }

    /// Checks one alteration of this entity: a key it may have, and for a set a value Kafka
    /// accepts (positive, whole for the integral keys, within range). Err: INVALID_REQUEST's
    /// message.
    pub fn validate_op(&self, key: &str, value: Option<f64>) -> Result<(), String> {
        let Some(&(_, kind)) = self.valid_keys().iter().find(|(k, _)| *k == key) else {
            let allowed: Vec<&str> = self.valid_keys().iter().map(|(k, _)| *k).collect();
            return Err(format!("Invalid configuration key {key} for this entity; valid keys: {}", allowed.join(", ")));
        };
        let Some(value) = value else { return Ok(()) };
        if !value.is_finite() {
            return Err(format!("Quota {key} must be a finite number, not {value}"));
        }
        if value <= 0.0 {
            return Err(format!("Quota {key} must be greater than 0"));
        }
        let max = match kind {
            ValueType::Double => return Ok(()),
            ValueType::Int => i32::MAX as f64,
            ValueType::Long => i64::MAX as f64,
        };
        if value > max {
            return Err(format!("Proposed value for {key} is too large for a{}", if kind == ValueType::Int { "n INT" } else { " LONG" }));
        }
        if (value - value.round()).abs() > 1e-6 {
            return Err(format!("{key} cannot be a fractional value."));
        }
        Ok(())
    }
}

/// A quota value. Values are finite (refused otherwise when altered), so equality is total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl Eq for QuotaValue {}

/// Every quota of the cluster, by entity (an entity with no key left is not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientQuotas {
    /// As a list in JSON (entities are not strings, which JSON object keys must be).
    #[serde(with = "entries_as_list")]
    pub entries: BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>,
}

mod entries_as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    type Entries = BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>;

    pub fn serialize<S: Serializer>(entries: &Entries, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(entries.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        let list: Vec<(QuotaEntity, BTreeMap<String, QuotaValue>)> = Vec::deserialize(d)?;
        Ok(list.into_iter().collect())
    }
}

/// A DescribeClientQuotas filter component, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// MATCH_TYPE_EXACT (0) with a name, or MATCH_TYPE_DEFAULT (1).
    Exactly(EntityName),
    /// MATCH_TYPE_SPECIFIED (2): the entity has this type, whatever its name.
    Any,
}

/// Why a filter was refused: Kafka answers INVALID_REQUEST or UNSUPPORTED_VERSION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    Invalid(String),
    Unsupported(String),
}

/// A DescribeClientQuotas filter: (entity type, match) per component, and whether an entity
/// must have no other component (`strict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaFilter {
    components: Vec<(&'static str, Match)>,
    strict: bool,
}

impl QuotaFilter {
    /// Kafka's checks, in its order (ClientQuotasImage.describe).
    pub fn from_wire<'a>(components: impl IntoIterator<Item = (&'a str, i8, Option<&'a str>)>, strict: bool) -> Result<QuotaFilter, FilterError> {
        let mut out: Vec<(&'static str, Match)> = Vec::new();
        for (entity_type, match_type, name) in components {
            if entity_type.is_empty() {
                return Err(FilterError::Invalid(String::from("Invalid empty entity type.")));
            }
            if out.iter().any(|(t, _)| *t == entity_type) {
                return Err(FilterError::Invalid(format!("Entity type {entity_type} cannot appear more than once in the filter.")));
            }
            let entity_type = match entity_type {
                USER => USER,
                CLIENT_ID => CLIENT_ID,
                IP => IP,
                other => return Err(FilterError::Unsupported(format!("Unsupported entity type {other}"))),
            };
            let m = match (match_type, name) {
                (0, Some(n)) => Match::Exactly(EntityName::Named(n.to_string())),
                (0, None) => return Err(FilterError::Invalid(String::from("Request specified MATCH_TYPE_EXACT, but set match string to null."))),
                (1, None) => Match::Exactly(EntityName::Default),
                (1, Some(_)) => return Err(FilterError::Invalid(String::from("Request specified MATCH_TYPE_DEFAULT, but also specified a match string."))),
                (2, None) => Match::Any,
                (2, Some(_)) => return Err(FilterError::Invalid(String::from("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."))),
                (other, _) => return Err(FilterError::Unsupported(format!("Unknown match type {other}"))),
            };
            out.push((entity_type, m));
        }
        let has = |t: &str| out.iter().any(|(x, _)| *x == t);
        if has(IP) && (has(USER) || has(CLIENT_ID)) {
            return Err(FilterError::Invalid(String::from(
                "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.",
            )));
        }
        Ok(QuotaFilter { components: out, strict })
    }

    pub fn matches(&self, entity: &QuotaEntity) -> bool {
        if self.strict && entity.components().len() != self.components.len() {
            return false;
        }
        self.components.iter().all(|(t, m)| match (entity.component(t), m) {
            (None, _) => false,
            (Some(_), Match::Any) => true,
            (Some(name), Match::Exactly(want)) => name == want,
        })
    }
}

/// The quota that applies to a client, and the (user, client-id) it is measured under: every
/// client that shares these tags shares one measurement, as Kafka's quota metric tags do.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub bound: f64,
    pub user_tag: String,
    pub client_tag: String,
}

impl ClientQuotas {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The quota `key` of a client with principal name `user` and `client_id`, in Kafka's
    /// precedence order (most specific first):
    /// user+client-id, user+default client-id, user, default user+client-id, default user+
    /// default client-id, default user, client-id, default client-id. None: unlimited.
    pub fn resolve(&self, key: &str, user: &str, client_id: &str) -> Option<Resolved> {
        use EntityName::{Default, Named};
        if self.entries.is_empty() {
            return None;
        }
        let named_user = || Some(Named(user.to_string()));
        let named_client = || Some(Named(client_id.to_string()));
        // (entity, whether its tags carry the user, the client id)
        let order: [(QuotaEntity, bool, bool); 8] = [
            (QuotaEntity { user: named_user(), client_id: named_client(), ip: None }, true, true),
            (QuotaEntity { user: named_user(), client_id: Some(Default), ip: None }, true, true),
            (QuotaEntity { user: named_user(), client_id: None, ip: None }, true, false),
            (QuotaEntity { user: Some(Default), client_id: named_client(), ip: None }, true, true),
            (QuotaEntity { user: Some(Default), client_id: Some(Default), ip: None }, true, true),
            (QuotaEntity { user: Some(Default), client_id: None, ip: None }, true, false),
            (QuotaEntity { user: None, client_id: named_client(), ip: None }, false, true),
            (QuotaEntity { user: None, client_id: Some(Default), ip: None }, false, true),
        ];
        order.into_iter().find_map(|(entity, with_user, with_client)| {
            let bound = self.entries.get(&entity)?.get(key)?.0;
            Some(Resolved {
                bound,
                user_tag: if with_user { user.to_string() } else { String::new() },
                client_tag: if with_client { client_id.to_string() } else { String::new() },
            })
        })
    }

    /// The quota of connections per second from `ip`: its own, else the default ip quota.
    pub fn ip_connection_rate(&self, ip: &std::net::IpAddr) -> Option<f64> {
        let get = |name: EntityName| self.entries.get(&QuotaEntity { ip: Some(name), ..Default::default() })?.get(CONNECTION_CREATION_RATE).map(|v| v.0);
        get(EntityName::Named(ip.to_string())).or_else(|| get(EntityName::Default))
    }
}

/// The user name quotas know a principal by: `User:alice` is `alice` (Kafka's principal name).
pub fn user_of(principal: &str) -> &str {
    principal.split_once(':').map_or(principal, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> QuotaEntity {
        QuotaEntity { user: user.map(EntityName::from_wire), client_id: client.map(EntityName::from_wire), ip: None }
    }

    fn with(entries: &[(QuotaEntity, f64)]) -> ClientQuotas {
        ClientQuotas { entries: entries.iter().map(|(e, v)| (e.clone(), BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), QuotaValue(*v))]))).collect() }
    }

    fn resolved(q: &ClientQuotas, user: &str, client: &str) -> Option<(f64, String, String)> {
        q.resolve(PRODUCER_BYTE_RATE, user, client).map(|r| (r.bound, r.user_tag, r.client_tag))
    }

    #[test]
    fn the_most_specific_entity_wins_in_kafkas_order() {
        let levels = [
            entity(Some(Some("alice")), Some(Some("app"))),
            entity(Some(Some("alice")), Some(None)),
            entity(Some(Some("alice")), None),
            entity(Some(None), Some(Some("app"))),
            entity(Some(None), Some(None)),
            entity(Some(None), None),
            entity(None, Some(Some("app"))),
            entity(None, Some(None)),
        ];
        // With every level set, each level applies once the ones above it are gone.
        for first in 0..levels.len() {
            let q = with(&levels[first..].iter().enumerate().map(|(i, e)| (e.clone(), (first + i + 1) as f64)).collect::<Vec<_>>());
            let (bound, _, _) = resolved(&q, "alice", "app").unwrap();
            assert_eq!(bound, (first + 1) as f64, "level {first}");
        }
        assert_eq!(resolved(&with(&[]), "alice", "app"), None);
    }

    #[test]
    fn clients_sharing_a_user_quota_share_its_measurement() {
        let q = with(&[(entity(Some(Some("alice")), None), 10.0), (entity(None, Some(None)), 5.0)]);
        assert_eq!(resolved(&q, "alice", "app"), Some((10.0, "alice".into(), String::new())));
        // The default client-id quota: each client id measured apart, whatever its user.
        assert_eq!(resolved(&q, "bob", "app"), Some((5.0, String::new(), "app".into())));
        // A quota of another key does not apply.
        assert!(q.resolve(CONSUMER_BYTE_RATE, "alice", "app").is_none());
    }

    #[test]
    fn entities_and_values_are_validated_as_kafka_does() {
        assert!(QuotaEntity::from_wire([]).unwrap_err().contains("empty"));
        assert!(QuotaEntity::from_wire([("group", Some("g"))]).unwrap_err().contains("Unhandled"));
        assert!(QuotaEntity::from_wire([(USER, Some("a")), (USER, Some("b"))]).unwrap_err().contains("duplicate"));
        assert!(QuotaEntity::from_wire([(USER, Some(""))]).unwrap_err().contains("Empty user"));
        assert!(QuotaEntity::from_wire([(IP, Some("1.2.3.4")), (USER, None)]).unwrap_err().contains("combination"));
        assert!(QuotaEntity::from_wire([(IP, Some("not an address"))]).is_err());
        let user = QuotaEntity::from_wire([(USER, Some("a")), (CLIENT_ID, None)]).unwrap();
        assert_eq!(user.client_id, Some(EntityName::Default));
        assert!(user.validate_op(PRODUCER_BYTE_RATE, Some(1024.0)).is_ok());
        assert!(user.validate_op(PRODUCER_BYTE_RATE, Some(10.5)).unwrap_err().contains("fractional"));
        assert!(user.validate_op(PRODUCER_BYTE_RATE, Some(0.0)).unwrap_err().contains("greater than 0"));
        assert!(user.validate_op(PRODUCER_BYTE_RATE, Some(f64::NAN)).is_err());
        assert!(user.validate_op(REQUEST_PERCENTAGE, Some(12.5)).is_ok());
        assert!(user.validate_op(CONNECTION_CREATION_RATE, Some(5.0)).is_err());
        assert!(user.validate_op("bogus", None).unwrap_err().contains("Invalid configuration key"));
        let ip = QuotaEntity::from_wire([(IP, None)]).unwrap();
        assert!(ip.validate_op(CONNECTION_CREATION_RATE, Some(5.0)).is_ok());
        assert!(ip.validate_op(CONNECTION_CREATION_RATE, Some(3e9)).unwrap_err().contains("too large"));
        assert!(ip.validate_op(PRODUCER_BYTE_RATE, Some(5.0)).is_err());
    }

    #[test]
    fn filters_match_exact_default_and_any_name() {
        let f = |c: &[(&str, i8, Option<&str>)], strict| QuotaFilter::from_wire(c.iter().copied(), strict);
        let alice = entity(Some(Some("alice")), None);
        let alice_app = entity(Some(Some("alice")), Some(Some("app")));
        let default_user = entity(Some(None), None);
        let exact = f(&[(USER, 0, Some("alice"))], false).unwrap();
        assert!(exact.matches(&alice) && exact.matches(&alice_app) && !exact.matches(&default_user));
        let strict = f(&[(USER, 0, Some("alice"))], true).unwrap();
        assert!(strict.matches(&alice) && !strict.matches(&alice_app));
        let default = f(&[(USER, 1, None)], false).unwrap();
        assert!(default.matches(&default_user) && !default.matches(&alice));
        // MATCH_TYPE_SPECIFIED matches the type whatever its name, the default included.
        let any = f(&[(USER, 2, None)], false).unwrap();
        assert!(any.matches(&alice) && any.matches(&default_user) && !any.matches(&entity(None, Some(Some("app")))));
        assert!(f(&[], false).unwrap().matches(&alice));
        assert!(f(&[], true).unwrap().matches(&QuotaEntity::default()));
        assert!(matches!(f(&[(USER, 0, None)], false), Err(FilterError::Invalid(_))));
        assert!(matches!(f(&[(USER, 1, Some("a"))], false), Err(FilterError::Invalid(_))));
        assert!(matches!(f(&[(USER, 2, None), (USER, 2, None)], false), Err(FilterError::Invalid(_))));
        assert!(matches!(f(&[(IP, 2, None), (USER, 2, None)], false), Err(FilterError::Invalid(_))));
        assert!(matches!(f(&[("group", 2, None)], false), Err(FilterError::Unsupported(_))));
        assert!(matches!(f(&[(USER, 7, None)], false), Err(FilterError::Unsupported(_))));
    }

    #[test]
    fn quotas_round_trip_through_json() {
        let q = with(&[(entity(Some(Some("alice")), Some(None)), 10.0), (entity(None, Some(Some("app"))), 5.0)]);
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<ClientQuotas>(&json).unwrap(), q);
    }
}
