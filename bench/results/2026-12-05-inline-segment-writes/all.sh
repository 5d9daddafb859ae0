#!/bin/bash
cd /tmp/b13
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then ./max.sh mo$r ./old-shardlog; ./max.sh mn$r ./new-shardlog; ./maxk.sh mk$r; else ./maxk.sh mk$r; ./max.sh mn$r ./new-shardlog; ./max.sh mo$r ./old-shardlog; fi
done
for r in 1 2 3 4; do
  if [ $((r % 2)) = 1 ]; then ./fr.sh fo$r ./old-shardlog; ./fr.sh fn$r ./new-shardlog; ./frk.sh fk$r; else ./frk.sh fk$r; ./fr.sh fn$r ./new-shardlog; ./fr.sh fo$r ./old-shardlog; fi
done
