#!/usr/bin/env bash
# Produce latency and shard stalls while segments roll every few seconds, for two broker
# binaries side by side (e.g. before and after a change to the segment seal): alternating rounds,
# a fresh broker and data directory each.
#
#   bench/roll-stalls.sh BEFORE_BIN AFTER_BIN [ROUNDS] [OUT_DIR]   (defaults: 3, /tmp/roll-stalls)
#   RATE=20000 DURATION_S=30 SEGMENT_BYTES=2097152 bench/roll-stalls.sh ...
#
# Needs target/release/shardlog-bench. Each run: start the broker (2 shards), create a topic of
# 16 partitions with a small segment.bytes (at RATE records/s of 1 KiB each partition rolls a
# segment every SEGMENT_BYTES*16/(RATE*1024) seconds), run bench/workloads/half-1k-acks-all.toml
# at RATE, read the shard stall counter (timer wake-ups more than 10 ms late) and the scheduling
# lag from /metrics, stop the broker. Prints one line per run and the medians per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bench/roll-stalls.sh BEFORE_BIN AFTER_BIN [ROUNDS] [OUT_DIR]}
AFTER=${2:?usage: bench/roll-stalls.sh BEFORE_BIN AFTER_BIN [ROUNDS] [OUT_DIR]}
ROUNDS=${3:-3}
OUT=${4:-/tmp/roll-stalls}
RATE=${RATE:-20000}
DURATION_S=${DURATION_S:-30}
SEGMENT_BYTES=${SEGMENT_BYTES:-2097152}
PORT=${PORT:-19710}
ADMIN_PORT=${ADMIN_PORT:-19711}
TOPIC=roll-bench
mkdir -p "$OUT"

run_one() { # label binary round
    local label=$1 bin=$2 round=$3 data="$OUT/data-$1-$3" props="$OUT/broker.properties"
    rm -rf "$data"
    printf 'admin.listeners=127.0.0.1:%s\n' "$ADMIN_PORT" > "$props"
    "$bin" --data-dir "$data" --listeners "PLAINTEXT://127.0.0.1:$PORT" --config "$props" > "$OUT/broker-$label-$round.log" 2>&1 &
    local broker=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    "$bin" topic create "$TOPIC" --bootstrap-server "127.0.0.1:$PORT" --partitions 16 --config segment.bytes="$SEGMENT_BYTES" > /dev/null
    local before_stalls after_stalls segments rc=0
    before_stalls=$(curl -s -m 10 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^shardlog_shard_stalls_total/ {s += $2} END {print s + 0}')
    target/release/shardlog-bench run bench/workloads/half-1k-acks-all.toml -b "127.0.0.1:$PORT" --topic "$TOPIC" -q \
        --rate "$RATE" --warmup-s 3 --duration-s "$DURATION_S" -o "$OUT/$label-$round.json" > "$OUT/bench-$label-$round.txt" 2>&1 || rc=$?
    after_stalls=$(curl -s -m 10 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^shardlog_shard_stalls_total/ {s += $2} END {print s + 0}')
    kill "$broker"; wait "$broker" || true
    segments=$(ls "$data"/"$TOPIC"-*/*.log 2>/dev/null | wc -l)
    python3 - "$OUT/$label-$round.json" "$label" "$round" "$rc" "$((after_stalls - before_stalls))" "$segments" <<'PY'
import json, sys
path, label, round_, rc, stalls, segments = sys.argv[1:]
d = json.load(open(path))
p = d["produce_latency"]
print(f"{label:8} round {round_}: produce p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f} p99.9 {p['p999_ms']:.2f} max {p['max_ms']:.2f} ms | "
      f"{d['throughput']['produce_records_per_s']:.0f} rec/s | books {'ok' if d['books']['ok'] else 'FAIL'} (exit {rc}) | "
      f"shard stalls {stalls} | segments {segments}")
json.dump({"stalls": int(stalls), "segments": int(segments)}, open(path + ".stalls", "w"))
PY
}

for round in $(seq "$ROUNDS"); do
    # Alternate which binary goes first, so drift on the machine does not favour one.
    if [ $((round % 2)) = 1 ]; then order="before after"; else order="after before"; fi
    for label in $order; do
        if [ "$label" = before ]; then run_one before "$BEFORE" "$round"; else run_one after "$AFTER" "$round"; fi
    done
done | tee "$OUT/runs.txt"

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for label in ("before", "after"):
    runs = [json.load(open(f"{out}/{label}-{r}.json")) for r in range(1, rounds + 1)]
    stalls = [json.load(open(f"{out}/{label}-{r}.json.stalls"))["stalls"] for r in range(1, rounds + 1)]
    med = lambda f: statistics.median(f(d) for d in runs)
    print(f"median {label:6}: produce p50 {med(lambda d: d['produce_latency']['p50_ms']):.2f} ms, p99 {med(lambda d: d['produce_latency']['p99_ms']):.2f} ms, "
          f"p99.9 {med(lambda d: d['produce_latency']['p999_ms']):.2f} ms, max {med(lambda d: d['produce_latency']['max_ms']):.2f} ms, "
          f"shard stalls {statistics.median(stalls)} ({rounds} runs)")
PY
