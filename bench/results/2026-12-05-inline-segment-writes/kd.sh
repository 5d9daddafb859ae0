#!/bin/bash
cd /tmp/b13
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then ./max.sh cd$r ./dsync-shardlog; ./max.sh cn$r ./new-shardlog; ./maxk.sh ck$r; else ./maxk.sh ck$r; ./max.sh cn$r ./new-shardlog; ./max.sh cd$r ./dsync-shardlog; fi
done
for r in 1 2 3 4; do
  if [ $((r % 2)) = 1 ]; then ./fr.sh gd$r ./dsync-shardlog; ./frk.sh gk$r; else ./frk.sh gk$r; ./fr.sh gd$r ./dsync-shardlog; fi
done
