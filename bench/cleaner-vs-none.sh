#!/usr/bin/env bash
# Produce latency with the log cleaner compacting a topic continuously, against the same run
# with log.cleaner.enable=false: alternating rounds, a fresh broker and data directory each.
#
#   bench/cleaner-vs-none.sh [ROUNDS] [OUT_DIR]      (defaults: 3, /tmp/cleaner-vs-none)
#   CLEANER_IO_MAX_BYTES_PER_SECOND=2097152 bench/cleaner-vs-none.sh 1 /tmp/cvn-throttled   (a rate bound)
#
# Needs target/release/shardlog and target/release/shardlog-bench. Each run: start the broker
# (2 shards), create the compacted topic (segment.bytes 256 KiB, min.cleanable.dirty.ratio 0.01,
# min.compaction.lag.ms 5 s so the tail consumer never reads behind the cleaner), run
# bench/workloads/compacted-keys.toml against it, read the cleaner's counters from /metrics, stop
# the broker. Prints one line per run and the medians per mode; JSON results stay in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-/tmp/cleaner-vs-none}
PORT=${PORT:-19700}
ADMIN_PORT=${ADMIN_PORT:-19701}
TOPIC=compacted-bench
mkdir -p "$OUT"

run_one() { # mode round
    local mode=$1 round=$2 data="$OUT/data-$1-$2" props="$OUT/broker-$1.properties"
    rm -rf "$data"
    cat > "$props" <<PROPS
log.retention.check.interval.ms=500
admin.listeners=127.0.0.1:$ADMIN_PORT
log.cleaner.enable=$([ "$mode" = cleaner ] && echo true || echo false)
${CLEANER_IO_MAX_BYTES_PER_SECOND:+log.cleaner.io.max.bytes.per.second=$CLEANER_IO_MAX_BYTES_PER_SECOND}
PROPS
    target/release/shardlog --data-dir "$data" --listeners "PLAINTEXT://127.0.0.1:$PORT" --config "$props" > "$OUT/broker-$mode-$round.log" 2>&1 &
    local broker=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    target/release/shardlog topic create "$TOPIC" --bootstrap-server "127.0.0.1:$PORT" --partitions 4 \
        --config cleanup.policy=compact --config segment.bytes=262144 --config min.cleanable.dirty.ratio=0.01 \
        --config min.compaction.lag.ms=5000 --config delete.retention.ms=0 > /dev/null
    local rc=0
    target/release/shardlog-bench run bench/workloads/compacted-keys.toml -b "127.0.0.1:$PORT" --topic "$TOPIC" -q \
        -o "$OUT/$mode-$round.json" > "$OUT/bench-$mode-$round.txt" 2>&1 || rc=$?
    # (Each of these may fail without ending the script: the cleaner renames files under du.)
    local compacted passes size
    compacted=$(curl -s -m 10 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v t="$TOPIC" 'index($0, "shardlog_partition_records_compacted_total{topic=\"" t "\"") == 1 {s += $2} END {print s + 0}' || true)
    kill "$broker"; wait "$broker" || true
    passes=$(grep -c "compacted topic=$TOPIC" "$OUT/broker-$mode-$round.log" || true)
    size=$( (du -sk "$data/$TOPIC"-* 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
    python3 - "$OUT/$mode-$round.json" "$mode" "$round" "$rc" "$compacted" "$passes" "$size" <<'PY'
import json, sys
path, mode, round_, rc, compacted, passes, size = sys.argv[1:]
d = json.load(open(path))
p, e = d["produce_latency"], d["e2e_latency"]
print(f"{mode:8} round {round_}: produce p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f} p99.9 {p['p999_ms']:.2f} max {p['max_ms']:.2f} ms | "
      f"e2e p99 {e['p99_ms']:.2f} ms | {d['throughput']['produce_records_per_s']:.0f} rec/s | books {'ok' if d['books']['ok'] else 'FAIL'} (exit {rc}) | "
      f"cleaner passes {passes}, records removed {compacted}, topic on disk {size} KiB")
PY
}

for round in $(seq "$ROUNDS"); do
    # Alternate which mode goes first, so drift on the machine does not favour one.
    if [ $((round % 2)) = 1 ]; then order="cleaner none"; else order="none cleaner"; fi
    for mode in $order; do run_one "$mode" "$round"; done
done | tee "$OUT/runs.txt"

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for mode in ("cleaner", "none"):
    runs = [json.load(open(f"{out}/{mode}-{r}.json")) for r in range(1, rounds + 1)]
    med = lambda f: statistics.median(f(d) for d in runs)
    print(f"median {mode:8}: produce p50 {med(lambda d: d['produce_latency']['p50_ms']):.2f} ms, p99 {med(lambda d: d['produce_latency']['p99_ms']):.2f} ms, "
          f"p99.9 {med(lambda d: d['produce_latency']['p999_ms']):.2f} ms, e2e p99 {med(lambda d: d['e2e_latency']['p99_ms']):.2f} ms ({rounds} runs)")
PY
