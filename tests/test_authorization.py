"""ACL enforcement with authenticated principals (SASL PLAIN over SASL_PLAINTEXT).

- An authorization matrix: for each principal, operation and resource, the broker's answer
  matches Kafka's rules (computed here from the ACLs the test created), with zero unauthorized
  successes.
- Metadata hides topics the principal may not describe.
- Every denial leaves an audit line with principal, host, operation and resource.
- A real client (confluent-kafka) gets TOPIC_AUTHORIZATION_FAILED, and super users may do
  anything.
"""

from __future__ import annotations

import confluent_kafka
import pytest
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType

import clients
import kafkawire as kw
from security_helpers import parse_sasl_authenticate_v1, parse_sasl_handshake_v1, sasl_authenticate_v1, sasl_handshake_v1

USERS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw", "eve": "eve-pw"}
TOPICS = ["orders", "orders-eu", "secret"]

TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31


def config() -> dict:
    jaas = "x required " + " ".join(f'user_{u}="{p}"' for u, p in USERS.items()) + ";"
    return {
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
        "auto.create.topics.enable": "false",
    }


def sasl(port: int, user: str, **extra) -> dict:
    return clients.rdkafka(f"127.0.0.1:{port}", **{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                                                   "sasl.username": user, "sasl.password": USERS[user], **extra})


def login(port: int, user: str) -> kw.Connection:
    c = kw.Connection(port)
    code, _ = parse_sasl_handshake_v1(c.request(sasl_handshake_v1, "PLAIN"))
    assert code == 0
    code, message, _, _ = parse_sasl_authenticate_v1(c.request(sasl_authenticate_v1, b"\0" + user.encode() + b"\0" + USERS[user].encode()))
    assert code == 0, message
    return c


ACLS = [
    # alice: produce and consume "orders*" (prefixed), describe everything, her group.
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.GROUP, "g-alice", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
    # bob: read every topic, but never orders-eu (deny wins), and write nothing.
    AclBinding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:bob", "*", AclOperation.READ, AclPermissionType.ALLOW),
    AclBinding(ResourceType.TOPIC, "orders-eu", ResourcePatternType.LITERAL, "User:bob", "*", AclOperation.ALL, AclPermissionType.DENY),
    AclBinding(ResourceType.GROUP, "g-", ResourcePatternType.PREFIXED, "User:*", "*", AclOperation.READ, AclPermissionType.ALLOW),
]


def expected(user: str, operation: str, topic: str) -> bool:
    """Kafka's rules for the ACLs above, written out per case."""
    if user == "admin":
        return True
    if user == "alice":
        return topic.startswith("orders") and operation in ("write", "read", "describe")
    if user == "bob":
        return topic != "orders-eu" and operation in ("read", "describe")
    return False


@pytest.fixture
def secured(broker_factory):
    b = broker_factory(config=config(), extra_listeners=["SASL_PLAINTEXT"])
    port = b.extra_ports["SASL_PLAINTEXT"]
    admin = AdminClient(sasl(port, "admin"))
    for future in admin.create_topics([confluent_kafka.admin.NewTopic(t, 1) for t in TOPICS]).values():
        future.result(30)
    for future in admin.create_acls(ACLS).values():
        assert future.result(30) is None
    return b, port


def test_authorization_matrix_has_no_unauthorized_success(secured):
    broker, port = secured
    outcomes = []
    for user in USERS:
        with login(port, user) as c:
            for topic in TOPICS:
                # write: Produce v3
                [(_, _, code, _)] = kw.parse_produce_v3(c.request(kw.produce_v3_request, topic, 0, kw.record_batch([(b"k", user.encode())]), acks=1))
                outcomes.append((user, "write", topic, code != TOPIC_AUTHORIZATION_FAILED, code))
                # read: Fetch v4
                [fp] = kw.parse_fetch_v4(c.request(kw.fetch_v4_request, topic, 0, 0))
                outcomes.append((user, "read", topic, fp.error_code != TOPIC_AUTHORIZATION_FAILED, fp.error_code))
                # describe: ListOffsets v1
                [(_, _, code, _, _)] = kw.parse_list_offsets_v1(c.request(kw.list_offsets_v1_request, topic, 0, -1))
                outcomes.append((user, "describe", topic, code != TOPIC_AUTHORIZATION_FAILED, code))
                # describe: OffsetForLeaderEpoch v3 (a consumer's truncation check; a broker
                # without CLUSTER_ACTION is a consumer here)
                answers = kw.parse_offset_for_leader_epoch(c.request(kw.offset_for_leader_epoch_request, 3, [(topic, [(0, -1, 0)])], replica_id=1), 3)
                code = answers[(topic, 0)][0]
                outcomes.append((user, "describe", topic, code != TOPIC_AUTHORIZATION_FAILED, code))
    wrong = [(u, op, t, got, code) for u, op, t, got, code in outcomes if got != expected(u, op, t)]
    assert not wrong, f"decisions that differ from Kafka's rules: {wrong}"
    unauthorized = [o for o in outcomes if o[3] and not expected(o[0], o[1], o[2])]
    assert unauthorized == []
    assert sum(o[3] for o in outcomes) > 0 and not all(o[3] for o in outcomes)
    # Allowed operations really worked (not just "not denied").
    assert all(code == 0 for _, _, _, allowed, code in outcomes if allowed)
    log = broker.log_text()
    assert "authorization denied" in log and "principal=User:eve" in log and "operation=WRITE" in log and "resource=secret" in log


def test_metadata_hides_topics_and_group_and_cluster_checks(secured):
    broker, port = secured
    for user, visible in [("alice", {"orders", "orders-eu"}), ("bob", {"orders", "secret"}), ("eve", set()), ("admin", set(TOPICS))]:
        with login(port, user) as c:
            _, topics = kw.parse_metadata_v1(c.request(kw.metadata_v1_request, None))
            assert {t for t in topics if not t.startswith("__")} == visible, user
    with login(port, "eve") as c:
        _, topics = kw.parse_metadata_v1(c.request(kw.metadata_v1_request, ["secret"]))
        assert topics["secret"][0] == TOPIC_AUTHORIZATION_FAILED
        # eve may use groups named g-* (the wildcard principal's ACL) but not others.
        codes = kw.parse_offset_commit_v2(c.request(kw.offset_commit_v2_request, "other-group", -1, "", [("orders", 0, 1)]))
        assert codes == {("orders", 0): GROUP_AUTHORIZATION_FAILED}
        codes = kw.parse_offset_commit_v2(c.request(kw.offset_commit_v2_request, "g-eve", -1, "", [("orders", 0, 1)]))
        assert codes == {("orders", 0): TOPIC_AUTHORIZATION_FAILED}, "group allowed, topic not"
    with login(port, "alice") as c:
        codes = kw.parse_offset_commit_v2(c.request(kw.offset_commit_v2_request, "g-alice", -1, "", [("orders", 0, 1), ("secret", 0, 1)]))
        assert codes == {("orders", 0): 0, ("secret", 0): TOPIC_AUTHORIZATION_FAILED}
    # Managing ACLs needs ALTER on the cluster: alice is refused, admin (a super user) is not.
    alice_admin = AdminClient(sasl(port, "alice"))
    [future] = alice_admin.create_acls([ACLS[0]]).values()
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        future.result(30)
    assert refused.value.args[0].code() == confluent_kafka.KafkaError.CLUSTER_AUTHORIZATION_FAILED


def produce_error(port: int, user: str, topic: str):
    """The error of one produce by a real client (librdkafka), raised or reported; None if it
    was written."""
    producer = confluent_kafka.Producer(sasl(port, user, **{"message.timeout.ms": 10_000}))
    errors = []
    try:
        producer.produce(topic, value=b"x", partition=0, on_delivery=lambda err, msg: errors.append(err))
    except confluent_kafka.KafkaException as e:
        return e.args[0].code()
    producer.flush(30)
    assert len(errors) == 1
    return errors[0].code() if errors[0] is not None else None


def test_real_client_is_refused_then_allowed_once_an_acl_exists(secured):
    broker, port = secured
    assert produce_error(port, "eve", "secret") == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = AdminClient(sasl(port, "admin"))
    grant = AclBinding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:eve", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in admin.create_acls([grant]).values():
        future.result(30)
    assert produce_error(port, "eve", "secret") is None, "the new ACL takes effect without a restart"
    assert produce_error(port, "admin", "secret") is None, "super users need no ACL"


TOPIC_OPERATIONS = {"READ", "WRITE", "CREATE", "DESCRIBE", "DELETE", "ALTER", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
CLUSTER_OPERATIONS = {"CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALTER", "DESCRIBE"}
# Kafka 4 added the group configs' operations (KIP-848's group configs live on the group).
GROUP_OPERATIONS = {"READ", "DESCRIBE", "DELETE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}


def authorized_operations(admin: AdminClient, topic: str, group: str | None) -> tuple[set[str], set[str] | None, set[str] | None]:
    """What Metadata (describe_topics), DescribeCluster and DescribeGroups answer when the
    client asks for its authorized operations (None where the principal may not describe)."""
    names = lambda ops: None if ops is None else {op.name for op in ops}  # noqa: E731
    [future] = admin.describe_topics(confluent_kafka.TopicCollection([topic]), include_authorized_operations=True).values()
    topic_ops = names(future.result(30).authorized_operations)
    try:
        cluster_ops = names(admin.describe_cluster(include_authorized_operations=True).result(30).authorized_operations)
    except confluent_kafka.KafkaException:
        cluster_ops = None
    group_ops = None
    if group is not None:
        [future] = admin.describe_consumer_groups([group], include_authorized_operations=True).values()
        group_ops = names(future.result(30).authorized_operations)
    return topic_ops, cluster_ops, group_ops


def test_authorized_operations_follow_the_acls(secured):
    """Metadata, DescribeCluster and DescribeGroups answer include_*_authorized_operations with
    what the ACLs let the principal do (a READ or WRITE grant implies DESCRIBE, as in Kafka),
    from the operations Kafka defines for each kind of resource."""
    _, port = secured
    assert authorized_operations(AdminClient(sasl(port, "admin")), "orders", "g-alice") == (TOPIC_OPERATIONS, CLUSTER_OPERATIONS, GROUP_OPERATIONS)
    alice = authorized_operations(AdminClient(sasl(port, "alice")), "orders-eu", "g-alice")
    assert alice == ({"READ", "WRITE", "DESCRIBE"}, None, {"READ", "DESCRIBE"}), alice
    bob = authorized_operations(AdminClient(sasl(port, "bob")), "secret", "g-bob")
    assert bob == ({"READ", "DESCRIBE"}, None, {"READ", "DESCRIBE"}), bob


def test_authorized_operations_without_an_authorizer_are_all_of_them(broker):
    """With no authorizer every principal may do everything: Kafka answers every operation the
    resource supports (not the "not asked" sentinel that gave librdkafka an empty list)."""
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    clients.create_topic(broker.bootstrap, "ops", 1)
    assert authorized_operations(admin, "ops", "some-group") == (TOPIC_OPERATIONS, CLUSTER_OPERATIONS, GROUP_OPERATIONS)
