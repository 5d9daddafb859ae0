//! Authorization of one request: the connection's principal and host against the shard's copy
//! of the ACLs. Every denial is written to the audit log (target `shardlog::audit`) with the
//! principal, host, operation and resource, except where a request only lists what the
//! principal may see (Metadata without topics, ListGroups), as Kafka does.

use crate::authorizer::{Decision, Operation, ResourceType};
use crate::security::session::Session;
use crate::shard::Shard;

/// The name of the cluster resource.
pub const CLUSTER: &str = "kafka-cluster";

pub struct Authz<'a> {
    shard: &'a Shard,
    session: &'a Session,
}

impl<'a> Authz<'a> {
    pub fn new(shard: &'a Shard, session: &'a Session) -> Authz<'a> {
        Authz { shard, session }
    }

    fn decide(&self, operation: Operation, resource_type: ResourceType, name: &str, audit: bool) -> bool {
        let config = &self.shard.config.authorizer;
        if !config.enabled {
            return true;
        }
        let principal = self.session.principal();
        let host = self.session.peer.ip().to_string();
        let decision = self.shard.metadata.borrow().acls.authorize(config, &principal, &host, operation, resource_type, name);
        if decision != Decision::Allowed && audit {
            tracing::warn!(target: "shardlog::audit", %principal, %host, operation = %operation.name(), resource_type = %resource_type.name(), resource = %name, ?decision, "authorization denied");
        }
        decision == Decision::Allowed
    }

    /// Whether the principal may do `operation` on the resource; a denial is audited.
    pub fn allows(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.decide(operation, resource_type, name, true)
    }

    /// As `allows`, without an audit line: for filtering a listing.
    pub fn may_see(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.decide(operation, resource_type, name, false)
    }

    /// The operations of its kind the principal may do on the resource, as Kafka's 32-bit
    /// field (bit n for AclOperation n); every one of them when no authorizer is configured.
    /// Not audited: the client asked what it may do, it did not try.
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        let allowed = resource_type.supported_operations().iter().filter(|&&op| self.may_see(op, resource_type, name));
        allowed.fold(0, |bits, &op| bits | (1 << op as i32))
    }

    /// WRITE on at least one existing topic (KIP-679: enough for an idempotent producer).
    pub fn writes_any_topic(&self) -> bool {
        let topics: Vec<String> = self.shard.metadata.borrow().topics.keys().cloned().collect();
        topics.iter().any(|t| self.may_see(Operation::Write, ResourceType::Topic, t))
    }

    pub fn topic(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::Topic, name)
    }
    pub fn group(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::Group, name)
    }
    pub fn cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER)
    }
    pub fn transactional_id(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, name)
    }
}
