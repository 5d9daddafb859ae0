#!/usr/bin/env bash
# Controller failover time: starts a local three-node cluster (scripts/cluster), then KILLS
# times kills -9 the active controller, measures how long until both survivors name one new
# leader (polling their /v1/status every 20 ms), and restarts the killed node before the next
# round. Prints each round and the median and max in ms.
#
#   bench/cluster-failover.sh [KILLS] [OUT_DIR]        (defaults: 20, /tmp/cluster-failover)
#
# The quorum's timeouts are the cluster's: Kafka's defaults unless SHARDLOG_CLUSTER_PROPERTIES
# sets controller.quorum.fetch.timeout.ms / controller.quorum.election.timeout.ms.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS="${1:-20}"
OUT="${2:-/tmp/cluster-failover}"
export SHARDLOG_CLUSTER_DIR="$OUT/cluster"
ADMIN_BASE=19290
rm -rf "$OUT" && mkdir -p "$OUT"
scripts/cluster start 3 >/dev/null
trap 'scripts/cluster stop >/dev/null 2>&1 || true' EXIT

leader_seen_by() {
    curl -s --max-time 1 "http://127.0.0.1:$((ADMIN_BASE + $1))/v1/status" | python3 -c 'import json,sys; q=json.load(sys.stdin)["quorum"]; print(q["leader"] if q["leader"] is not None else "")' 2>/dev/null || true
}

now_ms() { date +%s%3N; }

results=()
for round in $(seq 1 "$KILLS"); do
    leader=""
    until [[ -n "$leader" && "$(leader_seen_by 1)" == "$leader" && "$(leader_seen_by 2)" == "$leader" && "$(leader_seen_by 3)" == "$leader" ]]; do
        leader="$(leader_seen_by 1)"
        sleep 0.1
    done
    victim="$(cat "$SHARDLOG_CLUSTER_DIR/node-$leader/pid")"
    kill -9 "$victim"
    start="$(now_ms)"
    survivors=()
    for i in 1 2 3; do [[ "$i" != "$leader" ]] && survivors+=("$i"); done
    while true; do
        a="$(leader_seen_by "${survivors[0]}")"
        b="$(leader_seen_by "${survivors[1]}")"
        if [[ -n "$a" && "$a" == "$b" && "$a" != "$leader" ]]; then break; fi
        sleep 0.02
    done
    elapsed=$(( $(now_ms) - start ))
    results+=("$elapsed")
    echo "round $round: killed node $leader, node $a leads after $elapsed ms"
    # A killed process can take a while to go (its io_uring is torn down): restart it only
    # once it is gone, or scripts/cluster takes it for running.
    while kill -0 "$victim" 2>/dev/null; do sleep 0.05; done
    scripts/cluster start 3 >/dev/null
done
printf '%s\n' "${results[@]}" | sort -n > "$OUT/failover-ms.txt"
median="$(awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}' "$OUT/failover-ms.txt")"
max="$(tail -1 "$OUT/failover-ms.txt")"
echo "failover over $KILLS kills: median $median ms, max $max ms (each in $OUT/failover-ms.txt)"
