"""Observability: /metrics moves by the right amounts while real clients produce and consume,
/v1/health and /v1/status answer, the log level changes at run time, and `shardlog status`
prints the broker's state."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.request

import confluent_kafka

import clients
import kafkawire
from conftest import broker_binary

PARTITIONS = 3
RECORDS = 3_000
VALUE_BYTES = 200


def http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric: {sorted label pairs: value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
        out[labels] = float(m.group(3))
    return out


def topic_sum(text: str, name: str, topic: str) -> float:
    return sum(v for labels, v in samples(text, name).items() if ("topic", topic) in labels)


def test_metrics_count_what_clients_did(broker):
    topic = "metrics-topic"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    status, before = http(broker.admin_url + "/metrics")
    assert status == 200
    assert "# TYPE shardlog_requests_total counter" in before
    produce_requests_before = samples(before, "shardlog_requests_total").get((("api", "Produce"),), 0)

    producer = clients.confluent_producer(broker.bootstrap, **{"compression.type": "none", "acks": "all"})
    acked = []
    for i in range(RECORDS):
        producer.produce(topic, key=str(i).encode(), value=bytes([i % 251]) * VALUE_BYTES, on_delivery=lambda err, msg: acked.append(err is None))
    assert producer.flush(60) == 0
    assert len(acked) == RECORDS and all(acked)

    consumed = clients.kafka_python_consume(broker.bootstrap, topic, PARTITIONS)
    assert len(consumed) == RECORDS

    # A group commits offsets that leave a known lag: everything but 100 records of partition 0.
    ends = clients.confluent_watermarks(broker.bootstrap, topic, PARTITIONS)
    consumer = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "metrics-group", "enable.auto.commit": False}))
    commits = [confluent_kafka.TopicPartition(topic, p, ends[p][1] - (100 if p == 0 else 0)) for p in range(PARTITIONS)]
    consumer.commit(offsets=commits, asynchronous=False)
    consumer.close()

    status, after = http(broker.admin_url + "/metrics")
    assert status == 200
    # Exactly the records produced went in; at least as many went out (whole batches are sent).
    assert topic_sum(after, "shardlog_partition_records_in_total", topic) == RECORDS
    assert topic_sum(after, "shardlog_partition_records_out_total", topic) >= RECORDS
    assert topic_sum(after, "shardlog_partition_bytes_in_total", topic) >= RECORDS * VALUE_BYTES
    assert topic_sum(after, "shardlog_partition_bytes_out_total", topic) >= RECORDS * VALUE_BYTES
    assert topic_sum(after, "shardlog_partition_log_end_offset", topic) == RECORDS
    assert topic_sum(after, "shardlog_partition_high_watermark", topic) == RECORDS
    assert topic_sum(after, "shardlog_partition_log_start_offset", topic) == 0
    produce_requests = samples(after, "shardlog_requests_total")[(("api", "Produce"),)]
    assert produce_requests > produce_requests_before
    assert samples(after, "shardlog_request_latency_seconds_count")[(("api", "Produce"),)] == produce_requests
    # acks=all means at least one fdatasync, each counted with its group-commit size.
    fsyncs = sum(samples(after, "shardlog_fsync_latency_seconds_count").values())
    assert fsyncs >= 1
    assert sum(samples(after, "shardlog_group_commit_bytes_count").values()) == fsyncs
    lag = samples(after, "shardlog_group_lag")
    assert lag[(("group", "metrics-group"), ("partition", "0"), ("topic", topic))] == 100
    assert lag[(("group", "metrics-group"), ("partition", "1"), ("topic", topic))] == 0
    assert sum(samples(after, "shardlog_connections_accepted_total").values()) >= 3
    assert len(samples(after, "shardlog_shard_cpu_seconds_total")) >= 2
    broker.assert_alive()


def test_health_status_and_log_level(broker):
    topic = "status-topic"
    clients.create_topic(broker.bootstrap, topic, 2)
    # Traffic to partition 1 only: it must rank first among the top partitions; partition 0 has none.
    producer = clients.confluent_producer(broker.bootstrap, **{"compression.type": "none"})
    for i in range(50):
        producer.produce(topic, value=b"s" * VALUE_BYTES, partition=1)
    assert producer.flush(60) == 0
    status, body = http(broker.admin_url + "/v1/health")
    assert status == 200, body
    assert json.loads(body)["ready"] is True

    status, body = http(broker.admin_url + "/v1/status")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["topics"] >= 1
    assert len(doc["shards"]) >= 1
    assert sum(s["partitions"] for s in doc["shards"]) == doc["partitions"]
    assert doc["disks"] and doc["disks"][0]["partitions"] == doc["partitions"]
    top = doc["top_partitions"]
    assert top and (top[0]["topic"], top[0]["partition"]) == (topic, 1), top
    assert top[0]["records_in"] == 50 and top[0]["bytes_in"] >= 50 * VALUE_BYTES, top
    assert all(p["bytes_in"] + p["bytes_out"] > 0 for p in top), top
    assert (topic, 0) not in [(p["topic"], p["partition"]) for p in top], top

    status, body = http(broker.admin_url + "/v1/log-level", "PUT", b"debug")
    assert status == 200, body
    assert json.loads(http(broker.admin_url + "/v1/log-level")[1])["filter"] == "debug"
    assert http(broker.admin_url + "/v1/log-level", "PUT", b"not a [valid filter")[0] == 400
    assert http(broker.admin_url + "/v1/log-level", "PUT", b"info")[0] == 200
    assert http(broker.admin_url + "/nowhere")[0] == 404
    assert "log filter changed" in broker.log_text()

    out = subprocess.run([str(broker_binary()), "status", "--admin-address", f"127.0.0.1:{broker.admin_port}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("shardlog "), out.stdout
    assert "SHARD" in out.stdout and "LOG-DIR" in out.stdout
    top_rows = out.stdout.split("top partitions by bytes in and out")[1].splitlines()
    assert re.match(rf"^{topic}\s+1\s", top_rows[2]), out.stdout  # the first row after the header
    assert not any(re.match(rf"^{topic}\s+0\s", row) for row in top_rows), out.stdout
    assert not any(row.startswith("__") for row in top_rows), out.stdout
    down = subprocess.run([str(broker_binary()), "status", "--admin-address", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "cannot connect" in down.stderr


def partition_value(text: str, name: str, topic: str, partition: int) -> float:
    return samples(text, name).get((("partition", str(partition)), ("topic", topic)), 0)


def test_metrics_move_while_a_producer_runs(broker):
    """Scrapes while a producer runs in the background: first in steps (the producer waits, flushed,
    at the end of each), where the counters that are exact move by exactly what was produced or
    fetched; then freely, where every scrape sees counters that only grow, up to the exact total."""
    topic = "metrics-live"
    clients.create_topic(broker.bootstrap, topic, 2)
    steps, per_step, free_records = 3, 200, 2_000
    total = steps * per_step + free_records
    step_done, scraped, free_running = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        producer = clients.confluent_producer(broker.bootstrap, **{"compression.type": "none", "acks": "all", "linger.ms": 5})
        try:
            for _ in range(steps):
                for i in range(per_step):
                    producer.produce(topic, value=b"m" * VALUE_BYTES, partition=i % 2)
                assert producer.flush(60) == 0
                step_done.set()
                assert scraped.wait(60), "the test side did not scrape"
                scraped.clear()
            free_running.set()
            for i in range(free_records):
                producer.produce(topic, value=b"f" * VALUE_BYTES, partition=i % 2)
                producer.poll(0)
            assert producer.flush(60) == 0
        except BaseException as e:  # reported by the test thread
            failures.append(e)
            step_done.set()
            free_running.set()

    def scrape() -> str:
        status, text = http(broker.admin_url + "/metrics")
        assert status == 200
        return text

    before = scrape()
    produce_requests = samples(before, "shardlog_requests_total").get((("api", "Produce"),), 0)
    producer_thread = threading.Thread(target=produce, daemon=True)
    producer_thread.start()
    for step in range(1, steps + 1):
        assert step_done.wait(60), "the producer did not finish its step"
        step_done.clear()
        assert not failures, failures
        now = scrape()
        # Exact: every record was acknowledged (acks=all) before this scrape, and nothing else writes the topic.
        assert topic_sum(now, "shardlog_partition_records_in_total", topic) == step * per_step
        assert topic_sum(now, "shardlog_partition_log_end_offset", topic) == step * per_step
        assert topic_sum(now, "shardlog_partition_high_watermark", topic) == step * per_step
        assert topic_sum(now, "shardlog_partition_bytes_in_total", topic) >= step * per_step * VALUE_BYTES
        requests_now = samples(now, "shardlog_requests_total")[(("api", "Produce"),)]
        assert requests_now > produce_requests, "a step's produce requests were not counted"
        produce_requests = requests_now
        if step == 1:
            # One raw fetch of partition 0 with room for everything: out counts move by exactly what it returned.
            with kafkawire.Connection(broker.port) as conn:
                [fp] = kafkawire.parse_fetch_v4(conn.request(kafkawire.fetch_v4_request, topic, 0, 0))
            fetched = scrape()
            batches = kafkawire.parse_batches(fp.records)
            assert sum(b.record_count for b in batches) == per_step // 2
            assert partition_value(fetched, "shardlog_partition_records_out_total", topic, 0) - partition_value(now, "shardlog_partition_records_out_total", topic, 0) == per_step // 2
            assert partition_value(fetched, "shardlog_partition_bytes_out_total", topic, 0) - partition_value(now, "shardlog_partition_bytes_out_total", topic, 0) == len(fp.records)
            assert partition_value(fetched, "shardlog_partition_records_out_total", topic, 1) == partition_value(now, "shardlog_partition_records_out_total", topic, 1)
        scraped.set()

    # Free running: scrapes while the producer sends; the counts never go back and never pass the total.
    assert free_running.wait(60)
    seen = [steps * per_step]
    while producer_thread.is_alive() or len(seen) < 3:
        seen.append(topic_sum(scrape(), "shardlog_partition_records_in_total", topic))
        if not producer_thread.is_alive() and seen[-1] == total:
            break
    producer_thread.join(60)
    assert not failures, failures
    seen.append(topic_sum(scrape(), "shardlog_partition_records_in_total", topic))
    assert seen == sorted(seen), f"records_in went backwards: {seen}"
    assert seen[-1] == total and max(seen) == total, seen
    broker.assert_alive()


def test_pipelined_produces_append_in_the_order_sent(broker):
    """An idempotent librdkafka producer keeps five produce requests in flight on a connection,
    and relies on the broker appending each partition's batches in the order they were sent.
    Small batches to partitions of both shards (so some requests cross the mesh): every record
    reads back at an offset in send order, and the broker's own check on every produce answer
    (shardlog_produce_order_violations_total) found nothing out of order."""
    topic = "pipelined-order"
    partitions, records = 4, 6_000
    clients.create_topic(broker.bootstrap, topic, partitions)
    before = samples(http(broker.admin_url + "/metrics")[1], "shardlog_requests_total").get((("api", "Produce"),), 0)
    producer = clients.confluent_producer(broker.bootstrap, **{
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "acks": "all",
        "linger.ms": 0,
        "batch.size": 2_048,
        "compression.type": "none",
    })
    sent: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for i in range(records):
        value = b"%08d" % i + b"o" * 200
        producer.produce(topic, value=value, partition=i % partitions)
        sent[i % partitions].append(value)
        producer.poll(0)
    assert producer.flush(60) == 0
    read = clients.confluent_consume(broker.bootstrap, topic, {p: len(sent[p]) for p in range(partitions)})
    for p in range(partitions):
        got = [r.value for r in sorted(read) if r.partition == p]
        assert got == sent[p], f"partition {p}: records read back out of send order"
    text = http(broker.admin_url + "/metrics")[1]
    produce_requests = samples(text, "shardlog_requests_total")[(("api", "Produce"),)] - before
    assert produce_requests >= 50, f"only {produce_requests} produce requests: the test did not pipeline"
    violations = samples(text, "shardlog_produce_order_violations_total")
    assert violations, "the broker does not report its produce-order check"
    assert sum(violations.values()) == 0
