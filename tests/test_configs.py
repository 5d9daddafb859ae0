"""Topic and broker configs: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs through
kafka-python's KafkaAdminClient and librdkafka's AdminClient, with Kafka's names, defaults,
sources and errors; changes persist across a restart and take effect without one."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, ResourceType

import clients

INVALID_CONFIG = 40
INVALID_REQUEST = 42
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10


def kafka_python_admin(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)


def kp_describe(bootstrap: str, resource_type: str, name: str, include_synonyms: bool = False) -> dict:
    """{config name: {value, config_source, read_only, synonyms...}} for every config."""
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType

    admin = kafka_python_admin(bootstrap)
    try:
        rtype = ConfigResourceType[resource_type.upper()]
        described = admin.describe_configs([KpResource(rtype, name)], include_synonyms=include_synonyms, config_filter="all")
    finally:
        admin.close()
    return described[resource_type.lower()][name]


def rd_describe(bootstrap: str, name: str, restype=ResourceType.TOPIC) -> dict:
    admin = AdminClient(clients.rdkafka(bootstrap))
    [future] = admin.describe_configs([ConfigResource(restype, name)]).values()
    return future.result(timeout=60)


def rd_incremental(bootstrap: str, name: str, entries: list[ConfigEntry], restype=ResourceType.TOPIC) -> None:
    admin = AdminClient(clients.rdkafka(bootstrap))
    [future] = admin.incremental_alter_configs([ConfigResource(restype, name, incremental_configs=entries)]).values()
    future.result(timeout=60)


def create(bootstrap: str, topic: str, config: dict[str, str] | None = None, partitions: int = 1) -> None:
    admin = AdminClient(clients.rdkafka(bootstrap))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})])[topic].result(timeout=60)
    clients.wait_for_partitions(bootstrap, topic, partitions)


def test_describe_topic_configs_reports_values_and_sources(broker_factory):
    broker = broker_factory(config={"log.retention.hours": "24"})
    create(broker.bootstrap, "described", {"retention.bytes": "1048576", "cleanup.policy": "compact,delete"})

    configs = kp_describe(broker.bootstrap, "topic", "described", include_synonyms=True)
    # A topic override, a static broker default, and Kafka's defaults, each with its source.
    assert configs["retention.bytes"]["value"] == "1048576"
    assert configs["retention.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"]["value"] == "compact,delete"
    assert configs["retention.ms"]["value"] == str(24 * 3600 * 1000)
    assert configs["retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG"
    synonyms = [(s["name"], s["value"], s["source"]) for s in configs["retention.ms"]["synonyms"]]
    assert synonyms == [("log.retention.hours", "24", "STATIC_BROKER_CONFIG"), ("log.retention.hours", "168", "DEFAULT_CONFIG")]
    assert configs["segment.bytes"]["value"] == "1073741824"
    assert configs["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"
    for name, value in [
        ("segment.ms", "604800000"),
        ("min.compaction.lag.ms", "0"),
        ("max.compaction.lag.ms", "9223372036854775807"),
        ("delete.retention.ms", "86400000"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("max.message.bytes", "1048588"),
        ("message.timestamp.type", "CreateTime"),
        ("compression.type", "producer"),
        ("min.insync.replicas", "1"),
    ]:
        assert configs[name]["value"] == value, (name, configs[name])
        assert configs[name]["config_source"] == "DEFAULT_CONFIG", (name, configs[name])

    # librdkafka reads the same values and sources.
    rd = rd_describe(broker.bootstrap, "described")
    assert rd["retention.bytes"].value == "1048576"
    assert rd["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert rd["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value


def test_alter_configs_kafka_python_persists_across_restart(broker):
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType

    create(broker.bootstrap, "altered", {"retention.bytes": "5000000"})
    admin = kafka_python_admin(broker.bootstrap)
    try:
        # kafka-python's AlterConfigs path re-sends the overrides it did not change (AlterConfigs
        # replaces the whole set), so retention.bytes stays.
        result = admin.alter_configs(
            [KpResource(ConfigResourceType.TOPIC, "altered", configs={"retention.ms": "120000", "cleanup.policy": "compact"})], incremental=False
        )
        assert result == {"topic": {"altered": "OK"}}, result
        # IncrementalAlterConfigs edits single keys.
        result = admin.alter_configs([KpResource(ConfigResourceType.TOPIC, "altered", configs={"segment.ms": "3600000"})], incremental=True)
        assert result == {"topic": {"altered": "OK"}}, result
    finally:
        admin.close()

    def modified() -> dict[str, str]:
        return {k: v["value"] for k, v in kp_describe(broker.bootstrap, "topic", "altered").items() if v["config_source"] == "DYNAMIC_TOPIC_CONFIG"}

    expect = {"retention.bytes": "5000000", "retention.ms": "120000", "cleanup.policy": "compact", "segment.ms": "3600000"}
    assert modified() == expect
    broker.restart()
    assert modified() == expect

    # librdkafka's (legacy) alter_configs sends only what it is given: every other override
    # goes back to its default, as in Kafka.
    rd_admin = AdminClient(clients.rdkafka(broker.bootstrap))
    [future] = rd_admin.alter_configs([ConfigResource(ResourceType.TOPIC, "altered", set_config={"retention.ms": "240000"})]).values()
    future.result(timeout=60)
    assert modified() == {"retention.ms": "240000"}
    assert rd_describe(broker.bootstrap, "altered")["retention.bytes"].value == "-1"
    broker.restart()
    assert modified() == {"retention.ms": "240000"}


def test_incremental_alter_configs_confluent(broker):
    create(broker.bootstrap, "incremental")
    rd_incremental(
        broker.bootstrap,
        "incremental",
        [
            ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
            ConfigEntry("min.cleanable.dirty.ratio", "0.25", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    got = rd_describe(broker.bootstrap, "incremental")
    assert got["retention.ms"].value == "86400000"
    assert got["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert got["cleanup.policy"].value == "delete,compact"
    assert got["min.cleanable.dirty.ratio"].value == "0.25"

    rd_incremental(
        broker.bootstrap,
        "incremental",
        [
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
        ],
    )
    got = rd_describe(broker.bootstrap, "incremental")
    assert got["retention.ms"].value == "604800000"
    assert got["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert got["cleanup.policy"].value == "compact"


def test_invalid_values_and_unknown_topics_are_refused(broker):
    create(broker.bootstrap, "strict")
    for name, value in [("retention.ms", "-5"), ("segment.bytes", "ten"), ("cleanup.policy", "shred"), ("min.cleanable.dirty.ratio", "2"), ("no.such.config", "1")]:
        with pytest.raises(KafkaException) as exc:
            rd_incremental(broker.bootstrap, "strict", [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
        error = exc.value.args[0]
        assert error.code() == INVALID_CONFIG, (name, error)
        assert name in error.str(), (name, error.str())
    # Nothing was changed by the refused requests.
    assert rd_describe(broker.bootstrap, "strict")["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    with pytest.raises(KafkaException) as exc:
        rd_incremental(broker.bootstrap, "missing", [ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    assert exc.value.args[0].code() == UNKNOWN_TOPIC_OR_PARTITION
    with pytest.raises(KafkaException) as exc:
        rd_describe(broker.bootstrap, "missing")
    assert exc.value.args[0].code() == UNKNOWN_TOPIC_OR_PARTITION

    # CreateTopics validates with the same rules.
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    future = admin.create_topics([NewTopic("bad-create", num_partitions=1, replication_factor=1, config={"retention.ms": "-7"})])["bad-create"]
    with pytest.raises(KafkaException) as exc:
        future.result(timeout=60)
    assert exc.value.args[0].code() == INVALID_CONFIG
    assert "retention.ms" in exc.value.args[0].str()


def test_max_message_bytes_takes_effect_without_restart(broker):
    create(broker.bootstrap, "limited")
    producer = clients.confluent_producer(broker.bootstrap)
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    producer.produce("limited", value=b"x" * 4000, on_delivery=report)
    assert producer.flush(60) == 0 and errors == []

    rd_incremental(broker.bootstrap, "limited", [ConfigEntry("max.message.bytes", "1000", incremental_operation=AlterConfigOpType.SET)])
    producer.produce("limited", value=b"y" * 4000, on_delivery=report)
    assert producer.flush(60) == 0
    # librdkafka reports the broker's MESSAGE_TOO_LARGE with the broker's code.
    assert [e.code() for e in errors] == [MESSAGE_TOO_LARGE], errors


def test_broker_configs_describe_and_dynamic_alter(broker_factory):
    broker = broker_factory(config={"log.retention.hours": "48"})
    configs = kp_describe(broker.bootstrap, "broker", "1", include_synonyms=True)
    assert configs["log.retention.hours"]["value"] == "48"
    assert configs["log.retention.hours"]["config_source"] == "STATIC_BROKER_CONFIG"
    assert configs["log.retention.hours"]["read_only"] is True
    assert configs["log.retention.ms"]["read_only"] is False
    assert configs["log.segment.bytes"]["value"] == "1073741824"
    assert configs["log.segment.bytes"]["config_source"] == "DEFAULT_CONFIG"

    # A dynamic broker config: every topic without its own override follows it.
    create(broker.bootstrap, "follows-broker")
    rd_incremental(broker.bootstrap, "1", [ConfigEntry("log.retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)], ResourceType.BROKER)
    topic = kp_describe(broker.bootstrap, "topic", "follows-broker", include_synonyms=True)
    assert topic["retention.ms"]["value"] == "3600000"
    assert topic["retention.ms"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
    assert [s["source"] for s in topic["retention.ms"]["synonyms"]] == ["DYNAMIC_BROKER_CONFIG", "STATIC_BROKER_CONFIG", "DEFAULT_CONFIG"]

    broker.restart()
    assert kp_describe(broker.bootstrap, "broker", "1")["log.retention.ms"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
    assert kp_describe(broker.bootstrap, "topic", "follows-broker")["retention.ms"]["value"] == "3600000"

    # Read-only broker configs need a restart: INVALID_REQUEST, as Kafka answers.
    for name in ["log.retention.hours", "log.dirs"]:
        with pytest.raises(KafkaException) as exc:
            rd_incremental(broker.bootstrap, "1", [ConfigEntry(name, "1", incremental_operation=AlterConfigOpType.SET)], ResourceType.BROKER)
        assert exc.value.args[0].code() == INVALID_REQUEST, (name, exc.value)
        assert "dynamically" in exc.value.args[0].str()
    with pytest.raises(KafkaException) as exc:
        rd_incremental(broker.bootstrap, "1", [ConfigEntry("log.segment.bytes", "3", incremental_operation=AlterConfigOpType.SET)], ResourceType.BROKER)
    assert exc.value.args[0].code() == INVALID_CONFIG


def test_create_topics_answers_with_the_topics_configs(broker):
    from kafka.admin import NewTopic as KpNewTopic

    admin = kafka_python_admin(broker.bootstrap)
    try:
        response = admin.create_topics([KpNewTopic("with-configs", 1, 1, topic_configs={"retention.ms": "5000"})])
    finally:
        admin.close()
    [topic] = response["topics"]
    assert topic["error_code"] == 0, topic
    assert topic["configs"]["retention.ms"]["value"] == "5000"
    assert topic["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert topic["configs"]["segment.bytes"]["config_source"] == "DEFAULT_CONFIG"
