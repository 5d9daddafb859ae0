#!/bin/bash
# usage: run.sh LABEL BIN WORKLOAD [shardlog args...]
label=$1; bin=$2; wl=$3; shift 3
rm -rf /tmp/lat/data; mkdir -p /tmp/lat/data
$bin --data-dir /tmp/lat/data --listeners PLAINTEXT://127.0.0.1:19800 "$@" > /tmp/lat/$label.log 2>&1 &
pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19800) 2>/dev/null && break; sleep 0.2; done
/work/main/target/release/shardlog-bench run $wl -b 127.0.0.1:19800 --rate 120000 --warmup-s 5 --duration-s 20 -q -o /tmp/lat/$label.json > /tmp/lat/$label.out 2>&1
curl -s 127.0.0.1:9644/metrics > /tmp/lat/$label.metrics
kill $pid; wait $pid 2>/dev/null; rm -rf /tmp/lat/data
echo "$label $(grep -E '^produce latency' /tmp/lat/$label.out)"
