#!/bin/bash
# usage: sl.sh LABEL BIN  (fresh shardlog, half-1k-acks-all at 120,000 records/s)
label=$1; bin=$2
rm -rf /tmp/fr/d; mkdir -p /tmp/fr/d
$bin --data-dir /tmp/fr/d --listeners PLAINTEXT://127.0.0.1:19700 > /tmp/fr/$label.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
/work/main/target/release/shardlog-bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --topic half-$label --rate 120000 --warmup-s 5 --duration-s 30 -q -o /tmp/fr/$label.json > /tmp/fr/$label.out 2>&1
kill $pid; wait $pid 2>/dev/null; rm -rf /tmp/fr/d
echo "$label $(grep -E '^produce' /tmp/fr/$label.out | tr '\n' ' ')"
