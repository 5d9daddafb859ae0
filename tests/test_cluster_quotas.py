"""Client quotas in a cluster: altered through one broker (forwarded to the active controller),
they are replicated by the metadata quorum, so every broker describes them, also after the whole
cluster restarts, and a broker that is not the controller throttles by them."""

from __future__ import annotations

from clients import wait_until
from cluster import create_topic, restart_cluster, start_cluster, wait_brokers
from test_quotas import NONE, QUOTA_BYTES, QUOTA_CONFIG, Quotas, entity, key, produce_all


def described(node) -> dict:
    q = Quotas(node.port)
    try:
        code, _, entries = q.describe()
        assert code == NONE
        return entries
    finally:
        q.close()


def test_quotas_reach_every_broker_and_survive_a_cluster_restart(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[QUOTA_CONFIG] * 3)
    wait_brokers(nodes)
    want = {key(client_id="slow-producer"): {"producer_byte_rate": float(QUOTA_BYTES)}}
    # Altered through the last node: a follower of the quorum forwards it to the leader.
    q = Quotas(nodes[-1].port)
    try:
        assert [c for _, c, _ in q.alter([(entity(client_id="slow-producer"), {"producer_byte_rate": QUOTA_BYTES})])] == [NONE]
    finally:
        q.close()
    for n in nodes:
        wait_until(lambda: described(n) == want, f"{n.bootstrap} to describe the quota", timeout_s=30)

    restart_cluster(nodes)
    wait_brokers(nodes)
    for n in nodes:
        wait_until(lambda: described(n) == want, f"{n.bootstrap} to describe the quota after the restart", timeout_s=30)
    # Every broker enforces it: a one-partition topic lives on one of them, whichever it is.
    create_topic(nodes[0], "cluster-quota", 1)
    throttled = produce_all(nodes[0].bootstrap, "cluster-quota", "slow-producer")
    assert any(t > 0 for t in throttled), throttled
