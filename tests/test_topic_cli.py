"""`shardlog topic create|list|describe|alter-config|delete` against a live broker, checked
against what librdkafka's AdminClient sees. The output is Kafka's (kafka-topics.sh,
kafka-configs.sh); errors go to stderr with a non-zero exit."""

from __future__ import annotations

import subprocess

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

import clients
from conftest import broker_binary


def shardlog_topic(*args: str, bootstrap: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(broker_binary()), "topic", *args, "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=60)


def describe_configs(bootstrap: str, topic: str) -> dict:
    admin = AdminClient(clients.rdkafka(bootstrap))
    [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return future.result(timeout=60)


def test_topic_lifecycle_through_the_cli(broker):
    r = shardlog_topic("create", "cli-orders", "--partitions", "3", "--config", "retention.ms=3600000", bootstrap=broker.bootstrap)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Created topic cli-orders.\n"
    clients.wait_for_partitions(broker.bootstrap, "cli-orders", 3)
    assert describe_configs(broker.bootstrap, "cli-orders")["retention.ms"].value == "3600000"

    r = shardlog_topic("list", bootstrap=broker.bootstrap)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["cli-orders"]
    # As in Kafka, an internal topic exists once its coordinator has been looked for.
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    [group] = admin.describe_consumer_groups(["cli-group"]).values()
    group.result(timeout=60)
    r = shardlog_topic("list", bootstrap=broker.bootstrap)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["__consumer_offsets", "cli-orders"]
    r = shardlog_topic("list", "--exclude-internal", bootstrap=broker.bootstrap)
    assert r.stdout.splitlines() == ["cli-orders"]

    r = shardlog_topic("describe", "cli-orders", bootstrap=broker.bootstrap)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    summary = dict(field.split(": ", 1) for field in lines[0].split("\t"))
    assert summary["Topic"] == "cli-orders"
    assert summary["PartitionCount"] == "3"
    assert summary["ReplicationFactor"] == "1"
    assert summary["Configs"] == "retention.ms=3600000"
    assert len(summary["TopicId"]) == 22
    partitions = [dict(field.split(": ", 1) for field in line.strip().split("\t")) for line in lines[1:]]
    assert [p["Partition"] for p in partitions] == ["0", "1", "2"]
    assert all(p["Leader"] == "1" and p["Replicas"] == "1" and p["Isr"] == "1" for p in partitions), partitions

    r = shardlog_topic(
        "alter-config", "cli-orders", "--add-config", "cleanup.policy=[compact,delete],segment.bytes=1048576", "--delete-config", "retention.ms",
        bootstrap=broker.bootstrap,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Completed updating config for topic cli-orders.\n"
    configs = describe_configs(broker.bootstrap, "cli-orders")
    assert configs["cleanup.policy"].value == "compact,delete"
    assert configs["segment.bytes"].value == "1048576"
    assert configs["retention.ms"].value == "604800000"

    r = shardlog_topic("describe", "cli-orders", "--configs", bootstrap=broker.bootstrap)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "All configs for topic cli-orders are:"
    assert "  segment.bytes=1048576 sensitive=false synonyms={} source=DYNAMIC_TOPIC_CONFIG" in r.stdout.splitlines()
    assert "  retention.ms=604800000 sensitive=false synonyms={} source=DEFAULT_CONFIG" in r.stdout.splitlines()

    r = shardlog_topic("delete", "cli-orders", bootstrap=broker.bootstrap)
    assert r.returncode == 0, r.stderr
    assert "cli-orders" not in shardlog_topic("list", bootstrap=broker.bootstrap).stdout.splitlines()


def test_cli_errors_name_the_kafka_error(broker):
    r = shardlog_topic("alter-config", "nope", "--add-config", "retention.ms=1", bootstrap=broker.bootstrap)
    assert r.returncode == 1
    assert "UNKNOWN_TOPIC_OR_PARTITION (3)" in r.stderr, r.stderr

    assert shardlog_topic("create", "strict", bootstrap=broker.bootstrap).returncode == 0
    r = shardlog_topic("alter-config", "strict", "--add-config", "retention.ms=-9", bootstrap=broker.bootstrap)
    assert r.returncode == 1
    assert "INVALID_CONFIG (40)" in r.stderr and "retention.ms" in r.stderr, r.stderr

    r = shardlog_topic("create", "strict", bootstrap=broker.bootstrap)
    assert r.returncode == 1
    assert "TOPIC_ALREADY_EXISTS (36)" in r.stderr, r.stderr

    r = shardlog_topic("describe", "nope", bootstrap=broker.bootstrap)
    assert r.returncode == 1
    assert "nope" in r.stderr, r.stderr

    r = shardlog_topic("delete", "nope", bootstrap=broker.bootstrap)
    assert r.returncode == 1
    assert "UNKNOWN_TOPIC_OR_PARTITION (3)" in r.stderr, r.stderr
