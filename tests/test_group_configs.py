"""Group configs (KIP-848, config resource type GROUP = 32): `consumer.session.timeout.ms` and
`consumer.heartbeat.interval.ms` set with IncrementalAlterConfigs (librdkafka's AdminClient) and
AlterConfigs/DescribeConfigs (kafka-python), kept in the cluster metadata across a restart,
refused with INVALID_CONFIG when unknown or outside the broker's `group.consumer.min/max.*`
bounds, and in effect: ConsumerGroupHeartbeat tells a member of the group the group's interval.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

import clients
import kafkawire as kw

INVALID_CONFIG = 40
GROUP_AUTHORIZATION_FAILED = 30
CONSUMER_GROUP_HEARTBEAT = 68
# The broker's bounds are widened so that the test's values differ from every default.
BROKER_CONFIG = {"group.consumer.max.heartbeat.interval.ms": "20000", "group.consumer.heartbeat.interval.ms": "6000"}


def rd_incremental(bootstrap: str, group: str, entries: list[ConfigEntry]) -> None:
    admin = AdminClient(clients.rdkafka(bootstrap))
    [future] = admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)]).values()
    future.result(timeout=60)


def rd_describe(bootstrap: str, group: str) -> dict:
    admin = AdminClient(clients.rdkafka(bootstrap))
    [future] = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)]).values()
    return future.result(timeout=60)


def kp_describe(bootstrap: str, group: str) -> dict:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        described = admin.describe_configs([KpResource(ConfigResourceType.GROUP, group)], include_synonyms=True, config_filter="all")
    finally:
        admin.close()
    return described["group"][group]


def heartbeat_v0_request(correlation_id: int, group: str, topics: list[str]) -> bytes:
    """A joining ConsumerGroupHeartbeat v0 (member epoch 0, no member id yet)."""
    body = (
        kw.compact_string(group)
        + kw.compact_string("")
        + kw.i32(0)
        + kw.compact_string(None)
        + kw.compact_string(None)
        + kw.i32(30_000)
        + kw.compact_array([kw.compact_string(t) for t in topics])
        + kw.compact_string(None)
        + kw.compact_array([])
        + kw.TAGGED_FIELDS_EMPTY
    )
    return kw.frame(kw.request_header(CONSUMER_GROUP_HEARTBEAT, 0, correlation_id, flexible=True) + body)


def join_and_read_interval(port: int, group: str, topic: str) -> int:
    """The heartbeat interval the coordinator gives a new member of `group`."""
    with kw.Connection(port) as conn:
        r = kw.Reader(conn.request(heartbeat_v0_request, group, [topic]))
        r.skip_tagged_fields()  # response header v1
        r.i32()  # throttle_time_ms
        error_code = r.i16()
        n = r.uvarint()
        message = r.take(n - 1).decode() if n else None
        assert error_code == 0, (error_code, message)
        n = r.uvarint()
        member_id = r.take(n - 1).decode() if n else None
        assert member_id
        assert r.i32() >= 1  # member epoch
        return r.i32()


def test_group_configs_are_described_altered_kept_and_in_effect(broker_factory):
    broker = broker_factory(config=BROKER_CONFIG)
    topic, group = "gcfg", "gcfg-group"
    clients.create_topic(broker.bootstrap, topic, 1)

    # Before any override: the broker's values, as defaults of the group.
    configs = rd_describe(broker.bootstrap, group)
    assert configs["consumer.heartbeat.interval.ms"].value == "6000"
    assert configs["consumer.session.timeout.ms"].value == "45000"
    assert join_and_read_interval(broker.port, group, topic) == 6000

    rd_incremental(broker.bootstrap, group, [ConfigEntry("consumer.heartbeat.interval.ms", "12000", incremental_operation=AlterConfigOpType.SET)])
    configs = kp_describe(broker.bootstrap, group)
    assert configs["consumer.heartbeat.interval.ms"]["value"] == "12000"
    assert configs["consumer.heartbeat.interval.ms"]["config_source"] == "DYNAMIC_GROUP_CONFIG"
    synonyms = [(s["name"], s["value"], s["source"]) for s in configs["consumer.heartbeat.interval.ms"]["synonyms"]]
    assert synonyms == [("consumer.heartbeat.interval.ms", "12000", "DYNAMIC_GROUP_CONFIG"), ("group.consumer.heartbeat.interval.ms", "6000", "STATIC_BROKER_CONFIG")]
    assert configs["consumer.session.timeout.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert join_and_read_interval(broker.port, group, topic) == 12000
    # Another group keeps the broker's interval.
    assert join_and_read_interval(broker.port, "other-group", topic) == 6000

    broker.restart()
    assert rd_describe(broker.bootstrap, group)["consumer.heartbeat.interval.ms"].value == "12000"
    assert join_and_read_interval(broker.port, group, topic) == 12000

    # Deleting the override brings the broker's value back.
    rd_incremental(broker.bootstrap, group, [ConfigEntry("consumer.heartbeat.interval.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    assert rd_describe(broker.bootstrap, group)["consumer.heartbeat.interval.ms"].value == "6000"
    assert join_and_read_interval(broker.port, group, topic) == 6000


@pytest.mark.parametrize(
    "name,value,why",
    [
        ("consumer.heartbeat.interval.ms", "20001", "group.consumer.max.heartbeat.interval.ms"),
        ("consumer.heartbeat.interval.ms", "4999", "group.consumer.min.heartbeat.interval.ms"),
        ("consumer.session.timeout.ms", "60001", "group.consumer.max.session.timeout.ms"),
        ("consumer.session.timeout.ms", "soon", "Invalid value"),
        ("share.session.timeout.ms", "45000", "Unknown group config name"),
    ],
)
def test_invalid_group_configs_are_refused(broker_factory, name, value, why):
    broker = broker_factory(config=BROKER_CONFIG)
    with pytest.raises(KafkaException) as exc:
        rd_incremental(broker.bootstrap, "refused", [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    assert exc.value.args[0].code() == INVALID_CONFIG, exc.value
    assert why in exc.value.args[0].str()
    assert "consumer.heartbeat.interval.ms" in rd_describe(broker.bootstrap, "refused")
    assert rd_describe(broker.bootstrap, "refused")["consumer.session.timeout.ms"].value == "45000"


def test_group_session_timeout_fences_a_silent_member(broker_factory):
    """A member that stops heartbeating is removed after its group's `consumer.session.timeout.ms`,
    not the broker's: the broker's 45 s outlasts the deadline the test waits for."""
    broker = broker_factory(config={"group.consumer.min.session.timeout.ms": "1000", "group.consumer.min.heartbeat.interval.ms": "500"})
    topic, group = "gcfg-silent", "gcfg-silent-group"
    clients.create_topic(broker.bootstrap, topic, 1)
    rd_incremental(
        broker.bootstrap,
        group,
        [
            ConfigEntry("consumer.session.timeout.ms", "1500", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("consumer.heartbeat.interval.ms", "500", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    assert join_and_read_interval(broker.port, group, topic) == 500
    admin = AdminClient(clients.rdkafka(broker.bootstrap))

    def members() -> int:
        [future] = admin.describe_consumer_groups([group], request_timeout=30).values()
        return len(future.result(timeout=60).members)

    # 30 s is below the broker's 45 s: only the group's 1.5 s can have removed the member.
    clients.wait_until(lambda: members() == 0, "the silent member to be removed after its group's session timeout", timeout_s=30)



def test_legacy_alter_configs_replaces_a_groups_configs(broker_factory):
    """AlterConfigs (not incremental) on a GROUP resource, as Kafka allows it. (kafka-python
    resends the group's other overrides with it, so what replacing drops is not seen here.)"""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType

    broker = broker_factory(config=BROKER_CONFIG)
    group = "gcfg-legacy"
    rd_incremental(broker.bootstrap, group, [ConfigEntry("consumer.heartbeat.interval.ms", "12000", incremental_operation=AlterConfigOpType.SET)])
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        response = admin.alter_configs([KpResource(ConfigResourceType.GROUP, group, configs={"consumer.session.timeout.ms": "50000"})], incremental=False)
    finally:
        admin.close()
    assert response == {"group": {group: "OK"}}, response
    configs = kp_describe(broker.bootstrap, group)
    assert (configs["consumer.session.timeout.ms"]["value"], configs["consumer.session.timeout.ms"]["config_source"]) == ("50000", "DYNAMIC_GROUP_CONFIG")


def test_group_configs_need_describe_and_alter_configs_on_the_group(broker_factory):
    """DESCRIBE_CONFIGS and ALTER_CONFIGS are checked on the GROUP resource, as Kafka does:
    READ on the group is not enough (GROUP_AUTHORIZATION_FAILED), a grant on the group is."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType

    from test_authorization import config as secured_config, sasl

    broker = broker_factory(config=secured_config(), extra_listeners=["SASL_PLAINTEXT"])
    port = broker.extra_ports["SASL_PLAINTEXT"]
    group = "g-alice"
    admin = AdminClient(sasl(port, "admin"))
    alice = AdminClient(sasl(port, "alice"))

    def grant(operation):
        binding = AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, "User:alice", "*", operation, AclPermissionType.ALLOW)
        for future in admin.create_acls([binding]).values():
            assert future.result(30) is None

    def describe():
        [future] = alice.describe_configs([ConfigResource(ResourceType.GROUP, group)]).values()
        return future.result(timeout=60)

    def alter():
        entry = ConfigEntry("consumer.session.timeout.ms", "50000", incremental_operation=AlterConfigOpType.SET)
        [future] = alice.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])]).values()
        return future.result(timeout=60)

    grant(AclOperation.READ)
    for call in (describe, alter):
        with pytest.raises(KafkaException) as exc:
            call()
        assert exc.value.args[0].code() == GROUP_AUTHORIZATION_FAILED, exc.value
    grant(AclOperation.ALTER_CONFIGS)
    alter()
    grant(AclOperation.DESCRIBE_CONFIGS)
    assert describe()["consumer.session.timeout.ms"].value == "50000"


LIST_CONFIG_RESOURCES = 74
UNSUPPORTED_VERSION = 35
TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP = 2, 4, 8, 16, 32


def list_config_resources(port: int, version: int, types: list[int]) -> tuple[int, list[tuple[str, int]]]:
    """ListConfigResources (KIP-1142), by hand: (error code, [(name, type)]); v0 has no types in
    its request and none in its answer (every resource it lists is a client-metrics one)."""
    with kw.Connection(port) as conn:
        return list_config_resources_on(conn, version, types)


def list_config_resources_on(conn: kw.Connection, version: int, types: list[int]) -> tuple[int, list[tuple[str, int]]]:
    def build(cid: int) -> bytes:
        body = (kw.compact_array([kw.i8(t) for t in types]) if version >= 1 else b"") + kw.TAGGED_FIELDS_EMPTY
        return kw.frame(kw.request_header(LIST_CONFIG_RESOURCES, version, cid, flexible=True) + body)

    r = kw.Reader(conn.request(build))
    r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle
    error = r.i16()
    resources = []
    for _ in range(r.uvarint() - 1):
        name = r.compact_string()
        resource_type = r.i8() if version >= 1 else CLIENT_METRICS
        r.skip_tagged_fields()
        resources.append((name, resource_type))
    return error, resources


def test_list_config_resources_names_groups_with_configs_brokers_and_topics(broker_factory):
    """What Kafka 4.1's `kafka-configs.sh --entity-type groups --describe` asks first: every
    resource that has configs, by type, as Kafka lists them (groups only once a config is set)."""
    broker = broker_factory(config=BROKER_CONFIG)
    clients.create_topic(broker.bootstrap, "lcr-topic", 1)
    error, resources = list_config_resources(broker.port, 1, [])
    assert error == 0
    assert ("lcr-topic", TOPIC) in resources and ("1", BROKER) in resources and ("1", BROKER_LOGGER) in resources
    assert not [name for name, t in resources if t == GROUP], "no group has configs yet"

    rd_incremental(broker.bootstrap, "lcr-group", [ConfigEntry("consumer.session.timeout.ms", "50000", incremental_operation=AlterConfigOpType.SET)])
    assert list_config_resources(broker.port, 1, [GROUP]) == (0, [("lcr-group", GROUP)])
    error, resources = list_config_resources(broker.port, 1, [TOPIC, GROUP])
    assert error == 0 and {t for _, t in resources} == {TOPIC, GROUP} and ("lcr-topic", TOPIC) in resources
    # v0 is KIP-714's ListClientMetricsResources: shardlog has no client-metrics subscriptions.
    assert list_config_resources(broker.port, 0, []) == (0, [])
    # A type the version does not list fails the request, as Kafka answers it.
    assert list_config_resources(broker.port, 1, [GROUP, 99]) == (UNSUPPORTED_VERSION, [])


def test_list_config_resources_needs_describe_configs_on_the_cluster(broker_factory):
    """As Kafka: a principal without DESCRIBE_CONFIGS on the cluster gets
    CLUSTER_AUTHORIZATION_FAILED and no resources; once granted, the list."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType

    from test_authorization import CLUSTER_AUTHORIZATION_FAILED, config as secured_config, login, sasl

    broker = broker_factory(config=secured_config(), extra_listeners=["SASL_PLAINTEXT"])
    port = broker.extra_ports["SASL_PLAINTEXT"]
    admin = AdminClient(sasl(port, "admin"))
    for future in admin.create_topics([NewTopic("lcr-secured", num_partitions=1, replication_factor=1)], operation_timeout=30).values():
        assert future.result(60) is None
    with login(port, "alice") as alice:
        assert list_config_resources_on(alice, 1, [TOPIC]) == (CLUSTER_AUTHORIZATION_FAILED, [])
    with login(port, "admin") as admin_conn:
        assert list_config_resources_on(admin_conn, 1, [TOPIC]) == (0, [("lcr-secured", TOPIC)]), "a super user lists"
    grant = AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.DESCRIBE_CONFIGS, AclPermissionType.ALLOW)
    for future in admin.create_acls([grant]).values():
        assert future.result(30) is None
    with login(port, "alice") as alice:
        assert list_config_resources_on(alice, 1, [TOPIC]) == (0, [("lcr-secured", TOPIC)])
