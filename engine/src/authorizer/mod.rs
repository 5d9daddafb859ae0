//! Kafka ACLs: bindings of (resource pattern, principal, host, operation, allow or deny), the
//! filters of DescribeAcls and DeleteAcls, and the authorization decision with Kafka's
//! semantics:
//!
//! - super users (`super.users`) may do anything;
//! - an ACL applies to a resource through a literal pattern (the exact name, or the wildcard
//!   `*`) or a prefixed one (the name starts with it);
//! - a matching DENY wins over any ALLOW;
//! - with no ACL at all on the resource, `allow.everyone.if.no.acl.found` decides (default
//!   false: deny);
//! - ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, and ALLOW of ALTER_CONFIGS implies
//!   DESCRIBE_CONFIGS; ALL stands for every operation.
//!
//! The ACLs are part of the cluster metadata: the controller shard changes and persists them,
//! and every shard checks against its own read-only copy, so checks take no lock.

use serde::{Deserialize, Serialize};

/// Kafka's ResourceType ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// Kafka's PatternType ids (for bindings: literal or prefixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    Literal = 3,
    Prefixed = 4,
}

/// Kafka's AclOperation ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny = 2,
    Allow = 3,
}

/// Filter wildcards of the wire format.
pub const ANY: i8 = 1;
/// PatternType MATCH in a filter: every pattern that would apply to the named resource.
pub const PATTERN_MATCH: i8 = 2;
/// The literal resource name and principal/host that mean "every".
pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";

impl ResourceType {
    pub fn from_id(id: i8) -> Option<ResourceType> {
        use ResourceType::*;
        Some(match id {
            2 => Topic,
            3 => Group,
            4 => Cluster,
            5 => TransactionalId,
            6 => DelegationToken,
            7 => User,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        use ResourceType::*;
        match self {
            Topic => "Topic",
            Group => "Group",
            Cluster => "Cluster",
            TransactionalId => "TransactionalId",
            DelegationToken => "DelegationToken",
            User => "User",
        }
    }
    /// The operations an ACL on this kind of resource can grant (Kafka's
    /// `AclEntry.supportedOperations`): what "authorized operations" in Metadata,
    /// DescribeCluster and DescribeGroups answers are chosen from.
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[Read, Write, Create, Describe, Delete, Alter, DescribeConfigs, AlterConfigs],
            // Group configs (KIP-848) are described and altered on the group, as in Kafka 4.
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[Create, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, Alter, Describe],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
    pub fn parse(s: &str) -> Option<ResourceType> {
        [Self::Topic, Self::Group, Self::Cluster, Self::TransactionalId, Self::DelegationToken, Self::User]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

impl PatternType {
    pub fn from_id(id: i8) -> Option<PatternType> {
        match id {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }
}

impl Operation {
    pub const EVERY: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];
    pub fn from_id(id: i8) -> Option<Operation> {
        Self::EVERY.into_iter().find(|o| *o as i8 == id)
    }
    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            All => "ALL",
            Read => "READ",
            Write => "WRITE",
            Create => "CREATE",
            Delete => "DELETE",
            Alter => "ALTER",
            Describe => "DESCRIBE",
            ClusterAction => "CLUSTER_ACTION",
            DescribeConfigs => "DESCRIBE_CONFIGS",
            AlterConfigs => "ALTER_CONFIGS",
            IdempotentWrite => "IDEMPOTENT_WRITE",
            CreateTokens => "CREATE_TOKENS",
            DescribeTokens => "DESCRIBE_TOKENS",
        }
    }
    pub fn parse(s: &str) -> Option<Operation> {
        let s = s.replace(['-', ' '], "_");
        Self::EVERY.into_iter().find(|o| o.name().eq_ignore_ascii_case(&s))
    }
    /// Operations an ALLOW of `self` also grants.
    fn implies(self, wanted: Operation) -> bool {
        use Operation::*;
        self == wanted
            || self == All
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }
}

impl Permission {
    pub fn from_id(id: i8) -> Option<Permission> {
        match id {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Permission::Deny => "DENY",
            Permission::Allow => "ALLOW",
        }
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Longest resource name, principal or host in an ACL: bounds what a request can store.
pub const ACL_FIELD_BYTES_MAX: usize = 1024;
/// Most ACLs the broker keeps.
pub const ACLS_MAX: usize = 100_000;

impl AclBinding {
    /// A binding from wire values, or the reason it is invalid (INVALID_REQUEST).
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, String> {
        let resource_type = ResourceType::from_id(resource_type).ok_or_else(|| format!("invalid resource type {resource_type}"))?;
        let pattern_type = PatternType::from_id(pattern_type).ok_or_else(|| format!("invalid pattern type {pattern_type} (LITERAL or PREFIXED)"))?;
        let operation = Operation::from_id(operation).ok_or_else(|| format!("invalid operation {operation}"))?;
        let permission = Permission::from_id(permission).ok_or_else(|| format!("invalid permission type {permission}"))?;
        if resource_name.is_empty() {
            return Err(String::from("the resource name is empty"));
        }
        if resource_type == ResourceType::Cluster && resource_name != "kafka-cluster" {
            return Err(format!("the cluster resource is named kafka-cluster, not {resource_name:?}"));
        }
        if !principal.contains(':') || principal.starts_with(':') {
            return Err(format!("principal {principal:?} is not TYPE:NAME, such as User:alice"));
        }
        if host.is_empty() {
            return Err(String::from("the host is empty (use * for any host)"));
        }
        if [resource_name, principal, host].iter().any(|f| f.len() > ACL_FIELD_BYTES_MAX) {
            return Err(format!("a field is longer than {ACL_FIELD_BYTES_MAX} bytes"));
        }
        Ok(AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        })
    }

    /// Whether this ACL's resource pattern covers the resource `name`.
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == WILDCARD_PRINCIPAL) && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls / DeleteAcls filter, with Kafka's wildcards: ANY (1) for enums, None for
/// strings; pattern type MATCH (2) selects every pattern that would apply to the named
/// resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// A filter from the wire fields DescribeAcls and DeleteAcls share.
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> AclFilter {
        AclFilter {
            resource_type,
            resource_name: resource_name.map(String::from),
            pattern_type,
            principal: principal.map(String::from),
            host: host.map(String::from),
            operation,
            permission,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let ok_type = self.resource_type == ANY || ResourceType::from_id(self.resource_type).is_some();
        let ok_pattern = self.pattern_type == ANY || self.pattern_type == PATTERN_MATCH || PatternType::from_id(self.pattern_type).is_some();
        let ok_operation = self.operation == ANY || Operation::from_id(self.operation).is_some();
        let ok_permission = self.permission == ANY || Permission::from_id(self.permission).is_some();
        match (ok_type, ok_pattern, ok_operation, ok_permission) {
            (false, ..) => Err(format!("invalid resource type filter {}", self.resource_type)),
            (_, false, ..) => Err(format!("invalid pattern type filter {}", self.pattern_type)),
            (_, _, false, _) => Err(format!("invalid operation filter {}", self.operation)),
            (.., false) => Err(format!("invalid permission type filter {}", self.permission)),
            _ => Ok(()),
        }
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        let type_ok = self.resource_type == ANY || self.resource_type == acl.resource_type as i8;
        let pattern_ok = match (self.pattern_type, &self.resource_name) {
            (ANY, None) => true,
            (ANY, Some(name)) => *name == acl.resource_name,
            (PATTERN_MATCH, None) => true,
            (PATTERN_MATCH, Some(name)) => acl.covers(acl.resource_type, name),
            (pattern, name) => pattern == acl.pattern_type as i8 && name.as_ref().is_none_or(|n| *n == acl.resource_name),
        };
        type_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == ANY || self.operation == acl.operation as i8)
            && (self.permission == ANY || self.permission == acl.permission as i8)
    }
}

/// The authorizer's settings: `authorizer.class.name` (set: ACLs are enforced), `super.users`
/// (semicolon-separated principals), `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    pub enabled: bool,
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    pub fn parse_super_users(value: &str) -> Vec<String> {
        value.split(';').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }
}

/// Every ACL, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclSet {
    pub acls: std::collections::BTreeSet<AclBinding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// A DENY ACL matched.
    Denied,
    /// No ALLOW ACL matched (or no ACL at all, with allow.everyone.if.no.acl.found=false).
    NotAllowed,
}

impl AclSet {
    /// Kafka's decision for `principal` from `host` doing `operation` on a resource.
    pub fn authorize(&self, config: &AuthorizerConfig, principal: &str, host: &str, operation: Operation, resource_type: ResourceType, name: &str) -> Decision {
        if !config.enabled || config.super_users.iter().any(|s| s == principal) {
            return Decision::Allowed;
        }
        let mut any_acl = false;
        let mut allowed = false;
        for acl in self.acls.iter().filter(|a| a.covers(resource_type, name)) {
            any_acl = true;
            if !acl.applies_to(principal, host) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation == operation || acl.operation == Operation::All => return Decision::Denied,
                Permission::Allow if acl.operation.implies(operation) => allowed = true,
                _ => {}
            }
        }
        if allowed || (!any_acl && config.allow_everyone_if_no_acl_found) {
            Decision::Allowed
        } else {
            Decision::NotAllowed
        }
    }
}

#[cfg(test)]
mod tests;
