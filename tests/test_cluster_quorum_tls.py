"""The metadata quorum over TLS: the controller listener is SSL
(`listener.security.protocol.map=...,CONTROLLER:SSL`) with `ssl.client.auth=required`, as in a
production KRaft cluster, so every quorum link (voter to voter, broker-only node to voter,
bootstrap discovery) is mutual TLS. The Kafka client listener stays PLAINTEXT.

Real processes, one shard each, short quorum timeouts. Each node has a certificate of its own
(for 127.0.0.1, usable as server and client), signed by the test CA; a stranger's is signed by
another CA.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct

import clients
from clients import wait_until
from cluster import CLUSTER_ID, create_topic, leader_of, make_cluster, start_cluster, status, wait_brokers, wait_converged, write_config
from confluent_kafka.admin import AdminClient
from security_helpers import _name, make_ca, make_pki
from test_cluster_dynamic_quorum import dynamic_cluster, format_ok
from test_cluster_quorum import describe_quorum
from test_cluster_roles import FRAME_FETCH, FRAME_FETCH_REPLY, FRAME_HELLO, frame, read_frame

SERVER_HANDSHAKE_FAILED = "closed a metadata quorum connection whose TLS handshake failed"
CLIENT_HANDSHAKE_FAILED = "TLS handshake with a metadata quorum voter failed"


def controller_tls(keystore, ca, prefixed: bool = True) -> dict:
    """The settings that make CONTROLLER an SSL listener with mutual TLS: per listener
    (`listener.name.controller.ssl.*`), or broker-wide (`ssl.*`) with `prefixed=False`."""
    prefix = "listener.name.controller." if prefixed else ""
    return {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.location": str(keystore),
        f"{prefix}ssl.truststore.type": "PEM",
        f"{prefix}ssl.truststore.location": str(ca),
        f"{prefix}ssl.client.auth": "required",
    }


def node_keystores(pki_dir, ca, count: int) -> list:
    return [ca.issue(pki_dir, f"node{i + 1}", _name(f"node{i + 1}"), server=True, client_too=True)[0] for i in range(count)]


def round_trip(nodes, bootstrap: str, topic: str, partitions: int, count: int) -> None:
    """Produces `count` records over `partitions` through a real Kafka client and reads every
    one back. The consumer's group lookup has `__consumer_offsets` created: waited for, so
    that the topic counts after this are known."""
    producer = clients.confluent_producer(bootstrap, acks="all")
    for i in range(count):
        producer.produce(topic, value=f"{topic}-{i}".encode(), partition=i % partitions)
    assert producer.flush(60) == 0
    per_partition = {p: len(range(p, count, partitions)) for p in range(partitions)}
    consumed = clients.confluent_consume(bootstrap, topic, per_partition)
    assert sorted(r.value for r in consumed) == sorted(f"{topic}-{i}".encode() for i in range(count))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_until(lambda: "__consumer_offsets" in admin.list_topics(timeout=10).topics, "the consumer's lookup to create __consumer_offsets")


def observer_hello(nodes, node_id: int = 9) -> bytes:
    """The hello of a broker-only node `node_id` that names `nodes` as the voters."""
    voters = [[n.node_id, f"{n.host}:{n.extra_ports['CONTROLLER']}"] for n in nodes]
    hello = {"node_id": node_id, "cluster_id": CLUSTER_ID, "voters": voters, "observer": True}
    return frame(FRAME_HELLO, json.dumps(hello).encode())


def test_three_controllers_elect_fail_over_and_catch_up_over_mutual_tls(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    keystores = node_keystores(tmp_path / "pki", pki.ca, 3)
    nodes = start_cluster(broker_factory, extra_config=[controller_tls(k, pki.ca.path) for k in keystores])
    first = leader_of(nodes)
    assert len({status(n)["quorum"]["term"] for n in nodes}) == 1
    wait_brokers(nodes)
    # Through a node that is not the active controller: forwarded over a TLS link.
    follower = next(n for n in nodes if n.node_id != first)
    create_topic(follower, "orders", 6)
    wait_converged(nodes, 1)
    round_trip(nodes, nodes[0].bootstrap, "orders", 6, 600)
    for n in nodes:
        assert "TLS handshake" not in n.run_log(), n.log_tail()

    nodes[first - 1].kill9()
    second = leader_of(nodes, other_than=first)
    create_topic(nodes[second - 1], "after-kill", 3)
    wait_converged(nodes, 3)  # with __consumer_offsets
    # The killed node comes back, reconnects over TLS, and catches up on what it missed.
    nodes[first - 1].start()
    wait_converged(nodes, 3)
    assert leader_of(nodes) == second
    wait_brokers(nodes)
    round_trip(nodes, nodes[first - 1].bootstrap, "after-kill", 3, 300)


def test_a_node_signed_by_another_ca_never_joins_and_the_listener_refuses_plaintext_and_anonymous_peers(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    good = node_keystores(tmp_path / "pki", pki.ca, 2)
    rogue_ca = make_ca(tmp_path / "pki", "other-ca")
    # It trusts the cluster's CA, so the refusal is the others' verdict on its certificate.
    stranger_keystore, _, _ = rogue_ca.issue(tmp_path / "pki", "node3", _name("node3"), server=True, client_too=True)
    nodes = make_cluster(broker_factory, extra_config=[controller_tls(k, pki.ca.path) for k in good + [stranger_keystore]])
    members, stranger = nodes[:2], nodes[2]
    for n in nodes:
        n.launch()
    for n in members:
        n.wait_ready()
    leader = leader_of(members)
    create_topic(members[leader - 1], "only-trusted", 2)
    wait_converged(members, 1)
    # Both members refuse it as a client, and refuse to talk to it as a server; it is told.
    for n in members:
        assert n.wait_for_log(SERVER_HANDSHAKE_FAILED, n.run_log_start), n.log_tail()
        assert n.wait_for_log(CLIENT_HANDSHAKE_FAILED + ".*voter=3", n.run_log_start), n.log_tail()
    assert stranger.wait_for_log("metadata quorum voter ended this node's TLS link", stranger.run_log_start), stranger.log_tail()
    # It never joins: no leader, no metadata, not a broker; alive all the same.
    assert stranger.is_alive()
    assert "shardlog is ready" not in stranger.run_log()
    admin = AdminClient({"bootstrap.servers": members[0].bootstrap})
    wait_until(lambda: set(admin.list_topics(timeout=10).brokers) == {1, 2}, "the members to list each other")
    assert 3 not in admin.list_topics(timeout=10).brokers

    host, port = members[0].host, members[0].extra_ports["CONTROLLER"]
    before = status(members[0])["quorum"]
    since = members[0].log_size()
    # A plaintext hello (an observer's, which a PLAINTEXT listener would follow) is closed.
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(observer_hello(nodes))
        # At most a TLS alert record (content type 21) comes back, then the end of the stream.
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        assert answer == b"" or (answer[0] == 21 and len(answer) <= 7), answer
    assert members[0].wait_for_log(SERVER_HANDSHAKE_FAILED + ".*(corrupt message|InvalidContentType)", since), members[0].log_tail()
    # TLS without a client certificate: ssl.client.auth=required ends it before any frame.
    anonymous = ssl.create_default_context(cafile=str(pki.ca.path))
    with socket.create_connection((host, port), timeout=10) as raw:
        try:
            # TLS 1.3: the client's side of the handshake ends before the server checks it.
            with anonymous.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(observer_hello(nodes))
                answer = s.recv(64)
        except (ssl.SSLError, ConnectionResetError) as e:
            answer = e
        assert not isinstance(answer, bytes) or answer == b"", answer
    assert members[0].wait_for_log(SERVER_HANDSHAKE_FAILED + ".*(no certificates|NoCertificatesPresented|CertificateRequired)", since), members[0].log_tail()
    # With a certificate of the cluster's CA the same frames work: an observer's fetch is
    # answered over TLS.
    trusted = ssl.create_default_context(cafile=str(pki.ca.path))
    trusted.load_cert_chain(str(good[0]))
    with socket.create_connection((host, port), timeout=10) as raw, trusted.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(observer_hello(nodes))
        s.sendall(frame(FRAME_FETCH, struct.pack(">Q", 5) + json.dumps({"from_index": 2, "wait_ms": 0, "bytes_max": 1}).encode()))
        kind, payload = read_frame(s)
        assert kind == FRAME_FETCH_REPLY and struct.unpack(">Q", payload[:8])[0] == 5
        assert json.loads(payload[8:])["entries"][0]["index"] == 2
    # Nothing of that disturbed the quorum.
    assert all(n.is_alive() for n in nodes)
    after = status(members[0])["quorum"]
    assert (after["leader"], after["term"]) == (before["leader"], before["term"])
    create_topic(members[0], "still-healthy", 1)
    wait_converged(members, 2)


def test_a_broker_only_node_observes_an_ssl_quorum_with_the_broker_wide_ssl_settings(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    keystores = node_keystores(tmp_path / "pki", pki.ca, 4)
    nodes = start_cluster(
        broker_factory, count=4, roles=["broker,controller"] * 3 + ["broker"], extra_config=[controller_tls(k, pki.ca.path, prefixed=False) for k in keystores]
    )
    observer = nodes[3]
    leader = leader_of(nodes)
    wait_brokers(nodes)
    d = describe_quorum(observer, 2)
    assert d["leader"] == leader and [o[0] for o in d["observers"]] == [4], d
    # Created through the broker-only node: forwarded on its TLS link to the active controller.
    create_topic(observer, "observed", 8)
    wait_converged(nodes, 1)
    round_trip(nodes, observer.bootstrap, "observed", 8, 400)
    nodes[leader - 1].kill9()
    second = leader_of(nodes, other_than=leader)
    assert status(observer)["quorum"]["leader"] == second
    create_topic(observer, "after-failover", 2)
    wait_converged(nodes, 3)  # with __consumer_offsets
    for n in nodes:
        assert "TLS handshake" not in n.run_log(), n.log_tail()


def test_a_broker_finds_a_dynamic_quorum_through_bootstrap_servers_over_tls(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    keystores = node_keystores(tmp_path / "pki", pki.ca, 2)
    controller, broker = dynamic_cluster(broker_factory, 2, bootstrap=[1], roles=["broker,controller", "broker"])
    for n, keystore in zip((controller, broker), keystores):
        write_config(n, controller_tls(keystore, pki.ca.path))
    format_ok(controller, "--standalone")
    for n in (controller, broker):
        n.launch()
    for n in (controller, broker):
        n.wait_ready()
    assert broker.wait_for_log("found the metadata quorum through controller.quorum.bootstrap.servers", broker.run_log_start)
    assert leader_of([controller, broker]) == 1
    create_topic(broker, "found-over-tls", 2)
    wait_converged([controller, broker], 1)
    wait_brokers([controller, broker])
    round_trip([controller, broker], broker.bootstrap, "found-over-tls", 2, 100)
