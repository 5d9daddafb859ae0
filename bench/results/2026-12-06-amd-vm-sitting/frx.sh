#!/bin/bash
# usage: frx.sh LABEL BIN -- half-1k-acks-all at RATE (138,000) records/s for 25 s (5 s warmup) against a fresh shardlog with the admin listener; broker CPU ticks over the run, and from its metrics at the end: cross-shard calls per shard, Fetch and Produce requests
label=$1; bin=$2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d --config /tmp/lt/base.properties --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --rate ${RATE:-138000} --warmup-s 5 --duration-s 25 -q -o ./$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
curl -s http://127.0.0.1:19744/metrics > $label.metrics
kill $pid; wait $pid 2>/dev/null; rm -rf ./d
echo "$label ticks=$((c1-c0)) $(grep -E '^shardlog_cross_shard_calls_total|^shardlog_requests_total\{api="(Fetch|Produce)"' $label.metrics | sed 's/shardlog_//; s/_total//' | tr '\n' ' ') $(grep -E '^produce latency' $label.out)"
