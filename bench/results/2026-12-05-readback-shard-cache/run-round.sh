#!/bin/bash
# usage: run.sh sl|k LABEL [BIN] [CONFIGFILE]
set -u
who=$1; r=$2; bin=${3:-/tmp/rb/shardlog}; cfg=${4:-}
out=/tmp/rb/out/$who-$r; mkdir -p $out
if [ $who = sl ]; then
  B=127.0.0.1:19700; rm -rf /tmp/rb/sl; mkdir -p /tmp/rb/sl
  extra=""; [ -n "$cfg" ] && extra="--config $cfg"
  $bin --data-dir /tmp/rb/sl --listeners PLAINTEXT://127.0.0.1:19700 $extra > $out/broker.log 2>&1 &
  pid=$!
else
  B=127.0.0.1:19092; rm -rf /tmp/kq/data
  /work/kafka/bin/kafka-storage.sh format -t "$(/work/kafka/bin/kafka-storage.sh random-uuid)" -c /tmp/kq/server.properties > /dev/null 2>&1
  KAFKA_HEAP_OPTS="-Xmx1G -Xms1G" /work/kafka/bin/kafka-server-start.sh /tmp/kq/server.properties > $out/broker.log 2>&1 &
  sleep 1; pid=$(pgrep -f "kafka.Kafka /tmp/kq/server.properties" | head -1)
fi
for i in $(seq 100); do (echo > /dev/tcp/${B%:*}/${B#*:}) 2>/dev/null && break; sleep 0.3; done
if [ $who = k ]; then /work/kafka/bin/kafka-topics.sh --bootstrap-server $B --create --topic c2m --partitions 16 > /dev/null 2>&1; sleep 2; fi
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/rb/shardlog-bench run /work/main/bench/workloads/catchup.toml -b $B --topic c2m -q -o $out/produce-and-read.json > $out/bench.out 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
grep VmHWM /proc/$pid/status > $out/mem.txt
echo "cpu_ticks=$((c1-c0))" > $out/cpu.txt
if [ $who = sl ]; then kill $pid; wait $pid 2>/dev/null; rm -rf /tmp/rb/sl; else /work/kafka/bin/kafka-server-stop.sh > /dev/null 2>&1; for i in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done; rm -rf /tmp/kq/data; fi
python3 - $out <<'PY'
import json,sys
d=json.load(open(sys.argv[1]+'/produce-and-read.json'))
def find(o,path=''):
    if isinstance(o,dict):
        for k,v in o.items(): find(v,path+'.'+k)
    elif isinstance(o,(int,float)) and ('mb' in path.lower() or 'per_s' in path.lower()): print(path,o)
find(d)
PY
cat $out/mem.txt $out/cpu.txt
