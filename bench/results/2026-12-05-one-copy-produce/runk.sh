#!/bin/bash
# usage: runk.sh ROUND : Kafka on the same workload
r=$1; B=127.0.0.1:19092
rm -rf /tmp/kq/data
/work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties > /dev/null 2>&1
KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > /tmp/ab/kafka-$r.log 2>&1 &
sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.3; done
/work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic one-$r --partitions 1 > /dev/null 2>&1; sleep 2
before=$(awk '{print $14+$15}' /proc/$pid/stat)
/work/main/target/release/shardlog-bench run /tmp/ab/one-partition.toml -b $B --topic one-$r --warmup-s 3 --duration-s 15 -q -o /tmp/ab/kafka-$r.json > /tmp/ab/kafka-$r.out 2>&1
after=$(awk '{print $14+$15}' /proc/$pid/stat)
/work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
rm -rf /tmp/kq/data
echo "kafka $r cpu_ticks=$((after-before))" >> /tmp/ab/cpu.txt
