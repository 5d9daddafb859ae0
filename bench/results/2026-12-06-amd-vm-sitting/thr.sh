#!/bin/bash
# usage: thr.sh LABEL BIN -- half-1k-acks-all at RATE (138,000) records/s for 30 s; per-thread context switches and CPU ticks over 10 s from 15 s in
label=$1; bin=$2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d ${CORES:+--cores $CORES} --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
snap() { for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END{print v, n}' $t/status) $(awk '{print $14+$15}' $t/stat)"; done; }
( sleep 15; snap > $label.s0; sleep 10; snap > $label.s1 ) & sp=$!
/tmp/b13/bench run ${WL:-/work/main/bench/workloads/half-1k-acks-all.toml} -b 127.0.0.1:19700 --rate ${RATE:-138000} --warmup-s 5 --duration-s 25 -q -o /tmp/b13/$label.json > $label.out 2>&1
wait $sp
echo "$label $(grep -E '^produce' $label.out | tr '\n' ' ')"
join <(sort $label.s0) <(sort $label.s1) | awk '{printf "%s %s vol=%d invol=%d ticks=%d\n", $1, $2, $7-$3, $8-$4, $9-$5}' | sort -t= -k2 -n -r | head -20
kill $pid; wait $pid; rm -rf /tmp/b13/d
