"""What Kafka 4.x's tools found answered differently from Kafka (issue 16), checked with real
clients: ListOffsets MAX_TIMESTAMP, the `flush.ms` topic config's broker synonym, and config
names Kafka accepts. (KIP-684's ssl.client.auth is in test_security.py, ACLs without an authorizer in
test_acls.py; the index files' byte layout, which Kafka's kafka-dump-log.sh reads, is checked
by the storage unit tests, as no Kafka distribution is at hand here.)
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, OffsetSpec,
                                   ResourceType)

import clients

TOPIC = "max-ts"


def list_offset(bootstrap: str, spec: OffsetSpec) -> tuple[int, int]:
    admin = AdminClient(clients.rdkafka(bootstrap))
    tp = TopicPartition(TOPIC, 0)
    info = admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(30)
    return info.offset, info.timestamp


def produce_with_timestamps(bootstrap: str, timestamps: list[int], **overrides) -> None:
    producer = clients.confluent_producer(bootstrap, **{"max.in.flight.requests.per.connection": 1, **overrides})
    clients.warm_producer(producer, TOPIC)
    errors = []
    for i, ts in enumerate(timestamps):
        producer.produce(TOPIC, value=b"v%04d" % i + b"x" * 200, timestamp=ts, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(60) == 0 and not errors, errors


def test_list_offsets_max_timestamp_names_the_first_record_with_the_largest_timestamp(broker):
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    # Small segments, so that the records spread over several of them and sealed segments'
    # time indexes are what answers after a restart.
    admin.create_topics([NewTopic(TOPIC, 1, 1, config={"segment.bytes": "2048"})])[TOPIC].result(60)
    clients.wait_for_partitions(broker.bootstrap, TOPIC, 1)
    assert list_offset(broker.bootstrap, OffsetSpec.max_timestamp()) == (-1, -1), "an empty partition has no max timestamp"

    base = int(time.time() * 1000) - 3_600_000
    # One lz4 batch whose largest timestamp is in its middle (the broker decompresses it to find
    # the record), then batches with smaller ones, then a later batch with the same maximum:
    # Kafka names the first record that has it.
    first = [base + d for d in (5, 1, 90, 7, 90, 3)]
    produce_with_timestamps(broker.bootstrap, first, **{"compression.type": "lz4", "linger.ms": 50})
    later = [base + d for d in range(10, 40)] + [base + 90, base + 20]
    produce_with_timestamps(broker.bootstrap, later)
    timestamps = first + later
    expected = (timestamps.index(max(timestamps)), max(timestamps))
    assert expected == (2, base + 90)

    assert list_offset(broker.bootstrap, OffsetSpec.max_timestamp()) == expected
    assert list_offset(broker.bootstrap, OffsetSpec.latest())[0] == len(timestamps)
    assert list_offset(broker.bootstrap, OffsetSpec.earliest())[0] == 0
    # From the files: after a clean restart (sealed and active segments' indexes), and after
    # kill -9 (the active segment scanned).
    broker.restart()
    assert list_offset(broker.bootstrap, OffsetSpec.max_timestamp()) == expected
    broker.kill9()
    broker.start()
    assert list_offset(broker.bootstrap, OffsetSpec.max_timestamp()) == expected
    # A new maximum moves the answer.
    produce_with_timestamps(broker.bootstrap, [base + 100])
    assert list_offset(broker.bootstrap, OffsetSpec.max_timestamp()) == (len(timestamps), base + 100)


def test_list_offsets_max_timestamp_read_committed_waits_for_the_transaction(broker):
    """As Kafka: a read_committed MAX_TIMESTAMP answer must be below the last stable offset, so
    a record in an open transaction is not named until the transaction commits."""
    from confluent_kafka import IsolationLevel, Producer
    clients.create_topic(broker.bootstrap, TOPIC, 1)
    # Ahead of the broker's clock: the commit marker, stamped with it, counts too (as in Kafka)
    # and must not be the largest.
    base = int(time.time() * 1000) + 600_000
    produce_with_timestamps(broker.bootstrap, [base])
    producer = Producer(clients.rdkafka(broker.bootstrap, **{"transactional.id": "max-ts-txn"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(TOPIC, value=b"in a transaction", timestamp=base + 10)
    assert producer.flush(30) == 0

    def max_timestamp(isolation: IsolationLevel) -> tuple[int, int]:
        admin = AdminClient(clients.rdkafka(broker.bootstrap))
        tp = TopicPartition(TOPIC, 0)
        info = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, isolation_level=isolation, request_timeout=30)[tp].result(30)
        return info.offset, info.timestamp

    assert max_timestamp(IsolationLevel.READ_UNCOMMITTED) == (1, base + 10)
    assert max_timestamp(IsolationLevel.READ_COMMITTED) == (-1, -1)
    producer.commit_transaction(30)
    assert max_timestamp(IsolationLevel.READ_COMMITTED) == (1, base + 10)


def test_list_offsets_v8_to_v10_earliest_local_and_latest_tiered(broker):
    """ListOffsets v8 (KIP-405) and v9 (KIP-1005), as Kafka answers them without tiered storage:
    EARLIEST_LOCAL (-4) is the log start offset, which DeleteRecords moves, and LATEST_TIERED
    (-5) is offset -1. v10 only adds a timeout for remote lookups."""
    from kafka.protocol.consumer import ListOffsetsRequest, ListOffsetsResponse

    from test_api_versions import Client

    clients.create_topic(broker.bootstrap, TOPIC, 1)
    produce_with_timestamps(broker.bootstrap, [1_000 + i for i in range(20)])
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    [deleted] = admin.delete_records([TopicPartition(TOPIC, 0, 7)]).values()
    assert deleted.result(30).low_watermark == 7

    c = Client(broker.port)
    try:
        for version in (8, 9, 10):
            R = ListOffsetsRequest[version]
            fields = {"timeout_ms": 5_000} if version >= 10 else {}
            parts = [R.ListOffsetsTopic.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=ts) for ts in (-2, -4, -5, -1)]
            r = c.call(ListOffsetsRequest, ListOffsetsResponse, version, replica_id=-1, isolation_level=0, topics=[R.ListOffsetsTopic(name=TOPIC, partitions=parts)], **fields)
            got = [(p.error_code, p.offset, p.timestamp) for t in r.topics for p in t.partitions]
            assert got == [(0, 7, -1), (0, 7, -1), (0, -1, -1), (0, 20, -1)], f"v{version}: earliest, earliest local, latest tiered, latest"
    finally:
        c.close()


def test_flush_ms_takes_log_flush_interval_ms_as_its_broker_synonym(broker_factory):
    broker = broker_factory(config={"log.flush.interval.ms": 3})
    clients.create_topic(broker.bootstrap, "flushy", 1)
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    resource = ConfigResource(ResourceType.TOPIC, "flushy")
    configs = admin.describe_configs([resource], request_timeout=30)[resource].result(30)
    flush = configs["flush.ms"]
    assert (flush.value, ConfigSource(flush.source)) == ("3", ConfigSource.STATIC_BROKER_CONFIG)
    assert [(s.name, s.value) for s in flush.synonyms.values()][0] == ("log.flush.interval.ms", "3")


def test_every_kafka_topic_config_is_accepted_and_unknown_ones_are_refused(broker):
    """Kafka 4's topic configs that do nothing here (file.delete.delay.ms, librdkafka's test
    0077) are stored and described, saying so; a name Kafka does not know is INVALID_CONFIG."""
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    admin.create_topics([NewTopic("kafka-keys", 1, 1, config={"file.delete.delay.ms": "5000", "preallocate": "true"})])["kafka-keys"].result(60)
    resource = ConfigResource(ResourceType.TOPIC, "kafka-keys")
    configs = admin.describe_configs([resource], request_timeout=30)[resource].result(30)
    assert (configs["file.delete.delay.ms"].value, ConfigSource(configs["file.delete.delay.ms"].source)) == ("5000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert configs["preallocate"].value == "true"
    assert configs["segment.jitter.ms"].value == "0"
    unknown = ConfigResource(ResourceType.TOPIC, "kafka-keys", incremental_configs=[ConfigEntry("file.delete.delay.mss", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([unknown])[unknown].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG and "file.delete.delay.mss" in refused.value.args[0].str()


def test_kafkas_dynamic_broker_configs_are_stored_and_unknown_ones_refused(broker):
    """`sasl.kerberos.min.time.before.relogin` and the like, which Kafka changes at run time,
    are stored and described (DescribeConfigs' documentation says they have no effect here: the
    unit test in topic_config.rs checks it, as neither client here asks for documentation);
    unknown names are INVALID_CONFIG naming the key."""
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    change = [ConfigEntry("sasl.kerberos.min.time.before.relogin", "120000", incremental_operation=AlterConfigOpType.SET)]
    resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=change)
    admin.incremental_alter_configs([resource])[resource].result(30)
    described = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")], request_timeout=30)
    configs = list(described.values())[0].result(30)
    relogin = configs["sasl.kerberos.min.time.before.relogin"]
    assert (relogin.value, ConfigSource(relogin.source)) == ("120000", ConfigSource.DYNAMIC_BROKER_CONFIG)

    # kafka-python sees it too, and it survives a restart (it is in the cluster metadata).
    broker.restart()
    from kafka.admin import ConfigResource as KpConfigResource, ConfigResourceType, KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        described = kp.describe_configs([KpConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")
    finally:
        kp.close()
    entry = described["broker"]["1"]["sasl.kerberos.min.time.before.relogin"]
    assert (entry["value"], entry["config_source"]) == ("120000", "DYNAMIC_BROKER_CONFIG"), entry

    bad = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[ConfigEntry("sasl.kerberos.min.time.before.relogon", "1", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([bad])[bad].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG and "relogon" in refused.value.args[0].str()
