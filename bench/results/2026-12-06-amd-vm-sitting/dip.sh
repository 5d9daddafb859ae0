#!/bin/bash
# usage: dip.sh LABEL BIN -- max-1k-acks-all for 30 s with the admin listener; the broker's metrics every second to LABEL.m/N, progress to LABEL.err
label=$1; bin=$2; cd /tmp/b13; rm -rf d $label.m; mkdir d $label.m
$bin --data-dir ./d --config /tmp/lt/base.properties --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
( for i in $(seq 40); do curl -s http://127.0.0.1:19744/metrics > $label.m/$i; echo "$i $(date +%s.%N) $(awk '{print $14+$15, $10}' /proc/$pid/stat)" >> $label.m/ticks; sleep 1; done ) & mp=$!
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s 30 -o ./$label.json > $label.out 2> $label.err
kill $mp; kill $pid; wait $pid; rm -rf ./d
tr '\r' '\n' < $label.err | grep -E "^ +[0-9]+s" | awk '{print $1":"$6}' | tr '\n' ' '; echo
