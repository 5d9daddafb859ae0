#!/bin/bash
# usage: max.sh LABEL BIN -- fresh shardlog, max-1k-acks-all for 15 s; broker CPU ticks and the client CPU (/usr/bin/time); the count of unwritten extents left in the segments (filefrag) goes to LABEL.unw, not used in the results
label=$1; bin=$2; dur=15
cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o ./$label.time /tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o ./$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "$label ticks=$((c1-c0)) client_s=$(awk "{print \$1+\$2}" ./$label.time) $(grep -E 'produce:' $label.out)"
filefrag -v d/*/*.log 2>/dev/null | grep -c unwritten > $label.unw; kill $pid; wait $pid; rm -rf ./d
