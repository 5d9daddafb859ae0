#!/bin/bash
# usage: fr.sh LABEL BIN -- fresh shardlog, half-1k-acks-all at 120,000 records/s for 30 s
label=$1; bin=$2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --topic half-$label --rate 120000 --warmup-s 5 --duration-s 30 -q -o ./$label.json > $label.out 2>&1
kill $pid; wait $pid 2>/dev/null; rm -rf ./d
echo "$label $(grep -E '^produce' $label.out | tr '\n' ' ')"
