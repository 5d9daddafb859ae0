"""The command-line contract: startup, clean shutdown, refusing a port another process holds,
and refusing a bad configuration."""

from __future__ import annotations

import subprocess
import time

import clients
import kafkawire
from conftest import READY_LINE, Broker, broker_binary, listening_socket_inodes, process_socket_inodes, shard_cores, shard_stopped_totals

SHARDS = len(shard_cores().split(","))


def test_clean_shutdown_logs_every_shard_and_exits_zero(broker):
    clients.create_topic(broker.bootstrap, "cli", 2)
    log = broker.stop()  # asserts exit status 0
    shards, _, _ = shard_stopped_totals(log)
    assert shards == SHARDS, f"{shards} `shard stopped` lines for {SHARDS} shards"
    # Topics survive the restart.
    broker.start()
    with kafkawire.Connection(broker.port) as conn:
        _, topics = kafkawire.parse_metadata_v1(conn.request(kafkawire.metadata_v1_request, ["cli"]))
    assert topics["cli"] == (0, [0, 1])


def test_second_broker_on_same_port_refuses_to_start(broker, tmp_path):
    """Shards share their port with SO_REUSEPORT; that must not let a second broker process
    join the same port and take part of the first one's clients."""
    cmd = [str(broker_binary()), "--data-dir", str(tmp_path / "other-data"), "--listeners", f"PLAINTEXT://{broker.bootstrap}", "--cores", shard_cores()]
    log_path = tmp_path / "second.log"
    with open(log_path, "wb") as log:
        second = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while second.poll() is None and READY_LINE not in log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "second broker neither failed nor became ready"
            time.sleep(0.05)
        output = log_path.read_text(errors="replace")
        assert second.poll() is not None, f"a second broker started on the occupied port {broker.port}:\n{output[-2000:]}"
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert second.returncode != 0, "a second broker on an occupied port exited with status 0"
    assert str(broker.port) in output, f"the error does not name the port:\n{output[-2000:]}"
    # The first broker still owns every listening socket on its port and still serves.
    broker.assert_alive()
    assert listening_socket_inodes(broker.port) <= process_socket_inodes(broker.pid)
    with kafkawire.Connection(broker.port) as conn:
        assert conn.api_versions(0).error_code == kafkawire.NONE


def test_invalid_config_value_is_refused(tmp_path):
    b = Broker(tmp_path / "bad-config", config={"log.message.timestamp.type": "Yesterday"})
    cmd = [str(broker_binary()), "--data-dir", str(b.data_dir), "--listeners", f"PLAINTEXT://{b.bootstrap}", "--config", str(b.config_path)]
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    assert done.returncode != 0
    assert b"log.message.timestamp.type" in done.stderr, done.stderr.decode(errors="replace")


def test_restart_right_after_kill9_with_clients_connected(broker):
    """Kafka rebinds its port at once after a crash. The dead broker's client connections
    linger on the port (FIN_WAIT, TIME_WAIT); they must not keep the new process out."""
    clients_connected = [kafkawire.Connection(broker.port) for _ in range(4)]
    try:
        for conn in clients_connected:
            assert conn.api_versions(0).error_code == kafkawire.NONE
        broker.kill9()
        broker.start()  # fails if the port is refused
        with kafkawire.Connection(broker.port) as conn:
            assert conn.api_versions(0).error_code == kafkawire.NONE
    finally:
        for conn in clients_connected:
            conn.close()


def test_restart_right_after_clean_stop_with_clients_connected(broker):
    """On SIGTERM the broker closes its client connections itself, leaving them in TIME_WAIT on
    its side of the port; starting again straight away must still work."""
    clients_connected = [kafkawire.Connection(broker.port) for _ in range(4)]
    try:
        for conn in clients_connected:
            assert conn.api_versions(0).error_code == kafkawire.NONE
        broker.restart()
        with kafkawire.Connection(broker.port) as conn:
            assert conn.api_versions(0).error_code == kafkawire.NONE
    finally:
        for conn in clients_connected:
            conn.close()


IO_PROPERTIES = """\
# As `shardlog tune iotune` writes it (tuning/README.md), for the broker's data directory.
version = 1
generated_by = "e2e"
generated_at_unix_s = 0
[[disks]]
dir = "{dir}"
test_file_bytes = 1048576
duration_ms = 1
[disks.measured]
write_seq_bytes_per_s = 1000000000
write_seq_block_bytes = 1048576
read_seq_bytes_per_s = 1000000000
read_random_4k_iops = 1000
read_random_queue_depth = 1
fdatasync_latency_us_p50 = 1000
fdatasync_latency_us_p99 = 1000
fdatasync_latency_us_p999 = 1000
fdatasync_latency_us_max = 1000
fdatasync_samples = 1
[disks.engine]
write_buffer_bytes = 262144
writes_in_flight_max = 2
group_commit_window_us = 700
"""


def test_iotune_file_in_the_data_dir_is_read_at_start(broker_factory):
    broker = broker_factory(start=False)
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    (broker.data_dir / "io-properties.toml").write_text(IO_PROPERTIES.format(dir=broker.data_dir))
    broker.start()
    [line] = [l for l in broker.log_text().splitlines() if "disk settings from iotune" in l]
    assert "write_bytes_max=262144" in line and "group_commit_window_us=700" in line and str(broker.data_dir) in line, line
    # The broker writes with those settings.
    clients.create_topic(broker.bootstrap, "iotune", 1)
    producer = clients.confluent_producer(broker.bootstrap, acks="all")
    for i in range(1000):
        producer.produce("iotune", value=b"%d" % i)
    assert producer.flush(60) == 0
    assert clients.confluent_watermarks(broker.bootstrap, "iotune", 1)[0] == (0, 1000)

    # A damaged file stops the broker with a message naming it.
    broker.stop()
    (broker.data_dir / "io-properties.toml").write_text("version = 1\n")
    out = subprocess.run([str(broker_binary()), "--data-dir", str(broker.data_dir), "--listeners", f"PLAINTEXT://{broker.bootstrap}", "--cores", shard_cores()], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "io-properties.toml" in out.stderr and "shardlog tune iotune" in out.stderr, out.stderr
