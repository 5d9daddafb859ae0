#!/bin/bash
# usage: fr1.sh LABEL BIN CORES -- fresh shardlog on the given cores, half-1k-acks-all at RATE (default 100,000) records/s for 30 s
label=$1; bin=$2; cores=$3; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d --cores $cores --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --topic half-$label --rate ${RATE:-100000} --warmup-s 5 --duration-s 30 -q -o ./$label.json > $label.out 2>&1
kill $pid; wait $pid 2>/dev/null; rm -rf ./d
echo "$label $(grep -E '^produce' $label.out | tr '\n' ' ')"
