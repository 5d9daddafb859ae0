"""What Kafka 4.x's tools found answered differently from Kafka (issue 16), checked with real
clients: ListOffsets MAX_TIMESTAMP. (The index files' byte layout, which Kafka's
kafka-dump-log.sh reads, is checked by the storage unit tests, as no Kafka distribution is at
hand here.)
"""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

import clients

TOPIC = "max-ts"


def list_offset(bootstrap: str, spec: OffsetSpec) -> tuple[int, int]:
    admin = AdminClient(clients.rdkafka(bootstrap))
    tp = TopicPartition(TOPIC, 0)
    info = admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(30)
    return info.offset, info.timestamp


def produce_with_timestamps(bootstrap: str, timestamps: list[int], **overrides) -> None:
    producer = clients.confluent_producer(bootstrap, **{"max.in.flight.requests.per.connection": 1, **overrides})
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
