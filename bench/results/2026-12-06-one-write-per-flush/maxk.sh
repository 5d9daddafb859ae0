#!/bin/bash
# usage: maxk.sh LABEL -- fresh Kafka 4.1 (KRaft, one node), topic of 16 partitions, same load
export LOG_DIR=/tmp/kq/logs
label=$1; dur=15; B=127.0.0.1:19092; rm -rf /tmp/kq/data; cd /tmp/b13
/work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties --standalone > /dev/null 2>&1
KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > $label.broker.log 2>&1 &
sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.3; done
/work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic mk --partitions 16 > /dev/null 2>&1; sleep 2
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o ./$label.time /tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b $B --topic mk --warmup-s 3 --duration-s $dur -q -o ./$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "$label ticks=$((c1-c0)) client_s=$(awk "{print \$1+\$2}" ./$label.time) $(grep -E 'produce:' $label.out)"
/work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done; rm -rf /tmp/kq/data
