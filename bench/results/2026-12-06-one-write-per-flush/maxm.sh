#!/bin/bash
# usage: maxm.sh LABEL BIN -- max-1k-acks-all for 15 s with the broker's metrics, scraped at the end
label=$1; bin=$2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d --listeners PLAINTEXT://127.0.0.1:19700 --config /tmp/lt/base.properties > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s 15 -q -o ./$label.json > $label.out 2>&1
curl -s 127.0.0.1:19744/metrics > $label.metrics; kill $pid; wait $pid; rm -rf ./d
echo "$label $(grep -E 'produce' $label.out | tr '\n' ' ')"
