"""Listeners, TLS and SASL, end to end: real clients (confluent-kafka, kcat, kafka-python) over
SSL and SASL_SSL listeners with certificates, SCRAM users and JWTs made at run time
(tests/security_helpers.py). Every rejection (wrong password, unknown user, expired token,
untrusted certificate, plaintext on a TLS port, requests before authentication) must close only
that connection, leave a log line, and leave the broker serving."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

import clients
import kafkawire as kw
from clients import kcat
from conftest import broker_binary, shard_stopped_totals
from security_helpers import (
    JwtSigner,
    make_pki,
    parse_sasl_authenticate_v1,
    parse_sasl_handshake_v1,
    sasl_authenticate_v1,
    sasl_handshake_v1,
)

ISSUER = "https://issuer.shardlog.test"
AUDIENCE = "shardlog"
# A password that must never show up in the broker log.
ALICE_PASSWORD = "alice-Secret-7f3c"


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def ssl_config(pki, **extra) -> dict:
    return {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.server_keystore), **extra}


def tls_client(pki, port: int, **extra) -> dict:
    return clients.rdkafka(f"127.0.0.1:{port}", **{"security.protocol": "SSL", "ssl.ca.location": str(pki.ca.path), **extra})


def produce(config: dict, topic: str, values: list[bytes]) -> None:
    producer = confluent_kafka.Producer({**config, "acks": "all", "message.timeout.ms": 30_000, "enable.idempotence": False})
    errors = []
    for v in values:
        producer.produce(topic, v, on_delivery=lambda err, _m: errors.append(err) if err else None)
    left = producer.flush(60)
    assert left == 0 and not errors, f"{left} undelivered, errors {errors}"


def consume(config: dict, topic: str, count: int) -> list[bytes]:
    consumer = confluent_kafka.Consumer({**config, "group.id": "sec-unused", "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        out: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(out) < count:
            assert time.monotonic() < deadline, f"consumed {len(out)} of {count}"
            for m in consumer.consume(num_messages=1000, timeout=1.0):
                assert not m.error(), m.error()
                out.append(m.value())
        return out
    finally:
        consumer.close()


def auth_fails(config: dict) -> str:
    """Metadata with `config` must fail; returns the error librdkafka reported."""
    errors: list[str] = []
    admin = AdminClient({**config, "error_cb": lambda e: errors.append(str(e))})
    with pytest.raises(confluent_kafka.KafkaException):
        admin.list_topics(timeout=8)
    return " | ".join(errors)


def raw_tls(pki, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki.ca.path))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")


# --- TLS ----------------------------------------------------------------------------------------

def test_ssl_listener_serves_confluent_kcat_and_kafka_python_without_sendfile(broker_factory, pki):
    # No batch cache: every fetch reads the segment file, the path that uses sendfile on plaintext.
    b = broker_factory(config={**ssl_config(pki), "shardlog.cache.partition.bytes": 0}, extra_listeners=["SSL"])
    port = b.extra_ports["SSL"]
    values = [f"tls record {i} ".encode() * 20 for i in range(500)]
    clients.create_topic(b.bootstrap, "tls-topic", 1)
    produce(tls_client(pki, port), "tls-topic", values)
    assert consume(tls_client(pki, port), "tls-topic", len(values)) == values

    # Metadata on the SSL listener advertises the SSL port, not the PLAINTEXT one.
    done = kcat("-b", f"127.0.0.1:{port}", "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca.path}", "-L", "-t", "tls-topic")
    assert done.returncode == 0, done.stderr.decode()
    assert f"127.0.0.1:{port}" in done.stdout.decode(), done.stdout.decode()
    done = kcat("-b", f"127.0.0.1:{port}", "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca.path}", "-C", "-t", "tls-topic", "-e", "-q")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [v.decode() for v in values]

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SSL", ssl_cafile=str(pki.ca.path), ssl_check_hostname=True,
                             group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition("tls-topic", 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < len(values) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got.extend(r.value for r in records)
        assert got == values
    finally:
        consumer.close()

    log = b.stop()
    shards, calls, sent = shard_stopped_totals(log)
    assert shards > 0
    assert calls == 0 and sent == 0, f"sendfile used on a TLS connection: {calls} calls, {sent} bytes"


def test_plaintext_client_on_tls_port_is_rejected_and_broker_keeps_serving(broker_factory, pki):
    b = broker_factory(config=ssl_config(pki), extra_listeners=["SSL"])
    port = b.extra_ports["SSL"]
    since = b.log_size()
    with kw.Connection(port, timeout_s=10) as c:
        c.send(kw.api_versions_request(0, 1))
        # The broker answers with a TLS alert at most, never a Kafka response, then closes.
        try:
            cid, _ = c.recv_frame()
            answered = f"a Kafka response with correlation id {cid}"
        except (kw.Closed, OSError):
            answered = None
        assert answered is None, f"got {answered} on a TLS port"
    assert b.wait_for_log(r"TLS handshake failed", since), b.log_tail()
    b.assert_alive()
    with raw_tls(pki, port) as s:
        s.sendall(kw.api_versions_request(0, 7))
        header = s.recv(8)
        assert len(header) == 8 and int.from_bytes(header[4:8], "big") == 7


def test_mtls_principal_from_certificate_and_untrusted_certificates_are_rejected(broker_factory, pki):
    config = ssl_config(pki, **{
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca.path),
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),OU=eng,.*$/$1/L,DEFAULT",
    })
    b = broker_factory(config=config, extra_listeners=["SSL"], env={"SHARDLOG_LOG": "info,shardlog_engine::net::connection=debug"})
    port = b.extra_ports["SSL"]
    clients.create_topic(b.bootstrap, "mtls", 1)
    good = tls_client(pki, port, **{"ssl.certificate.location": str(pki.alice_cert), "ssl.key.location": str(pki.alice_key)})
    produce(good, "mtls", [b"from alice"])
    lines = b.wait_for_log(r"TLS client authenticated by certificate", 0)
    assert any("subject=CN=Alice,OU=eng,O=shardlog-tests" in l and "principal=User:alice" in l for l in lines), lines

    since = b.log_size()
    rogue = tls_client(pki, port, **{"ssl.certificate.location": str(pki.rogue_cert), "ssl.key.location": str(pki.rogue_key)})
    auth_fails(rogue)
    auth_fails(tls_client(pki, port))  # no certificate at all
    assert len(b.wait_for_log(r"TLS handshake failed", since)) >= 2, b.log_tail()
    b.assert_alive()
    assert consume(good, "mtls", 1) == [b"from alice"]


def test_certificates_are_reloaded_when_the_keystore_file_changes(broker_factory, pki, tmp_path):
    keystore = tmp_path / "live.keystore.pem"
    keystore.write_bytes(pki.server_keystore.read_bytes())
    b = broker_factory(config={"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)}, extra_listeners=["SSL"])
    port = b.extra_ports["SSL"]
    first = raw_tls(pki, port)
    serial_before = first.getpeercert()["serialNumber"]
    first.close()
    # A new server certificate from the same CA, swapped in atomically.
    from security_helpers import _name
    new_keystore, _, _ = pki.ca.issue(tmp_path, "server2", _name("localhost"), server=True)
    tmp = tmp_path / "live.tmp"
    tmp.write_bytes(new_keystore.read_bytes())
    tmp.rename(keystore)
    since = b.log_size()
    deadline = time.monotonic() + 30
    while True:
        s = raw_tls(pki, port)
        serial = s.getpeercert()["serialNumber"]
        s.close()
        if serial != serial_before:
            break
        assert time.monotonic() < deadline, "the broker kept serving the old certificate"
        time.sleep(0.2)
    assert b.wait_for_log(r"new connections use the reloaded certificates", since)
