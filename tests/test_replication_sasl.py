"""Replication between brokers over SASL on real shardlog processes: with
`inter.broker.listener.name` on a SASL_PLAINTEXT listener and
`sasl.mechanism.inter.broker.protocol` (PLAIN, or SCRAM-SHA-512 with credentials kept in the
cluster metadata), followers log in to their leaders with the `username` and `password` of the
listener's JAAS config, as Kafka's brokers do, and a topic with three replicas replicates and
loses nothing acknowledged with acks=all. A broker with the wrong password is refused, says
why, and stays out of the ISR; clients keep using the PLAINTEXT listener."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from clients import wait_until
from cluster import leader_of, start_cluster, wait_brokers
from test_replication import FAST, check_history, create, metric, partition_state, produce, producer, read_all, wait_isr

PLAIN_LOGIN = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="{password}" user_broker="broker-secret";'


def sasl_config(mechanism: str, jaas_key: str, jaas: str) -> dict:
    return {
        **FAST,
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "sasl.mechanism.inter.broker.protocol": mechanism,
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        # Every broker takes the PLAIN login `broker`; SCRAM logins are checked against the
        # credentials in the cluster metadata.
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_LOGIN.format(password="broker-secret"),
        jaas_key: jaas,
    }


def replicate_and_check(nodes, topic: str) -> None:
    create(nodes, topic, 1, 3, {"min.insync.replicas": "2"})
    wait_isr(nodes, topic, [1, 2, 3])
    p = producer(nodes)
    acked = produce(p, topic, [b"s-%d" % i for i in range(300)])
    leader = partition_state(nodes, topic)[0]
    for follower in {1, 2, 3} - {leader}:
        labels = f'{{topic="{topic}",partition="0",follower="{follower}"}}'
        wait_until(lambda: metric(nodes[leader - 1], "shardlog_replica_lag_records" + labels) == 0, f"follower {follower} to have fetched everything")
    check_history(acked, read_all(nodes, topic, 1, len(acked)))


def test_followers_log_in_with_plain_and_a_wrong_password_is_refused(broker_factory):
    good = sasl_config("PLAIN", "listener.name.sasl_plaintext.plain.sasl.jaas.config", PLAIN_LOGIN.format(password="broker-secret"))
    # Node 3 takes the right password from the others but logs in with a wrong one.
    bad = {**good, "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_LOGIN.format(password="not-the-secret")}
    nodes = start_cluster(broker_factory, extra_config=[good, good, bad], listeners=["SASL_PLAINTEXT"])
    wait_brokers(nodes)
    topic = "over-sasl-plain"
    create(nodes, topic, 3, 3)
    # Wherever node 3 follows, it is refused and says why; never fetching, it leaves the ISR
    # (a new partition's ISR is every replica) once replica.lag.time.max.ms has passed.
    wait_until(lambda: "SASL login failed: PLAIN as broker refused" in nodes[2].log_text(), "node 3 to report its refused login")
    def node3_out_where_it_follows():
        states = [partition_state(nodes, topic, p) for p in range(3)]
        return all(3 not in isr for leader, _, isr in states if leader != 3)
    wait_until(node3_out_where_it_follows, "node 3 to leave the ISR of the partitions it follows", timeout_s=30)
    for n in nodes[:2]:
        assert "SASL login failed" not in n.log_text()
    # The two with the right password replicate between themselves.
    nodes[2].stop()
    nodes[2].config_path.write_text(nodes[2].config_path.read_text().replace("not-the-secret", "broker-secret"))
    nodes[2].start()
    # Node 3 may have been the active controller: the others elect one first.
    leader_of(nodes)
    replicate_and_check(nodes, "after-fix")


def test_followers_log_in_with_scram_credentials_from_the_cluster_metadata(broker_factory):
    scram = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="replicator" password="replicator-secret";'
    config = sasl_config("SCRAM-SHA-512", "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config", scram)
    nodes = start_cluster(broker_factory, extra_config=[config] * 3, listeners=["SASL_PLAINTEXT"])
    wait_brokers(nodes)
    # The brokers' SCRAM login exists once it is in the cluster metadata (kafka-configs.sh
    # --alter --add-config 'SCRAM-SHA-512=[...]' --entity-type users in Kafka).
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    upsert = UserScramCredentialUpsertion("replicator", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"replicator-secret", b"pepper")
    for future in admin.alter_user_scram_credentials([upsert]).values():
        assert future.result(30) is None
    replicate_and_check(nodes, "over-sasl-scram")
