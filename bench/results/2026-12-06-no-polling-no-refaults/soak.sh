#!/bin/bash
# usage: soak.sh LABEL BIN DUR -- max-1k-acks-all for DUR s, cache 256 MiB per shard; RSS sampled every 5 s
label=$1; bin=$2; dur=$3
cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d --listeners PLAINTEXT://127.0.0.1:19700 --config /tmp/b13/c256.properties > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(while kill -0 $pid 2>/dev/null; do awk '/VmRSS/{printf "%d ", $2/1024}' /proc/$pid/status 2>/dev/null; sleep 5; done) > $label.rss & sp=$!
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o /tmp/b13/$label.json > $label.out 2>&1
hwm=$(awk '/VmHWM/{print int($2/1024)}' /proc/$pid/status)
kill $pid; wait $pid; kill $sp 2>/dev/null; rm -rf /tmp/b13/d
echo "$label hwm_mib=$hwm rss_mib_every_5s: $(cat $label.rss) | $(grep -E 'produce:' $label.out)"
