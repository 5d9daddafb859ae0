#!/bin/bash
# usage: frk.sh LABEL -- fresh Kafka 4.1, same load
export LOG_DIR=/tmp/kq/logs; label=$1; B=127.0.0.1:19092; rm -rf /tmp/kq/data; cd /tmp/b13
/work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties --standalone > /dev/null 2>&1
KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > $label.broker.log 2>&1 &
sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.3; done
/work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic half-$label --partitions 16 > /dev/null 2>&1; sleep 2
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b $B --topic half-$label --rate 120000 --warmup-s 5 --duration-s 30 -q -o ./$label.json > $label.out 2>&1
/work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done; rm -rf /tmp/kq/data
echo "$label $(grep -E '^produce' $label.out | tr '\n' ' ')"
