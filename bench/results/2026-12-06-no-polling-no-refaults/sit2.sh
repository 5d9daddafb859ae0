#!/bin/bash
# Second sitting: max-1k-acks-all x5 rounds, new and Kafka alternating
cd /tmp/b13
for r in 1 2 3 4 5; do
  if [ $((r % 2)) = 1 ]; then ./max.sh zn$r ./new2-shardlog; ./maxk.sh zk$r; else ./maxk.sh zk$r; ./max.sh zn$r ./new2-shardlog; fi
done
