#!/bin/bash
# usage: prof.sh LABEL BIN -- max-1k-acks-all 15 s, perf record of the broker for 8 s mid-run, perf stat
label=$1; bin=$2; dur=15
cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 7; perf record -F 499 --call-graph dwarf,16384 -p $pid -o /tmp/b13/$label.perf.data -- sleep 3 >/dev/null 2>&1) & rp=$!
perf stat -e page-faults,context-switches,task-clock -p $pid -o /tmp/b13/$label.perfstat & ps=$!
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o /tmp/b13/$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
wait $rp; kill -INT $ps; wait $ps
echo "$label ticks=$((c1-c0)) $(grep -E 'produce:' $label.out)"
grep -E "faults|switches|task-clock" /tmp/b13/$label.perfstat
kill $pid; wait $pid; rm -rf /tmp/b13/d
