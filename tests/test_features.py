"""Feature versions (KIP-584) in ApiVersions v3+: what `kafka-features.sh describe` and Kafka 4
clients read. The supported ranges claim only what shardlog does, and the finalized levels are
cluster metadata: recorded in the metadata log, the same on every node, kept across restarts.

confluent_kafka's AdminClient has no describe_features, so these tests send ApiVersions
themselves (kafkawire) and decode its tagged feature fields.
"""

from __future__ import annotations

import json

import kafkawire as kw
from clients import wait_until
from cluster import start_cluster, restart_cluster

# What shardlog supports (engine/src/metadata/features.rs says why each range is what it is).
SUPPORTED = {
    "metadata.version": (22, 22),  # 4.0-IV0
    "kraft.version": (0, 1),  # 1: a dynamic quorum (KIP-853), finalized only by one
    "group.version": (1, 1),  # KIP-848 consumer groups
    "transaction.version": (0, 2),  # 2: transactions v2 (KIP-890 part 2)
    "eligible.leader.replicas.version": (0, 0),
}
# Level-0 features are not in the finalized set, as in Kafka. A new cluster runs transactions v2.
FINALIZED = {"metadata.version": (22, 22), "group.version": (1, 1), "transaction.version": (2, 2)}
# A cluster that ran before feature levels were recorded keeps transactions v1 (level 0).
FINALIZED_BEFORE_FEATURES = {"metadata.version": (22, 22), "group.version": (1, 1)}

UPDATE_FEATURES = 57


def features(port: int, version: int = 3) -> kw.ApiVersionsResponse:
    """The first answer that carries finalized features (a node answers before its controller
    has applied the cluster's first records)."""
    def answered():
        with kw.Connection(port) as conn:
            response = conn.api_versions(version)
        assert response.error_code == kw.NONE
        return response if response.finalized_features_epoch >= 0 else None
    return wait_until(answered, f"ApiVersions v{version} on port {port} to carry finalized features", timeout_s=30)


def test_api_versions_carries_supported_and_finalized_features_and_keeps_them_across_a_restart(broker):
    v3, v4 = features(broker.port, 3), features(broker.port, 4)
    for response in (v3, v4):
        assert response.supported_features == SUPPORTED
        assert response.finalized_features == FINALIZED
    assert v3.finalized_features_epoch == v4.finalized_features_epoch
    # Versions before 3 have no place for features.
    with kw.Connection(broker.port) as conn:
        v2 = conn.api_versions(2)
    assert v2.error_code == kw.NONE and not v2.supported_features and v2.finalized_features_epoch == -1
    # UpdateFeatures moves transaction.version (test_update_features_...).
    assert v3.apis[UPDATE_FEATURES] == (0, 2)

    # The epoch is the metadata log index that last changed a level: a restart changes none.
    broker.restart()
    again = features(broker.port)
    assert again.finalized_features == FINALIZED
    assert again.finalized_features_epoch == v3.finalized_features_epoch


def test_a_data_dir_from_before_feature_levels_starts_and_gets_the_defaults_but_transactions_v2(broker):
    epoch = features(broker.port).finalized_features_epoch
    broker.stop()
    # The image as a version without feature levels wrote it.
    [image_path] = list(broker.data_dir.rglob("cluster-metadata.json"))
    image = json.loads(image_path.read_text())
    del image["finalized_features"], image["finalized_features_epoch"]
    image_path.write_text(json.dumps(image))
    broker.start()
    after = features(broker.port)
    assert after.finalized_features == FINALIZED_BEFORE_FEATURES
    # Written again by the controller as new records, so the epoch moved on.
    assert after.finalized_features_epoch > epoch
    # The operator moves it to transactions v2 (kafka-features.sh upgrade --feature
    # transaction.version=2): the upgrade path of a cluster from before.
    assert update_features(broker.port, {"transaction.version": (2, UPGRADE)}) == (kw.NONE, None, ["transaction.version"])
    assert features(broker.port).finalized_features == FINALIZED


UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE = 1, 2, 3
INVALID_UPDATE_VERSION, CLUSTER_AUTHORIZATION_FAILED = 95, 31


def update_features(port: int, updates: dict[str, tuple[int, int]], validate_only: bool = False) -> tuple[int, str | None, list[str]]:
    """UpdateFeatures v1 ({feature: (level, upgrade type)}): (error code, message, features with
    a result)."""
    body = kw.i32(60_000) + kw.uvarint(len(updates) + 1)
    for name, (level, upgrade_type) in updates.items():
        body += kw.compact_string(name) + kw.i16(level) + kw.i8(upgrade_type) + kw.TAGGED_FIELDS_EMPTY
    body += kw.i8(1 if validate_only else 0) + kw.TAGGED_FIELDS_EMPTY
    with kw.Connection(port) as conn:
        raw = conn.request(lambda cid: kw.frame(kw.request_header(UPDATE_FEATURES, 1, cid, flexible=True) + body))
    r = kw.Reader(raw)
    r.skip_tagged_fields()
    r.i32()  # throttle
    code = r.i16()
    def compact_str():
        n = r.uvarint() - 1
        return None if n < 0 else r.take(n).decode()
    message = compact_str()
    names = []
    for _ in range(r.uvarint() - 1):
        names.append(compact_str())
        assert r.i16() == kw.NONE and compact_str() is None
        r.skip_tagged_fields()
    return code, message, names


def test_update_features_moves_transaction_version_by_kafkas_rules(broker):
    tv = "transaction.version"
    # A lower level needs a downgrade type; a refusal is all or nothing, the top-level error.
    code, message, names = update_features(broker.port, {tv: (1, UPGRADE)})
    assert code == INVALID_UPDATE_VERSION and "without setting the upgrade type" in message and names == [], message
    code, message, _ = update_features(broker.port, {"group.version": (1, UPGRADE), tv: (3, UPGRADE)})
    assert code == INVALID_UPDATE_VERSION and "only supports versions 0-2" in message, message
    code, message, _ = update_features(broker.port, {"kraft.version": (1, UPGRADE)})
    assert code == INVALID_UPDATE_VERSION and "settled" in message, message
    code, message, _ = update_features(broker.port, {"no.such.feature": (1, UPGRADE)})
    assert code == INVALID_UPDATE_VERSION, message
    assert features(broker.port).finalized_features == FINALIZED
    # Validate-only changes nothing; a safe downgrade to 0 takes the feature out of the set.
    assert update_features(broker.port, {tv: (0, SAFE_DOWNGRADE)}, validate_only=True) == (kw.NONE, None, [tv])
    assert features(broker.port).finalized_features == FINALIZED
    before = features(broker.port).finalized_features_epoch
    assert update_features(broker.port, {tv: (0, SAFE_DOWNGRADE)}) == (kw.NONE, None, [tv])
    after = features(broker.port)
    assert after.finalized_features == FINALIZED_BEFORE_FEATURES and after.finalized_features_epoch > before
    code, message, _ = update_features(broker.port, {tv: (2, SAFE_DOWNGRADE)})
    assert code == INVALID_UPDATE_VERSION and "newer version" in message, message
    assert update_features(broker.port, {tv: (2, UPGRADE)}) == (kw.NONE, None, [tv])
    # Kept across a restart: it is cluster metadata.
    broker.restart()
    assert features(broker.port).finalized_features == FINALIZED


def test_every_node_of_a_cluster_reports_the_same_finalized_levels_and_epoch(broker_factory):
    nodes = start_cluster(broker_factory)
    seen = [features(n.port) for n in nodes]
    assert all(s.finalized_features == FINALIZED and s.supported_features == SUPPORTED for s in seen)
    epochs = {s.finalized_features_epoch for s in seen}
    assert len(epochs) == 1, f"nodes disagree on the finalized features' epoch: {epochs}"
    restart_cluster(nodes)
    assert {features(n.port).finalized_features_epoch for n in nodes} == epochs
