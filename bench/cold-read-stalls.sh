#!/usr/bin/env bash
# Produce latency on one shard while other partitions of that shard serve cold catch-up reads
# and segments roll every few seconds, for two broker binaries side by side (e.g. before and
# after moving cold reads off the shard's thread): alternating rounds, a fresh broker and data
# directory each.
#
#   bench/cold-read-stalls.sh BEFORE_BIN AFTER_BIN [ROUNDS] [OUT_DIR]   (defaults: 3, /tmp/cold-read-stalls)
#   RATE=10000 DURATION_S=30 SEGMENT_BYTES=2097152 BACKLOG_RATE=100000 BACKLOG_S=8 bench/cold-read-stalls.sh ...
#
# Needs target/release/shardlog-bench, kcat, curl and python3. Each run:
# 1. starts the broker with one shard (`--cores 0`), so every partition and connection shares
#    one thread, and `log.segment.bytes=SEGMENT_BYTES` for every topic;
# 2. fills topic `cold` (8 partitions) with BACKLOG_RATE*BACKLOG_S records of 1 KiB (acks=all,
#    no reader), then drops its segment files from the page cache (posix_fadvise DONTNEED; they
#    were written with O_DIRECT, so this only undoes what a read may have brought in);
# 3. starts the catch-up readers: kcat reads `cold` from the beginning to its end, the segment
#    files are dropped from the page cache again, and again, until the run ends;
# 4. runs bench/workloads/half-1k-acks-all.toml at RATE records/s on topic `hot` (16 partitions,
#    acks=all: a roll every SEGMENT_BYTES*16/(RATE*1024) seconds per partition), and reads from
#    /metrics over it: the shard stall counter (timer wake-ups more than 10 ms late), the
#    scheduling-lag histogram's count above 4.096 ms, and the bytes read from `cold`.
# Prints one line per run and the medians per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?usage: bench/cold-read-stalls.sh BEFORE_BIN AFTER_BIN [ROUNDS] [OUT_DIR]}
AFTER=${2:?usage: bench/cold-read-stalls.sh BEFORE_BIN AFTER_BIN [ROUNDS] [OUT_DIR]}
ROUNDS=${3:-3}
OUT=${4:-/tmp/cold-read-stalls}
RATE=${RATE:-10000}
DURATION_S=${DURATION_S:-30}
SEGMENT_BYTES=${SEGMENT_BYTES:-2097152}
BACKLOG_RATE=${BACKLOG_RATE:-100000}
BACKLOG_S=${BACKLOG_S:-8}
PORT=${PORT:-19720}
ADMIN_PORT=${ADMIN_PORT:-19721}
BENCH=${BENCH:-target/release/shardlog-bench}
mkdir -p "$OUT"

metrics() { curl -s -m 10 "http://127.0.0.1:$ADMIN_PORT/metrics"; }
# Sum of a metric's samples, optionally only those whose labels contain $2.
metric_sum() { awk -v name="$1" -v label="${2:-}" '$1 ~ "^"name"({|$)" && index($1, label) {s += $2} END {printf "%.0f\n", s + 0}'; }

drop_cold_pages() { # data dir
    python3 - "$1" <<'PY'
import glob, os, sys
for path in glob.glob(os.path.join(sys.argv[1], "cold-*", "*.log")):
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        continue
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
PY
}

run_one() { # label binary round
    local label=$1 bin=$2 round=$3 data="$OUT/data-$1-$3" props="$OUT/broker.properties"
    rm -rf "$data"
    printf 'admin.listeners=127.0.0.1:%s\nlog.segment.bytes=%s\n' "$ADMIN_PORT" "$SEGMENT_BYTES" > "$props"
    "$bin" --data-dir "$data" --listeners "PLAINTEXT://127.0.0.1:$PORT" --cores 0 --config "$props" > "$OUT/broker-$label-$round.log" 2>&1 &
    local broker=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    "$bin" topic create cold --bootstrap-server "127.0.0.1:$PORT" --partitions 8 > /dev/null
    "$bin" topic create hot --bootstrap-server "127.0.0.1:$PORT" --partitions 16 > /dev/null
    "$BENCH" run bench/workloads/max-1k-acks-all.toml -b "127.0.0.1:$PORT" --topic cold --consumers 0 -q \
        --rate "$BACKLOG_RATE" --warmup-s 0 --duration-s "$BACKLOG_S" -o "$OUT/backlog-$label-$round.json" > "$OUT/backlog-$label-$round.txt" 2>&1
    drop_cold_pages "$data"
    local backlog_bytes
    backlog_bytes=$(du -sb "$data"/cold-* | awk '{s += $1} END {print s}')

    # The catch-up readers: read the whole backlog cold, again and again, until told to stop.
    local stop="$OUT/stop-$label-$round" passes="$OUT/passes-$label-$round"
    rm -f "$stop"; echo 0 > "$passes"
    (
        n=0
        while [ ! -e "$stop" ]; do
            kcat -C -b "127.0.0.1:$PORT" -t cold -o beginning -e -q -f '' -X fetch.wait.max.ms=100 > /dev/null 2>> "$OUT/kcat-$label-$round.log" || true
            n=$((n + 1)); echo "$n" > "$passes"
            drop_cold_pages "$data"
        done
    ) &
    local readers=$!
    sleep 2 # the readers are past their start-up and reading

    local m0="$OUT/metrics-$label-$round-start.txt" m1="$OUT/metrics-$label-$round-end.txt" rc=0
    metrics > "$m0"
    "$BENCH" run bench/workloads/half-1k-acks-all.toml -b "127.0.0.1:$PORT" --topic hot -q \
        --rate "$RATE" --warmup-s 3 --duration-s "$DURATION_S" -o "$OUT/$label-$round.json" > "$OUT/bench-$label-$round.txt" 2>&1 || rc=$?
    metrics > "$m1"
    touch "$stop"; wait "$readers" || true
    kill "$broker"; wait "$broker" || true

    local stalls lag_over_4ms cold_bytes segments
    stalls=$(( $(metric_sum shardlog_shard_stalls_total < "$m1") - $(metric_sum shardlog_shard_stalls_total < "$m0") ))
    # The histogram's cumulative buckets (powers of two in µs): all wake-ups minus those at most
    # 4.096 ms late.
    lag_over_4ms=$(python3 - "$m0" "$m1" <<'PY'
import re, sys
def over(path):
    total = le = 0.0
    for line in open(path):
        if line.startswith("shardlog_shard_scheduling_lag_seconds_count"):
            total += float(line.split()[-1])
        m = re.match(r'shardlog_shard_scheduling_lag_seconds_bucket\{.*le="([^"]+)".*\}\s+(\S+)', line)
        if m and m.group(1) != "+Inf" and abs(float(m.group(1)) - 0.004096) < 1e-9:
            le += float(m.group(2))
    return total - le
print(int(over(sys.argv[2]) - over(sys.argv[1])))
PY
)
    cold_bytes=$(( $(metric_sum shardlog_partition_bytes_out_total 'topic="cold"' < "$m1") - $(metric_sum shardlog_partition_bytes_out_total 'topic="cold"' < "$m0") ))
    segments=$(ls "$data"/hot-*/*.log 2>/dev/null | wc -l)
    python3 - "$OUT/$label-$round.json" "$label" "$round" "$rc" "$stalls" "$lag_over_4ms" "$cold_bytes" "$backlog_bytes" "$(cat "$passes")" "$segments" <<'PY'
import json, sys
path, label, round_, rc, stalls, lag4, cold_bytes, backlog_bytes, passes, segments = sys.argv[1:]
d = json.load(open(path))
p = d["produce_latency"]
window_s = d["workload"]["duration_s"] + d["workload"]["warmup_s"]
cold_mb_s = int(cold_bytes) / 1e6 / window_s
print(f"{label:8} round {round_}: produce p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f} p99.9 {p['p999_ms']:.2f} max {p['max_ms']:.2f} ms | "
      f"{d['throughput']['produce_records_per_s']:.0f} rec/s | books {'ok' if d['books']['ok'] else 'FAIL'} (exit {rc}) | "
      f"stalls {stalls} | lag>4ms {lag4} | cold reads {cold_mb_s:.0f} MB/s ({passes} passes of {int(backlog_bytes) / 1e6:.0f} MB) | hot segments {segments}")
json.dump({"stalls": int(stalls), "lag_over_4ms": int(lag4), "cold_mb_s": cold_mb_s, "backlog_bytes": int(backlog_bytes),
           "passes": int(passes), "segments": int(segments)}, open(path + ".extra", "w"))
PY
    rm -rf "$data"
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
    extra = [json.load(open(f"{out}/{label}-{r}.json.extra")) for r in range(1, rounds + 1)]
    med = lambda f: statistics.median(f(d) for d in runs)
    emed = lambda k: statistics.median(e[k] for e in extra)
    print(f"median {label:6}: produce p50 {med(lambda d: d['produce_latency']['p50_ms']):.2f} ms, p99 {med(lambda d: d['produce_latency']['p99_ms']):.2f} ms, "
          f"p99.9 {med(lambda d: d['produce_latency']['p999_ms']):.2f} ms, max {med(lambda d: d['produce_latency']['max_ms']):.2f} ms, "
          f"stalls {emed('stalls')}, lag>4ms {emed('lag_over_4ms')}, cold reads {emed('cold_mb_s'):.0f} MB/s ({rounds} runs)")
PY
