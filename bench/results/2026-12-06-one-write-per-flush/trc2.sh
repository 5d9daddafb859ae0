#!/bin/bash
# usage: trc2.sh LABEL BIN WORKLOAD -- a fresh shardlog under WORKLOAD for 13 s; perf stat of every ext4 and jbd2 tracepoint and block_rq_issue, system-wide, for 4 s mid-run
label=$1; bin=$2; shift 2; cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir ./d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 6; perf stat -a -e 'ext4:*' -e 'jbd2:*' -e 'block:block_rq_issue' -o $label.trc -- sleep 4) & tp=$!
/tmp/b13/bench run "$@" -b 127.0.0.1:19700 --warmup-s 3 --duration-s 10 -q -o ./$label.json > $label.out 2>&1
wait $tp; kill $pid; wait $pid; rm -rf ./d
echo "$label $(grep -E 'produce:' $label.out)"; awk '$1 ~ /^[0-9,]+$/ && $1 != "0"' $label.trc
