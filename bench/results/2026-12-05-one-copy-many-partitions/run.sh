#!/bin/bash
# usage: run.sh LABEL BIN [CONFIG] [duration]
label=$1; bin=$2; cfg=${3:-}; dur=${4:-15}
cd /tmp/prof; rm -rf d; mkdir d
extra=""; [ -n "$cfg" ] && extra="--config $cfg"
$bin --data-dir /tmp/prof/d --listeners PLAINTEXT://127.0.0.1:19700 $extra > $label.broker.log 2>&1 & pid=$!; sleep 1.5
(sleep $((dur-4)); perf record -F 999 -g -p $pid -o /tmp/prof/$label.data -- sleep 6 > /dev/null 2>&1) & pp=$!
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/rb/shardlog-bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o /tmp/prof/$label.json > $label.bench.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat); wait $pp
grep VmHWM /proc/$pid/status
echo "$label ticks=$((c1-c0)) $(grep -E 'produce:' $label.bench.out)"
kill $pid; wait $pid; rm -rf /tmp/prof/d
perf report -i /tmp/prof/$label.data --no-children --sort sym -g none 2>/dev/null | grep -v "^#" | grep -E "clear_page|memmove|exc_page_fault|_copy_from_iter" 
