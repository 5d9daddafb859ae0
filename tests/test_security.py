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


def test_requested_client_auth_accepts_clients_with_and_without_certificates(broker_factory, pki):
    config = ssl_config(pki, **{"ssl.truststore.location": str(pki.ca.path), "ssl.client.auth": "requested"})
    b = broker_factory(config=config, extra_listeners=["SSL"], env={"SHARDLOG_LOG": "info,shardlog_engine::net::connection=debug"})
    port = b.extra_ports["SSL"]
    clients.create_topic(b.bootstrap, "requested", 1)
    produce(tls_client(pki, port), "requested", [b"anonymous"])
    with_cert = tls_client(pki, port, **{"ssl.certificate.location": str(pki.alice_cert), "ssl.key.location": str(pki.alice_key)})
    assert consume(with_cert, "requested", 1) == [b"anonymous"]
    done = b.wait_for_log(r"TLS handshake done", 0)
    assert any("principal=User:ANONYMOUS" in l for l in done), done
    # Without mapping rules the principal is the whole subject, RFC 2253 style.
    assert any("principal=User:CN=Alice,OU=eng,O=shardlog-tests" in l for l in done), done
    # A certificate from a CA the broker does not trust never yields its subject: the client
    # (told which CAs the broker accepts) sends none and is served as ANONYMOUS.
    since = b.log_size()
    rogue = tls_client(pki, port, **{"ssl.certificate.location": str(pki.rogue_cert), "ssl.key.location": str(pki.rogue_key)})
    assert consume(rogue, "requested", 1) == [b"anonymous"]
    done = b.wait_for_log(r"TLS handshake done", since)
    assert done and all("principal=User:ANONYMOUS" in l for l in done), done


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


# --- SASL ---------------------------------------------------------------------------------------

def sasl_ssl_config(pki, mechanisms: str, **extra) -> dict:
    return {
        **ssl_config(pki),
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": mechanisms,
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="{ALICE_PASSWORD}" user_bob="bob-pw";',
        **extra,
    }


def sasl_client(pki, port: int, mechanism: str, user: str, password: str, **extra) -> dict:
    return tls_client(pki, port, **{
        "security.protocol": "SASL_SSL", "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password, **extra,
    })


def test_broker_wide_ssl_client_auth_applies_to_ssl_listeners_only(broker_factory, pki):
    """KIP-684: `ssl.client.auth` alone requires certificates on SSL listeners; a SASL_SSL
    listener authenticates by SASL and wants certificates only if
    `listener.name.<listener>.ssl.client.auth` says so."""
    trust = {"ssl.truststore.location": str(pki.ca.path), "ssl.client.auth": "required"}
    b = broker_factory(config=sasl_ssl_config(pki, "PLAIN", **trust), extra_listeners=["SSL", "SASL_SSL"])
    clients.create_topic(b.bootstrap, "kip684", 1)
    produce(sasl_client(pki, b.extra_ports["SASL_SSL"], "PLAIN", "alice", ALICE_PASSWORD), "kip684", [b"no client certificate"])
    since = b.log_size()
    auth_fails(tls_client(pki, b.extra_ports["SSL"]))  # the SSL listener still requires one
    assert b.wait_for_log(r"TLS handshake failed", since)

    per_listener = broker_factory(config=sasl_ssl_config(pki, "PLAIN", **{**trust, "listener.name.sasl_ssl.ssl.client.auth": "required"}),
                                  extra_listeners=["SASL_SSL"])
    port = per_listener.extra_ports["SASL_SSL"]
    clients.create_topic(per_listener.bootstrap, "kip684", 1)
    since = per_listener.log_size()
    auth_fails(sasl_client(pki, port, "PLAIN", "alice", ALICE_PASSWORD))
    assert per_listener.wait_for_log(r"TLS handshake failed", since)
    with_cert = sasl_client(pki, port, "PLAIN", "alice", ALICE_PASSWORD,
                            **{"ssl.certificate.location": str(pki.alice_cert), "ssl.key.location": str(pki.alice_key)})
    produce(with_cert, "kip684", [b"with a client certificate"])
    assert consume(with_cert, "kip684", 1) == [b"with a client certificate"]


def shardlog_user(*args: str, password: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(broker_binary()), "user", *args], input=(password + "\n").encode() if password else None, capture_output=True, timeout=60)


def test_sasl_ssl_plain_accepts_the_right_password_and_rejects_others(broker_factory, pki):
    b = broker_factory(config=sasl_ssl_config(pki, "PLAIN"), extra_listeners=["SASL_SSL"])
    port = b.extra_ports["SASL_SSL"]
    clients.create_topic(b.bootstrap, "plain", 1)
    produce(sasl_client(pki, port, "PLAIN", "alice", ALICE_PASSWORD), "plain", [b"hello over SASL_SSL"])
    assert b.wait_for_log(r"SASL authentication succeeded.*principal=User:alice.*mechanism=PLAIN", 0)

    since = b.log_size()
    auth_fails(sasl_client(pki, port, "PLAIN", "alice", "wrong-password"))
    auth_fails(sasl_client(pki, port, "PLAIN", "mallory", "whatever"))
    failures = b.wait_for_log(r"SASL authentication failed", since)
    assert any("alice" in l for l in failures) and any("mallory" in l for l in failures), failures
    # A mechanism the listener does not enable is refused at the handshake.
    auth_fails(sasl_client(pki, port, "SCRAM-SHA-256", "alice", ALICE_PASSWORD))
    assert b.wait_for_log(r"SASL mechanism not enabled on this listener", since)

    b.assert_alive()
    assert consume(sasl_client(pki, port, "PLAIN", "bob", "bob-pw"), "plain", 1) == [b"hello over SASL_SSL"]
    # kcat (Debian's librdkafka 2.0.2) over SASL_SSL with PLAIN.
    done = kcat("-b", f"127.0.0.1:{port}", "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.ca.path}", "-X", "sasl.mechanisms=PLAIN",
                "-X", "sasl.username=alice", "-X", f"sasl.password={ALICE_PASSWORD}", "-C", "-t", "plain", "-e", "-q")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == ["hello over SASL_SSL"]
    log = b.log_text()
    assert ALICE_PASSWORD not in log and "wrong-password" not in log


def test_scram_users_from_the_cli_authenticate_and_persist(broker_factory, pki):
    b = broker_factory(config=sasl_ssl_config(pki, "SCRAM-SHA-256,SCRAM-SHA-512"), extra_listeners=["SASL_SSL"])
    port = b.extra_ports["SASL_SSL"]
    done = shardlog_user("create", "alice", "--bootstrap-server", b.bootstrap, password=ALICE_PASSWORD)
    assert done.returncode == 0, done.stderr.decode()
    assert "user alice: created" in done.stdout.decode()
    done = shardlog_user("create", "carol", "--mechanism", "SCRAM-SHA-512", "--iterations", "8192", "--bootstrap-server", b.bootstrap, password="carol-pw")
    assert done.returncode == 0, done.stderr.decode()
    listed = shardlog_user("list", "--bootstrap-server", b.bootstrap)
    assert listed.returncode == 0, listed.stderr.decode()
    rows = [line.split() for line in listed.stdout.decode().splitlines()]
    assert rows == [["USER", "MECHANISM", "ITERATIONS"], ["alice", "SCRAM-SHA-256", "4096"], ["alice", "SCRAM-SHA-512", "4096"], ["carol", "SCRAM-SHA-512", "8192"]], rows

    clients.create_topic(b.bootstrap, "scram", 1)
    produce(sasl_client(pki, port, "SCRAM-SHA-256", "alice", ALICE_PASSWORD), "scram", [b"sha-256"])
    produce(sasl_client(pki, port, "SCRAM-SHA-512", "alice", ALICE_PASSWORD), "scram", [b"sha-512"])
    assert consume(sasl_client(pki, port, "SCRAM-SHA-512", "carol", "carol-pw"), "scram", 2) == [b"sha-256", b"sha-512"]

    # Not kcat: Debian's librdkafka 2.0.2 repeats its own nonce in the SCRAM client-final
    # message (r=<client nonce><client nonce><server nonce>), which Kafka's server tolerates
    # (it only checks the end of the nonce) and rsasl, following RFC 5802, refuses. See the
    # README's known limits; kcat is covered with PLAIN over SASL_SSL.

    since = b.log_size()
    auth_fails(sasl_client(pki, port, "SCRAM-SHA-256", "alice", "wrong-password"))
    auth_fails(sasl_client(pki, port, "SCRAM-SHA-256", "nobody", "x"))
    auth_fails(sasl_client(pki, port, "SCRAM-SHA-256", "carol", "carol-pw"))  # carol has only SHA-512
    assert len(b.wait_for_log(r"SASL authentication failed", since)) >= 3, b.log_tail()
    b.assert_alive()

    # kafka-python, a second implementation of the client side of SCRAM and TLS.
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_SSL", ssl_cafile=str(pki.ca.path),
                             sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice", sasl_plain_password=ALICE_PASSWORD,
                             group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition("scram", 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got.extend(r.value for r in records)
        assert got == [b"sha-256", b"sha-512"]
    finally:
        consumer.close()

    # Credentials survive a restart, and are stored without the password.
    b.restart()
    stored = (b.data_dir / "__shardlog_meta" / "scram-credentials.json").read_text()
    assert ALICE_PASSWORD not in stored and "alice" in stored
    produce(sasl_client(pki, port, "SCRAM-SHA-256", "alice", ALICE_PASSWORD), "scram", [b"after restart"])

    done = shardlog_user("delete", "alice", "--bootstrap-server", b.bootstrap)
    assert done.returncode == 0, done.stderr.decode()
    auth_fails(sasl_client(pki, port, "SCRAM-SHA-256", "alice", ALICE_PASSWORD))
    done = shardlog_user("delete", "alice", "--bootstrap-server", b.bootstrap)
    assert done.returncode == 1 and "RESOURCE_NOT_FOUND" in (done.stdout + done.stderr).decode(), done
    assert ALICE_PASSWORD not in b.log_text()


def test_oauthbearer_accepts_signed_tokens_and_rejects_expired_and_foreign_ones(broker_factory, pki, tmp_path):
    signer = JwtSigner(tmp_path)
    config = sasl_ssl_config(pki, "OAUTHBEARER", **{
        "sasl.oauthbearer.expected.issuer": ISSUER,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "shardlog.sasl.oauthbearer.jwt.public.key.location": str(signer.public_key_path),
        "sasl.oauthbearer.clock.skew.seconds": 0,
    })
    b = broker_factory(config=config, extra_listeners=["SASL_SSL"])
    port = b.extra_ports["SASL_SSL"]

    def oauth_client(make_token) -> dict:
        return tls_client(pki, port, **{"security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": lambda _cfg: make_token()})

    clients.create_topic(b.bootstrap, "oauth", 1)
    produce(oauth_client(lambda: signer.token("dave", ISSUER, AUDIENCE)), "oauth", [b"token ok"])
    assert b.wait_for_log(r"SASL authentication succeeded.*principal=User:dave.*mechanism=OAUTHBEARER", 0)

    since = b.log_size()
    expired = signer.token("dave", ISSUER, AUDIENCE, lifetime_s=-60)
    auth_fails(oauth_client(lambda: (expired[0], time.time() + 60)))
    auth_fails(oauth_client(lambda: signer.token("dave", "https://other.issuer", AUDIENCE)))
    other = JwtSigner(tmp_path / "..")  # a key the broker does not trust
    auth_fails(oauth_client(lambda: other.token("dave", ISSUER, AUDIENCE)))
    reasons = " ".join(b.wait_for_log(r"SASL authentication failed", since))
    assert "ExpiredSignature" in reasons and "InvalidIssuer" in reasons and "InvalidSignature" in reasons, reasons
    b.assert_alive()
    assert consume(oauth_client(lambda: signer.token("erin", ISSUER, AUDIENCE)), "oauth", 1) == [b"token ok"]


# --- limits before authentication, and re-authentication (KIP-368) ------------------------------

def sasl_plaintext_config(**extra) -> dict:
    return {
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": 'x required user_alice="pw";',
        **extra,
    }


def plain_login(c: kw.Connection, user: str, password: str) -> tuple[int, str | None, int]:
    code, mechanisms = parse_sasl_handshake_v1(c.request(sasl_handshake_v1, "PLAIN"))
    assert code == 0 and mechanisms == ["PLAIN"], (code, mechanisms)
    code, message, _, lifetime = parse_sasl_authenticate_v1(c.request(sasl_authenticate_v1, b"\0" + user.encode() + b"\0" + password.encode()))
    return code, message, lifetime


def test_only_sasl_requests_before_authentication_and_an_authentication_deadline(broker_factory):
    b = broker_factory(config=sasl_plaintext_config(**{"shardlog.authentication.timeout.ms": 1000}), extra_listeners=["SASL_PLAINTEXT"])
    port = b.extra_ports["SASL_PLAINTEXT"]
    since = b.log_size()
    with kw.Connection(port) as c:
        assert c.api_versions(0).error_code == 0  # allowed before authentication
        c.send(kw.metadata_v1_request(c.correlation_id(), None))
        with pytest.raises(kw.Closed):
            c.recv_frame()
    assert b.wait_for_log(r"request before SASL authentication finished", since)

    # Silent clients are cut off at the deadline.
    with kw.Connection(port) as c:
        with pytest.raises(kw.Closed):
            c.recv_frame(timeout_s=20)
    assert b.wait_for_log(r"not authenticated within shardlog.authentication.timeout.ms", since)

    # A wrong password gets SASL_AUTHENTICATION_FAILED, then the connection closes.
    with kw.Connection(port) as c:
        code, message, _ = plain_login(c, "alice", "nope")
        assert code == 58 and "PLAIN" in (message or ""), (code, message)
        with pytest.raises(kw.Closed):
            c.recv_frame()
    # Before authentication, frames are bounded by sasl.server.max.receive.size: an oversized
    # token closes the connection before any mechanism sees it.
    b2 = broker_factory(config=sasl_plaintext_config(**{"listener.name.sasl_plaintext.sasl.server.max.receive.size": 64}), extra_listeners=["SASL_PLAINTEXT"])
    with kw.Connection(b2.extra_ports["SASL_PLAINTEXT"]) as c:
        code, mechanisms = parse_sasl_handshake_v1(c.request(sasl_handshake_v1, "PLAIN"))
        assert code == 0
        c.send(sasl_authenticate_v1(c.correlation_id(), b"\0alice\0" + b"x" * 100))
        with pytest.raises(kw.Closed):
            c.recv_frame()
    assert b2.wait_for_log(r"bad frame length before authentication", 0)
    with kw.Connection(b2.extra_ports["SASL_PLAINTEXT"]) as c:
        code, _, _ = plain_login(c, "alice", "pw")
        assert code == 0
    b.assert_alive()
    b2.assert_alive()


def test_session_lifetime_and_expired_sessions_are_closed(broker_factory):
    b = broker_factory(config=sasl_plaintext_config(**{"connections.max.reauth.ms": 1500}), extra_listeners=["SASL_PLAINTEXT"])
    port = b.extra_ports["SASL_PLAINTEXT"]
    with kw.Connection(port) as c:
        code, _, lifetime = plain_login(c, "alice", "pw")
        assert code == 0 and lifetime == 1500
        _, topics = kw.parse_metadata_v1(c.request(kw.metadata_v1_request, None))
        # Re-authentication renews the session.
        code, _, lifetime = plain_login(c, "alice", "pw")
        assert code == 0 and lifetime == 1500
        since = b.log_size()
        time.sleep(2.0)  # past the session lifetime, without re-authenticating
        c.send(kw.metadata_v1_request(c.correlation_id(), None))
        with pytest.raises(kw.Closed):
            c.recv_frame()
    assert b.wait_for_log(r"SASL session expired without re-authentication", since)
    assert b.wait_for_log(r"reauthentication=true", 0)


def test_librdkafka_reauthenticates_before_the_session_expires(broker_factory, pki):
    b = broker_factory(config=sasl_ssl_config(pki, "PLAIN", **{"connections.max.reauth.ms": 2000}), extra_listeners=["SASL_SSL"])
    port = b.extra_ports["SASL_SSL"]
    clients.create_topic(b.bootstrap, "reauth", 1)
    producer = confluent_kafka.Producer({**sasl_client(pki, port, "PLAIN", "alice", ALICE_PASSWORD), "acks": "all", "enable.idempotence": False})
    errors: list = []
    sent = 0
    deadline = time.monotonic() + 60
    # Keep producing until the broker has seen a re-authentication on a live connection.
    while not b.wait_for_log(r"SASL authentication succeeded.*reauthentication=true", 0, timeout_s=0.2):
        assert time.monotonic() < deadline, "librdkafka never re-authenticated"
        producer.produce("reauth", f"v{sent}".encode(), on_delivery=lambda err, _m: errors.append(err) if err else None)
        sent += 1
        producer.flush(10)
    producer.produce("reauth", b"last", on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(30) == 0 and not errors, errors
    assert not b.wait_for_log(r"SASL session expired", 0, timeout_s=0.1)


def test_scram_credentials_through_the_confluent_admin_client(broker_factory, pki):
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion

    b = broker_factory(config=sasl_ssl_config(pki, "SCRAM-SHA-512"), extra_listeners=["SASL_SSL"])
    port = b.extra_ports["SASL_SSL"]
    admin = AdminClient(clients.rdkafka(b.bootstrap))
    upsert = UserScramCredentialUpsertion("frank", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 10000), b"frank-pw", b"frank-salt")
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    described = {u: f.result(timeout=30) for u, f in admin.describe_user_scram_credentials(["frank"]).items()}
    infos = described["frank"].scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 10000)]

    clients.create_topic(b.bootstrap, "admin-scram", 1)
    produce(sasl_client(pki, port, "SCRAM-SHA-512", "frank", "frank-pw"), "admin-scram", [b"via admin client"])

    # Out-of-range iterations and a missing credential are refused with Kafka's errors.
    bad = UserScramCredentialUpsertion("gina", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"pw")
    with pytest.raises(confluent_kafka.KafkaException, match="UNACCEPTABLE_CREDENTIAL|Iterations"):
        for future in admin.alter_user_scram_credentials([bad]).values():
            future.result(timeout=30)
    gone = UserScramCredentialDeletion("gina", ScramMechanism.SCRAM_SHA_256)
    with pytest.raises(confluent_kafka.KafkaException, match="RESOURCE_NOT_FOUND|does not exist"):
        for future in admin.alter_user_scram_credentials([gone]).values():
            future.result(timeout=30)
