#!/bin/bash
# One sitting on the AMD EPYC VM: the disk alone; max-1k-acks-all x3 rounds (shardlog, Kafka, order
# alternating); half-1k-acks-all at half of Kafka's median max records/s x5 rounds (alternating);
# the disk again. Each run uses the workload file's own warmup (5 s) and duration (60 s).
cd /tmp/b13; export SL_BIN=/tmp/b13/sl-shardlog
W=/work/main/bench/workloads
bash fiod.sh d51
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then bash one.sh sl ms$r $W/max-1k-acks-all.toml; bash one.sh k mk$r $W/max-1k-acks-all.toml
  else bash one.sh k mk$r $W/max-1k-acks-all.toml; bash one.sh sl ms$r $W/max-1k-acks-all.toml; fi
done
rate=$(for r in 1 2 3; do python3 -c "import json;print(json.load(open('mk$r.json'))['throughput']['produce_records_per_s'])"; done | sort -n | sed -n 2p | awk '{printf "%d", $1/2/1000}')000
echo "fixed rate: $rate records/s (half of Kafka's median max, rounded down to a thousand)"
for r in 1 2 3 4 5; do
  if [ $((r % 2)) = 1 ]; then bash one.sh sl hs$r $W/half-1k-acks-all.toml $rate; bash one.sh k hk$r $W/half-1k-acks-all.toml $rate
  else bash one.sh k hk$r $W/half-1k-acks-all.toml $rate; bash one.sh sl hs$r $W/half-1k-acks-all.toml $rate; fi
done
bash fiod.sh d52
