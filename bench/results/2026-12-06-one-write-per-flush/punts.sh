#!/bin/bash
label=$1; bin=$2; datadir=${DATADIR:-/tmp/lt/d}; shift 2
rm -rf $datadir; mkdir -p $datadir
$bin --data-dir $datadir --listeners PLAINTEXT://127.0.0.1:19700 --config /tmp/lt/${CFG:-base}.properties "$@" > /tmp/lt/$label.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 12; perf record -e io_uring:io_uring_queue_async_work -p $pid -o /tmp/lt/$label.tp.data -- sleep 3 2>/dev/null >/dev/null) & rp=$!
perf stat -e page-faults,context-switches,task-clock -p $pid -o /tmp/lt/$label.perfstat &  ps=$!
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b 127.0.0.1:19700 --topic half-$label --rate 120000 --warmup-s 5 --duration-s ${DUR:-30} -q -o /tmp/lt/$label.json > /tmp/lt/$label.out 2>&1
wait $rp; kill -INT $ps; wait $ps
curl -s 127.0.0.1:19744/metrics > /tmp/lt/$label.metrics
kill $pid; wait $pid 2>/dev/null; rm -rf $datadir
echo "$label $(grep -E '^produce' /tmp/lt/$label.out | tr '\n' ' ')"
grep -E "faults|switches|task-clock" /tmp/lt/$label.perfstat
perf script -i /tmp/lt/$label.tp.data 2>/dev/null | grep -o "opcode [A-Z_]*" | sort | uniq -c
