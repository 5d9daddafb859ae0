#!/bin/bash
# One sitting: max-1k-acks-all x3 rounds (old, new, Kafka alternating), then fixed rate 120k/s x4 (new, Kafka alternating)
cd /tmp/b13
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then ./max.sh xo$r ./old2-shardlog; ./max.sh xn$r ./new2-shardlog; ./maxk.sh xk$r; else ./maxk.sh xk$r; ./max.sh xn$r ./new2-shardlog; ./max.sh xo$r ./old2-shardlog; fi
done
for r in 1 2 3 4; do
  if [ $((r % 2)) = 1 ]; then ./fr.sh yn$r ./new2-shardlog; ./frk.sh yk$r; else ./frk.sh yk$r; ./fr.sh yn$r ./new2-shardlog; fi
done
