#!/bin/bash
label=$1; bin=$2; dur=12
cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 9; perf record -e io_uring:io_uring_submit_req -p $pid -o /tmp/b13/$label.op.data -- sleep 1 >/dev/null 2>&1) & rp=$!
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o /tmp/b13/$label.json > $label.out 2>&1
wait $rp
kill $pid; wait $pid; rm -rf /tmp/b13/d
perf script -i /tmp/b13/$label.op.data 2>/dev/null | grep -o "opcode [A-Z_]*" | sort | uniq -c | sort -rn
perf script -i /tmp/b13/$label.op.data 2>/dev/null | head -3
