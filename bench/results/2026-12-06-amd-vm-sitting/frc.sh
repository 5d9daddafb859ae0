#!/bin/bash
# usage: frc.sh LABEL BIN [PROPS] -- half-1k-acks-all at RATE (138,000) records/s for 25 s (5 s warmup) against a fresh shardlog with the config file PROPS; broker CPU ticks over the run
label=$1; bin=$2; props=$3; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d ${props:+--config $props} --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/b13/bench run ${WL:-/work/main/bench/workloads/half-1k-acks-all.toml} -b 127.0.0.1:19700 --rate ${RATE:-138000} --warmup-s 5 --duration-s 25 -q -o ./$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null; rm -rf ./d
echo "$label ticks=$((c1-c0)) $(grep -E '^produce latency' $label.out)"
