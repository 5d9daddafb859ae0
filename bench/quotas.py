#!/usr/bin/env python3
"""Client quotas under load: is a producer and a consumer held to their byte-rate quota while a
client without a quota, on the same broker, keeps its throughput?

Starts shardlog (or, with `--bootstrap`, uses a broker already running there: shardlog or
Apache Kafka), fills a topic for the consumer, sets `producer_byte_rate` on client id
`limited-producer` and `consumer_byte_rate` on client id `limited-consumer` (both QUOTA bytes/s,
AlterClientQuotas), then:

1. baseline: the unthrottled producer (`free-producer`) alone for BASELINE seconds;
2. together: the limited producer, the limited consumer and the free producer at once, each in a
   process of its own (confluent_kafka), for WARMUP + SECONDS seconds.

Each client counts the payload bytes it got acknowledged (producers) or received (the consumer)
every 100 ms; rates are taken over the last SECONDS seconds (after WARMUP, which lets the first
burst that the empty quota windows allow pass: Kafka's rate spans at least quota.window.num - 1
windows, so a fresh client may send that many windows' worth at once). Prints one table, with
the throttle events librdkafka reported to each client (`throttle_cb`) and, for a shardlog it
started, the broker's throttle counters from its admin `/metrics`.

    bench/quotas.py [--bin target/release/shardlog] [--quota 2000000] [--seconds 30] [--warmup 15]
                    [--baseline 15] [--window-num 11] [--dir /var/tmp/shardlog-quotas]
                    [--bootstrap HOST:PORT] [--topic-suffix SUFFIX]

`--bootstrap HOST:PORT`: use the broker there instead of starting shardlog. `--bin`, `--dir` and
`--window-num` are then unused: the quota windows are the broker's own (`quota.window.num`,
`quota.window.size.seconds`; the script reads them with DescribeConfigs and prints them where the
broker answers), and there is no `/metrics` scrape. The broker must create topics on first use
(`auto.create.topics.enable=true`, Kafka's default) with one partition (`num.partitions=1`, as in
Kafka's sample server.properties), or have them already: `prefilled`, `free-alone`, `limited-in`
and `free-in`, each followed by the suffix. The quotas go on the same client ids every run.

`--topic-suffix SUFFIX` is appended to every topic name. By default it is empty for a broker the
script starts (a fresh data directory each run) and `-<unix time>` with `--bootstrap`, so that
repeated runs against the same broker fill a fresh `prefilled` topic and produce to fresh topics.
Give a suffix that starts with '-' as `--topic-suffix=-r1`.

Run it with a Python that has confluent_kafka and kafka-python (the test venv, `.venv-tests`).

Disk: the unthrottled producer writes as fast as the broker takes it, and nothing is deleted: on
the 2-vCPU dev VM one run left 25 to 30 GB in shardlog's data directory (about 10 GB in Kafka's);
remove `--dir`'s `data` (or the run's topics) between runs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VALUE = b"v" * 1000
READY_LINE = "shardlog is ready"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_broker(binary: str, work: Path, window_num: int) -> tuple[subprocess.Popen, int, int]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port, admin = free_port(), free_port()
    config = work / "broker.properties"
    config.write_text(f"admin.listeners=127.0.0.1:{admin}\nnum.partitions=1\nquota.window.num={window_num}\nquota.window.size.seconds=1\n")
    out = open(work / "broker.log", "wb")
    proc = subprocess.Popen([binary, "--data-dir", str(work / "data"), "--listeners", f"PLAINTEXT://127.0.0.1:{port}", "--config", str(config)], stderr=out, stdout=out)
    deadline = time.monotonic() + 60
    while READY_LINE not in (work / "broker.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"broker did not start; see {work / 'broker.log'}")
        time.sleep(0.1)
    return proc, port, admin


def alter_quotas(host: str, port: int, entries: list[tuple[str, str, float]]) -> None:
    """AlterClientQuotas v1 with kafka-python's message classes: (client id, key, value)."""
    from kafka.protocol.admin import AlterClientQuotasRequest, AlterClientQuotasResponse

    R = AlterClientQuotasRequest[1]
    wire = [R.EntryData(entity=[R.EntryData.EntityData(entity_type="client-id", entity_name=c)], ops=[R.EntryData.OpData(key=k, value=v, remove=False)]) for c, k, v in entries]
    request = R(entries=wire, validate_only=False)
    request.with_header(correlation_id=1, client_id="bench-quotas")
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(bytes(request.encode(version=1, header=True, framed=True)))
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        body = recv_exact(s, size)
    response = AlterClientQuotasResponse.decode(body, version=1, header=True)
    errors = [(e.error_code, e.error_message) for e in response.entries if e.error_code != 0]
    if errors:
        raise SystemExit(f"AlterClientQuotas failed: {errors}")


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("broker closed the connection")
        buf += chunk
    return buf


def produce(bootstrap: str, topic: str, client_id: str, seconds: float, results, max_bytes: int | None = None) -> None:
    """Produces as fast as the client lets it; records (t, acknowledged payload bytes) every 100 ms."""
    import confluent_kafka

    acked = 0
    throttle_events = []

    def report(err, msg):
        nonlocal acked
        if err is None:
            acked += len(msg.value())

    p = confluent_kafka.Producer({
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 262_144,
        "queue.buffering.max.kbytes": 16_384,
        "throttle_cb": lambda e: throttle_events.append(e.throttle_time),
    })
    timeline = []
    start = time.monotonic()
    next_mark = start
    sent = 0
    while True:
        now = time.monotonic()
        if now >= next_mark:
            timeline.append((now - start, acked))
            next_mark += 0.1
        if now - start >= seconds or (max_bytes is not None and sent >= max_bytes):
            break
        try:
            p.produce(topic, value=VALUE, on_delivery=report)
            sent += len(VALUE)
        except BufferError:
            p.poll(0.01)
            continue
        p.poll(0)
    p.flush(60)
    results.put((client_id, timeline, throttle_events))


def consume(bootstrap: str, topic: str, client_id: str, seconds: float, results) -> None:
    import confluent_kafka

    throttle_events = []
    c = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{client_id}-group",
        "client.id": client_id,
        "enable.auto.commit": False,
        "max.partition.fetch.bytes": 262_144,
        "throttle_cb": lambda e: throttle_events.append(e.throttle_time),
    })
    c.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    received = 0
    timeline = []
    start = time.monotonic()
    next_mark = start
    while True:
        now = time.monotonic()
        if now >= next_mark:
            timeline.append((now - start, received))
            next_mark += 0.1
        if now - start >= seconds:
            break
        for m in c.consume(num_messages=1000, timeout=0.05):
            if not m.error():
                received += len(m.value())
    c.close()
    results.put((client_id, timeline, throttle_events))


def rate(timeline: list[tuple[float, int]], since: float) -> tuple[float, float]:
    """Bytes/s from the first mark at or after `since` to the last mark, and the span."""
    first = next((t, b) for t, b in timeline if t >= since)
    last = timeline[-1]
    span = last[0] - first[0]
    return (last[1] - first[1]) / span, span


def throttle_metrics(admin: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("shardlog_quota_throttle")}


def broker_quota_windows(bootstrap: str) -> str:
    """The broker's quota.window.* settings, read with DescribeConfigs (best effort)."""
    try:
        from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

        admin = AdminClient({"bootstrap.servers": bootstrap})
        broker = next(iter(admin.list_topics(timeout=30).brokers))
        resource = ConfigResource(ResourceType.BROKER, str(broker))
        configs = admin.describe_configs([resource])[resource].result(timeout=30)
        return ", ".join(f"{k}={configs[k].value}" for k in ("quota.window.num", "quota.window.size.seconds") if k in configs) or "quota.window.* not described by the broker"
    except Exception as e:  # noqa: BLE001 - only a label for the table
        return f"quota.window.* unknown ({e})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/shardlog")
    ap.add_argument("--quota", type=int, default=2_000_000, help="bytes per second, for both limited clients")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--baseline", type=float, default=15.0)
    ap.add_argument("--dir", default="/var/tmp/shardlog-quotas")
    ap.add_argument("--window-num", type=int, default=11, help="quota.window.num (Kafka's default 11); windows of 1 s")
    ap.add_argument("--bootstrap", metavar="HOST:PORT", help="use the broker running there instead of starting shardlog")
    ap.add_argument("--topic-suffix", help="appended to every topic name (default: empty, or -<unix time> with --bootstrap)")
    args = ap.parse_args()
    if args.bootstrap:
        proc, admin = None, None
        host, _, port_text = args.bootstrap.rpartition(":")
        port = int(port_text)
        bootstrap = args.bootstrap
        suffix = args.topic_suffix if args.topic_suffix is not None else f"-{int(time.time())}"
    else:
        work = Path(args.dir)
        proc, port, admin = start_broker(args.bin, work, args.window_num)
        host = "127.0.0.1"
        bootstrap = f"127.0.0.1:{port}"
        suffix = args.topic_suffix or ""
    prefilled, free_alone, limited_in, free_in = (f"{t}{suffix}" for t in ("prefilled", "free-alone", "limited-in", "free-in"))
    log(f"broker {bootstrap}; topics {prefilled}, {free_alone}, {limited_in}, {free_in}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    try:
        total = args.warmup + args.seconds
        # The consumer's topic holds more than it may read in the run at its quota.
        fill = int(args.quota * (total + 10) * 1.5)
        log(f"filling the consumer's topic with {fill / 1e6:.0f} MB")
        produce(bootstrap, prefilled, "loader", 600, results, max_bytes=fill)
        results.get()
        alter_quotas(host, port, [("limited-producer", "producer_byte_rate", args.quota), ("limited-consumer", "consumer_byte_rate", args.quota)])

        log(f"baseline: free-producer alone for {args.baseline:.0f} s")
        p = ctx.Process(target=produce, args=(bootstrap, free_alone, "free-producer", args.baseline, results))
        p.start()
        _, base_timeline, _ = results.get()
        p.join()
        baseline, base_span = rate(base_timeline, args.baseline / 3)

        log(f"together: limited producer, limited consumer and free producer for {total:.0f} s")
        procs = [
            ctx.Process(target=produce, args=(bootstrap, limited_in, "limited-producer", total, results)),
            ctx.Process(target=consume, args=(bootstrap, prefilled, "limited-consumer", total, results)),
            ctx.Process(target=produce, args=(bootstrap, free_in, "free-producer", total, results)),
        ]
        for p in procs:
            p.start()
        got = {}
        for _ in procs:
            client, timeline, throttles = results.get()
            got[client] = (timeline, throttles)
        for p in procs:
            p.join()
        metrics = throttle_metrics(admin) if admin is not None else None
        windows = broker_quota_windows(bootstrap) if args.bootstrap else f"quota.window.num={args.window_num}, quota.window.size.seconds=1"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)

    where = f"broker {args.bootstrap} (not started by this script); " if args.bootstrap else ""
    print(f"{where}{windows}; quota {args.quota} B/s (producer_byte_rate on limited-producer, consumer_byte_rate on limited-consumer); "
          f"rates over the last {args.seconds:.0f} s of {total:.0f} s; payload bytes (records' values)\n")
    print("| client | quota | measured rate | measured / quota | throttle events (longest) |")
    print("|---|---|---|---|---|")
    for client in ("limited-producer", "limited-consumer", "free-producer"):
        timeline, throttles = got[client]
        r, span = rate(timeline, args.warmup)
        limited = client.startswith("limited")
        quota = f"{args.quota / 1e6:.2f} MB/s" if limited else "none"
        ratio = f"{r / args.quota:.3f}" if limited else f"{r / baseline:.3f} of its baseline"
        # librdkafka reports throttle times in seconds, and a zero when a throttle is over.
        events = [t for t in throttles if t > 0]
        print(f"| {client} | {quota} | {r / 1e6:.2f} MB/s over {span:.1f} s | {ratio} | {len(events)} ({max(events, default=0):.2f} s) |")
    print(f"| free-producer alone (baseline) | none | {baseline / 1e6:.2f} MB/s over {base_span:.1f} s | | |")
    if metrics is None:
        print("\nbroker metrics: not scraped (a broker this script did not start; throttle events above are the clients' own)")
        return
    print("\nbroker metrics:")
    for k, v in sorted(metrics.items()):
        print(f"    {k} {v:.0f}")


if __name__ == "__main__":
    main()
