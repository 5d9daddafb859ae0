"""Replication between brokers over TLS (issue #15) on real shardlog processes: with
`inter.broker.listener.name=SSL` and `ssl.client.auth=required`, followers reach their leaders
on the SSL listener, verify the leader's certificate against the truststore and present their
own keystore; a topic with three replicas then replicates, fails over when its leader is
SIGKILLed, and loses nothing that was acknowledged with acks=all."""

from __future__ import annotations

from clients import wait_until
from cluster import start_cluster, wait_brokers
from security_helpers import _name, make_pki
from test_replication import FAST, check_history, create, metric, partition_state, produce, producer, read_all, wait_isr


def test_followers_replicate_over_tls_with_client_certificates(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    # One certificate for every broker, for 127.0.0.1, usable as server and as client.
    keystore, _, _ = pki.ca.issue(tmp_path / "pki", "broker", _name("broker"), server=True, client_too=True)
    tls = {
        **FAST,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca.path),
        "ssl.client.auth": "required",
        "inter.broker.listener.name": "SSL",
    }
    nodes = start_cluster(broker_factory, extra_config=[tls] * 3, listeners=["SSL"])
    wait_brokers(nodes)
    topic = "over-tls"
    create(nodes, topic, 1, 3, {"min.insync.replicas": "2"})
    wait_isr(nodes, topic, [1, 2, 3])
    p = producer(nodes)
    acked = produce(p, topic, [b"a-%d" % i for i in range(300)])

    # Both followers fetched everything from the leader, over TLS: their lag is known and 0.
    leader = partition_state(nodes, topic)[0]
    for follower in {1, 2, 3} - {leader}:
        labels = f'{{topic="{topic}",partition="0",follower="{follower}"}}'
        wait_until(lambda: metric(nodes[leader - 1], "shardlog_replica_lag_records" + labels) == 0, f"follower {follower} to have fetched everything")
    nodes[leader - 1].kill9()
    survivors = [n for n in nodes if n.is_alive()]
    wait_until(lambda: partition_state(survivors, topic)[0] not in (leader, -1), "another replica to lead")
    acked += produce(p, topic, [b"b-%d" % i for i in range(300)])
    nodes[leader - 1].launch()
    nodes[leader - 1].wait_ready()
    wait_isr(nodes, topic, [1, 2, 3])
    check_history(acked, read_all(nodes, topic, 1, len(acked)))
    for n in nodes:
        assert "SASL between brokers is not supported" not in n.log_text()
