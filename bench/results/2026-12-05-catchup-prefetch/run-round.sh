#!/bin/bash
# usage: cu.sh sl|k ROUND [BIN] [perf]
set -u
who=$1; r=$2; bin=${3:-/work/main/target/release/shardlog}; prof=${4:-}
out=/tmp/cu/$who-$r; mkdir -p $out
if [ $who = sl ]; then
  B=127.0.0.1:19700; rm -rf /tmp/cu/sl; mkdir -p /tmp/cu/sl
  $bin --data-dir /tmp/cu/sl --listeners PLAINTEXT://127.0.0.1:19700 > $out/broker.log 2>&1 &
  pid=$!
else
  B=127.0.0.1:19092; rm -rf /tmp/kq/data
  /work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties > /dev/null 2>&1
  KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > $out/broker.log 2>&1 &
  sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
fi
for i in $(seq 100); do (echo > /dev/tcp/${B%:*}/${B#*:}) 2>/dev/null && break; sleep 0.3; done
if [ $who = k ]; then /work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic c2m --partitions 16 > /dev/null 2>&1; sleep 2; fi
/work/main/target/release/shardlog-bench run /work/main/bench/workloads/catchup.toml -b $B --topic c2m -q -o $out/produce-and-read.json > $out/bench.out 2>&1
sync; echo 3 > /proc/sys/vm/drop_caches
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
perfpid=""
if [ -n "$prof" ]; then (sleep 5; perf record -F 999 -g -p $pid -o $out/cold.perf -- sleep 5 > /dev/null 2>&1) & perfpid=$!; fi
/work/kafka/bin/kafka-consumer-perf-test.sh --bootstrap-server $B --topic c2m --messages 2000000 --timeout 60000 --group cold-$r --fetch-size 1048576 > $out/cold.txt 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
[ -n "$perfpid" ] && wait $perfpid
echo "cold_cpu_ticks=$((c1-c0))" > $out/cpu.txt
/work/kafka/bin/kafka-consumer-perf-test.sh --bootstrap-server $B --topic c2m --messages 2000000 --timeout 60000 --group warm-$r --fetch-size 1048576 > $out/warm.txt 2>&1
if [ $who = sl ]; then kill $pid; wait $pid 2>/dev/null; rm -rf /tmp/cu/sl; else /work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done; rm -rf /tmp/kq/data; fi
echo "$who $r: $(grep -A1 'start.time' $out/cold.txt | tail -1)"
