#!/bin/bash
# usage: kcs.sh LABEL -- Kafka 4.1 under half-1k-acks-all at RATE (138,000) records/s for 25 s; perf stat (context switches, faults, task clock) of the broker over 10 s from 15 s in
export LOG_DIR=/tmp/kq/logs; label=$1; B=127.0.0.1:19092; rm -rf /tmp/kq/data; cd /tmp/b13
/work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties --standalone > /dev/null 2>&1
KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > $label.broker.log 2>&1 &
sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.3; done
/work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic t-$label --partitions 16 > /dev/null 2>&1; sleep 2
(sleep 15; perf stat -e page-faults,context-switches,task-clock -p $pid -o $label.perfstat -- sleep 10 > /dev/null 2>&1) & sp=$!
/tmp/b13/bench run /work/main/bench/workloads/half-1k-acks-all.toml -b $B --topic t-$label --rate ${RATE:-138000} --warmup-s 5 --duration-s 25 -q -o ./$label.json > $label.out 2>&1
wait $sp
/work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done; rm -rf /tmp/kq/data
echo "$label $(grep -E '^produce latency' $label.out)"; grep -E "faults|switches|task-clock" $label.perfstat
