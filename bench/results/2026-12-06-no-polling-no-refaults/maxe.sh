#!/bin/bash
# usage: maxe.sh LABEL BIN [ENV...] -- like max.sh, with environment for the broker, and page faults
label=$1; bin=$2; shift 2; dur=15
cd /tmp/b13; rm -rf d; mkdir d
env "$@" $bin --data-dir /tmp/b13/d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
c0=$(awk '{print $14+$15}' /proc/$pid/stat); f0=$(awk '{print $10}' /proc/$pid/stat)
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o /tmp/b13/$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat); f1=$(awk '{print $10}' /proc/$pid/stat)
rss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
echo "$label ticks=$((c1-c0)) minflt=$((f1-f0)) hwm_kb=$rss $(grep -E 'produce:' $label.out)"
kill $pid; wait $pid; rm -rf /tmp/b13/d
