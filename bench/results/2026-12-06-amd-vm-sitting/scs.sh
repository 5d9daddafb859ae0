#!/bin/bash
# usage: scs.sh LABEL BIN -- the same for shardlog (2 shards, defaults)
label=$1; bin=$2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 15; perf stat -e page-faults,context-switches,task-clock -p $pid -o $label.perfstat -- sleep 10 > /dev/null 2>&1) & sp=$!
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --rate ${RATE:-138000} --warmup-s 5 --duration-s 25 -q -o ./$label.json > $label.out 2>&1
wait $sp; kill $pid; wait $pid 2>/dev/null; rm -rf ./d
echo "$label $(grep -E '^produce latency' $label.out)"; grep -E "faults|switches|task-clock" $label.perfstat
