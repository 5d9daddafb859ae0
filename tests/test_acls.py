"""ACL management with real clients: CreateAcls, DescribeAcls and DeleteAcls through
confluent-kafka's and kafka-python's admin clients and `shardlog acl`, with Kafka's filter
semantics, validation, and persistence across kill -9.

(Enforcement with authenticated principals is test_authorization.py; the rules matrix is the
unit test in engine/src/authorizer/tests.rs.)
"""

from __future__ import annotations

import subprocess

import pytest

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType)

import clients
from conftest import broker_binary


def shardlog_acl(*args: str, bootstrap: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(broker_binary()), "acl", *args, "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=60)


def described(admin: AdminClient, flt: AclBindingFilter) -> set[tuple]:
    return {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type) for b in admin.describe_acls(flt).result(30)}


# ACLs are managed only where an authorizer is configured (elsewhere Kafka answers
# SECURITY_DISABLED); the anonymous PLAINTEXT client is a super user so that it may manage them.
AUTHORIZER = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:ANONYMOUS"}


@pytest.fixture
def broker(broker_factory):
    return broker_factory(config=AUTHORIZER)


ANY_FILTER = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)


def test_create_describe_delete_with_confluent_admin(broker):
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    bindings = [
        AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, "ord", ResourcePatternType.PREFIXED, "User:bob", "*", AclOperation.WRITE, AclPermissionType.DENY),
        AclBinding(ResourceType.GROUP, "g1", ResourcePatternType.LITERAL, "User:alice", "10.0.0.1", AclOperation.ALL, AclPermissionType.ALLOW),
    ]
    for future in admin.create_acls(bindings).values():
        assert future.result(30) is None
    assert len(described(admin, ANY_FILTER)) == 3
    # MATCH: every pattern that applies to topic "orders": the literal and the prefixed one.
    match = AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.MATCH, None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert {b[3] for b in described(admin, match)} == {"User:alice", "User:bob"}
    literal = AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert {b[3] for b in described(admin, literal)} == {"User:alice"}
    by_principal = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None, AclOperation.ANY, AclPermissionType.ANY)
    assert {b[0] for b in described(admin, by_principal)} == {ResourceType.TOPIC, ResourceType.GROUP}
    # Delete the prefixed DENY only.
    deny = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.DENY)
    [deleted] = [f.result(30) for f in admin.delete_acls([deny]).values()]
    assert [(b.name, b.principal) for b in deleted] == [("ord", "User:bob")]
    assert len(described(admin, ANY_FILTER)) == 2

    # They survive kill -9: the ACLs are in the cluster metadata, written before the answer.
    broker.kill9()
    broker.start()
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    assert {b[1] for b in described(admin, ANY_FILTER)} == {"orders", "g1"}


def test_invalid_acls_are_refused_with_a_reason(broker):
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, KafkaAdminClient, ResourcePattern
    from kafka.admin import ResourceType as KResourceType
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        good = ACL("User:carol", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW, ResourcePattern(KResourceType.TOPIC, "t1"))
        bad = ACL("carol-without-type", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW, ResourcePattern(KResourceType.TOPIC, "t1"))
        result = admin.create_acls([good, bad])
        assert [a.principal for a in result["succeeded"]] == ["User:carol"]
        # kafka-python reports each failure as its error class.
        from kafka.errors import InvalidRequestError
        assert result["failed"] == [InvalidRequestError]
        from kafka.admin import ACLFilter, ResourcePatternFilter, ACLResourcePatternType
        acls, error = admin.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                                    ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY)))
        assert [a.principal for a in acls] == ["User:carol"]
    finally:
        admin.close()
    assert "CreateAcls: invalid ACL refused" in broker.log_text()


def test_shardlog_acl_cli(broker):
    added = shardlog_acl("add", "--allow-principal", "User:dave", "--operation", "Read", "--operation", "Describe", "--topic", "payments",
                         "--resource-pattern-type", "prefixed", bootstrap=broker.bootstrap)
    assert added.returncode == 0 and "added 2 ACL(s)" in added.stdout, added.stderr
    listed = shardlog_acl("list", bootstrap=broker.bootstrap)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN-TYPE", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]
    assert sorted(line.split() for line in lines[1:]) == [
        ["Topic", "payments", "PREFIXED", "User:dave", "*", "DESCRIBE", "ALLOW"],
        ["Topic", "payments", "PREFIXED", "User:dave", "*", "READ", "ALLOW"],
    ]
    bad = shardlog_acl("add", "--allow-principal", "User:dave", "--operation", "Fly", "--topic", "x", bootstrap=broker.bootstrap)
    assert bad.returncode != 0 and "unknown operation" in bad.stderr
    removed = shardlog_acl("remove", "--allow-principal", "User:dave", "--operation", "Read", "--topic", "payments", "--resource-pattern-type", "prefixed",
                           bootstrap=broker.bootstrap)
    assert removed.returncode == 0 and "removed 1 ACL(s)" in removed.stdout, removed.stderr
    assert len(shardlog_acl("list", bootstrap=broker.bootstrap).stdout.splitlines()) == 2


def test_acls_without_an_authorizer_answer_security_disabled(broker_factory):
    """As Kafka: with no authorizer.class.name, DescribeAcls, CreateAcls and DeleteAcls answer
    SECURITY_DISABLED rather than an empty list (kafka-acls.sh --list then says so)."""
    from confluent_kafka import KafkaError, KafkaException
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, KafkaAdminClient, ResourcePatternFilter
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import SecurityDisabledError
    plain = broker_factory()
    # librdkafka does not surface DescribeAcls' top-level error code; kafka-python does.
    kp = KafkaAdminClient(bootstrap_servers=plain.bootstrap)
    try:
        with pytest.raises(SecurityDisabledError):
            kp.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY, ResourcePatternFilter(KResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        kp.close()
    admin = AdminClient(clients.rdkafka(plain.bootstrap))
    binding = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW)
    for call in (lambda: [f.result(30) for f in admin.create_acls([binding]).values()], lambda: [f.result(30) for f in admin.delete_acls([ANY_FILTER]).values()]):
        with pytest.raises(KafkaException) as refused:
            call()
        assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED, refused.value
    for request in ("DescribeAcls", "CreateAcls", "DeleteAcls"):
        assert f"{request} refused: no authorizer.class.name is set" in plain.log_text()
    listed = shardlog_acl("list", bootstrap=plain.bootstrap)
    assert listed.returncode != 0 and "SECURITY_DISABLED" in listed.stderr, (listed.stdout, listed.stderr)
