use super::*;

fn acl(resource_type: ResourceType, name: &str, pattern: PatternType, principal: &str, host: &str, operation: Operation, permission: Permission) -> AclBinding {
    AclBinding { resource_type, resource_name: name.into(), pattern_type: pattern, principal: principal.into(), host: host.into(), operation, permission }
}

fn on() -> AuthorizerConfig {
    AuthorizerConfig { enabled: true, super_users: vec!["User:admin".into()], allow_everyone_if_no_acl_found: false }
}

use Operation::*;
use PatternType::*;
use Permission::*;
use ResourceType::*;

#[test]
fn kafka_rules_by_example() {
    let mut set = AclSet::default();
    set.acls.insert(acl(Topic, "orders", Literal, "User:alice", "*", Read, Allow));
    set.acls.insert(acl(Topic, "logs-", Prefixed, "User:*", "*", Write, Allow));
    set.acls.insert(acl(Topic, "logs-secret", Literal, "User:bob", "*", All, Deny));
    set.acls.insert(acl(Topic, "*", Literal, "User:carol", "10.0.0.1", Describe, Allow));
    set.acls.insert(acl(Group, "g", Literal, "User:alice", "*", Read, Allow));
    let c = on();
    let a = |p: &str, h: &str, op, t, n: &str| set.authorize(&c, p, h, op, t, n);
    assert_eq!(a("User:alice", "1.2.3.4", Read, Topic, "orders"), Decision::Allowed);
    assert_eq!(a("User:alice", "1.2.3.4", Describe, Topic, "orders"), Decision::Allowed, "READ implies DESCRIBE");
    assert_eq!(a("User:alice", "1.2.3.4", Write, Topic, "orders"), Decision::NotAllowed);
    assert_eq!(a("User:bob", "1.2.3.4", Read, Topic, "orders"), Decision::NotAllowed);
    assert_eq!(a("User:bob", "1.2.3.4", Write, Topic, "logs-app"), Decision::Allowed, "prefixed pattern, wildcard principal");
    assert_eq!(a("User:bob", "1.2.3.4", Write, Topic, "logs-secret"), Decision::Denied, "deny wins over the prefixed allow");
    assert_eq!(a("User:carol", "10.0.0.1", Describe, Topic, "anything"), Decision::Allowed, "wildcard resource, matching host");
    assert_eq!(a("User:carol", "10.0.0.2", Describe, Topic, "anything"), Decision::NotAllowed, "other host");
    assert_eq!(a("User:alice", "1.2.3.4", Read, Topic, "no-acls-here"), Decision::NotAllowed, "no ACL: denied by default");
    assert_eq!(a("User:alice", "1.2.3.4", Read, Group, "g"), Decision::Allowed);
    assert_eq!(a("User:admin", "1.2.3.4", Alter, Cluster, "kafka-cluster"), Decision::Allowed, "super user");
    let open = AuthorizerConfig { allow_everyone_if_no_acl_found: true, ..on() };
    assert_eq!(set.authorize(&open, "User:x", "h", Read, Group, "other"), Decision::Allowed, "no ACL on the resource, allow.everyone.if.no.acl.found");
    assert_eq!(set.authorize(&open, "User:x", "h", Read, Topic, "orders"), Decision::NotAllowed, "ACLs exist on it");
    let off = AuthorizerConfig::default();
    assert_eq!(set.authorize(&off, "User:bob", "h", Write, Topic, "logs-secret"), Decision::Allowed, "no authorizer configured");
}

/// Kafka's rules written out a second way, per the documentation, to check the whole matrix
/// of principals, hosts, operations and resources against.
fn oracle(set: &AclSet, c: &AuthorizerConfig, principal: &str, host: &str, op: Operation, t: ResourceType, name: &str) -> bool {
    if !c.enabled || c.super_users.contains(&principal.to_string()) {
        return true;
    }
    let on_resource: Vec<&AclBinding> = set
        .acls
        .iter()
        .filter(|a| a.resource_type == t)
        .filter(|a| match a.pattern_type {
            Literal => a.resource_name == name || a.resource_name == "*",
            Prefixed => name.len() >= a.resource_name.len() && name[..a.resource_name.len()] == a.resource_name,
        })
        .collect();
    if on_resource.is_empty() {
        return c.allow_everyone_if_no_acl_found;
    }
    let mine: Vec<&&AclBinding> =
        on_resource.iter().filter(|a| [principal, "User:*"].contains(&a.principal.as_str()) && [host, "*"].contains(&a.host.as_str())).collect();
    let denied = mine.iter().any(|a| a.permission == Deny && [op, All].contains(&a.operation));
    let granted_ops = |a: &AclBinding| -> Vec<Operation> {
        match a.operation {
            All => Operation::EVERY.to_vec(),
            Read | Write | Delete | Alter => vec![a.operation, Describe],
            AlterConfigs => vec![AlterConfigs, DescribeConfigs],
            other => vec![other],
        }
    };
    !denied && mine.iter().any(|a| a.permission == Allow && granted_ops(a).contains(&op))
}

#[test]
fn matrix_matches_the_rules_with_no_unauthorized_success() {
    let principals = ["User:alice", "User:bob", "User:admin", "User:eve"];
    let hosts = ["10.0.0.1", "10.0.0.2"];
    let resources =
        [(Topic, "orders"), (Topic, "orders-eu"), (Topic, "logs"), (Group, "g1"), (Group, "orders"), (Cluster, "kafka-cluster"), (TransactionalId, "tx-1")];
    let mut set = AclSet::default();
    set.acls.insert(acl(Topic, "orders", Prefixed, "User:alice", "*", Write, Allow));
    set.acls.insert(acl(Topic, "orders-eu", Literal, "User:alice", "10.0.0.2", Write, Deny));
    set.acls.insert(acl(Topic, "*", Literal, "User:bob", "*", Read, Allow));
    set.acls.insert(acl(Topic, "logs", Literal, "User:*", "*", Describe, Deny));
    set.acls.insert(acl(Group, "g", Prefixed, "User:bob", "10.0.0.1", All, Allow));
    set.acls.insert(acl(Cluster, "kafka-cluster", Literal, "User:alice", "*", AlterConfigs, Allow));
    set.acls.insert(acl(TransactionalId, "tx-", Prefixed, "User:*", "*", Write, Allow));
    set.acls.insert(acl(TransactionalId, "tx-1", Literal, "User:eve", "*", Describe, Deny));
    let mut checked = 0;
    let mut allowed = 0;
    for allow_everyone in [false, true] {
        let c = AuthorizerConfig { allow_everyone_if_no_acl_found: allow_everyone, ..on() };
        for p in principals {
            for h in hosts {
                for op in Operation::EVERY.into_iter().filter(|o| *o != All) {
                    for (t, n) in resources {
                        let got = set.authorize(&c, p, h, op, t, n) == Decision::Allowed;
                        let want = oracle(&set, &c, p, h, op, t, n);
                        assert_eq!(got, want, "{p} from {h}: {} on {} {n}", op.name(), t.name());
                        checked += 1;
                        allowed += got as usize;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 4 * 2 * 12 * 7);
    assert!(allowed > 0 && allowed < checked, "the matrix exercises both outcomes");
}

#[test]
fn filters_select_like_kafka() {
    let a = acl(Topic, "orders", Literal, "User:alice", "*", Read, Allow);
    let p = acl(Topic, "ord", Prefixed, "User:bob", "*", Write, Deny);
    let any = AclFilter { resource_type: ANY, resource_name: None, pattern_type: ANY, principal: None, host: None, operation: ANY, permission: ANY };
    assert!(any.matches(&a) && any.matches(&p));
    let matching = AclFilter { resource_type: Topic as i8, resource_name: Some("orders".into()), pattern_type: PATTERN_MATCH, ..any.clone() };
    assert!(matching.matches(&a) && matching.matches(&p), "MATCH selects every pattern that applies to the name");
    let exact = AclFilter { pattern_type: Literal as i8, ..matching.clone() };
    assert!(exact.matches(&a) && !exact.matches(&p));
    let by_principal = AclFilter { principal: Some("User:bob".into()), ..any.clone() };
    assert!(!by_principal.matches(&a) && by_principal.matches(&p));
    assert!(AclFilter { operation: 42, ..any.clone() }.validate().is_err());
    assert!(AclBinding::from_wire(2, "t", 3, "alice", "*", 3, 3).is_err(), "principal without a type");
    assert!(AclBinding::from_wire(4, "other", 3, "User:a", "*", 7, 3).is_err(), "the cluster is kafka-cluster");
    assert!(AclBinding::from_wire(2, "t", 1, "User:a", "*", 3, 3).is_err(), "ANY is not a binding's pattern");
    assert!(AclBinding::from_wire(2, "t", 4, "User:a", "*", 3, 3).is_ok());
}
