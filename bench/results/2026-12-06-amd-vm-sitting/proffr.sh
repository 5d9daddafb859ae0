#!/bin/bash
# usage: proffr.sh LABEL BIN -- half-1k-acks-all at RATE (138,000) records/s for 40 s; perf record of the broker for 8 s from 25 s in (the batch cache is full by then), perf stat over the run
label=$1; bin=$2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d ${CORES:+--cores $CORES} --config /tmp/lt/base.properties --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 25; perf record -F 999 -g -p $pid -o /tmp/b13/$label.perf.data -- sleep 8 >/dev/null 2>&1) & rp=$!
perf stat -e page-faults,context-switches,task-clock -p $pid -o /tmp/b13/$label.perfstat & ps=$!
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --rate ${RATE:-138000} --warmup-s 5 --duration-s 35 -q -o /tmp/b13/$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
curl -s http://127.0.0.1:19744/metrics > $label.metrics
wait $rp; kill -INT $ps; wait $ps
echo "$label ticks=$((c1-c0)) $(grep -E '^produce' $label.out | tr '\n' ' ')"
grep -E "faults|switches|task-clock" /tmp/b13/$label.perfstat
kill $pid; wait $pid; rm -rf /tmp/b13/d
