#!/bin/bash
# usage: one.sh sl|k LABEL WORKLOAD [RATE] -- one run of WORKLOAD (its own warmup and duration)
# against a fresh broker: shardlog (SL_BIN, 2 shards, defaults) or Apache Kafka 4.1 (KRaft, one
# node, /tmp/kq/server.properties, topic of 16 partitions created first). Prints the produce
# lines, the broker's CPU ticks (1/100 s, user+system) over the run and the client's CPU seconds.
who=$1; label=$2; workload=$3; rate=$4; cd /tmp/b13
if [ "$who" = sl ]; then
  B=127.0.0.1:19700; rm -rf d; mkdir d
  $SL_BIN --data-dir ./d --listeners PLAINTEXT://$B > $label.broker.log 2>&1 & pid=$!
  for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
else
  export LOG_DIR=/tmp/kq/logs; B=127.0.0.1:19092; rm -rf /tmp/kq/data
  /work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties --standalone > /dev/null 2>&1
  KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > $label.broker.log 2>&1 &
  sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/19092) 2>/dev/null && break; sleep 0.3; done
fi
/work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic t-$label --partitions 16 > /dev/null 2>&1; sleep 2
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o ./$label.time /tmp/b13/bench run $workload -b $B --topic t-$label ${rate:+--rate $rate} -q -o ./$label.json > $label.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
if [ "$who" = sl ]; then kill $pid; wait $pid 2>/dev/null; rm -rf ./d
else /work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done; rm -rf /tmp/kq/data; fi
echo "$label ticks=$((c1-c0)) client_s=$(awk '{print $1+$2}' ./$label.time) $(grep -E '^produce' $label.out | tr '\n' ' ')"
