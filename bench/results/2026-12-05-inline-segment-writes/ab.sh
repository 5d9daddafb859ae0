#!/bin/bash
cd /tmp/b13
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then ./max.sh an$r ./new-shardlog; ./max.sh ad$r ./dsync-shardlog; else ./max.sh ad$r ./dsync-shardlog; ./max.sh an$r ./new-shardlog; fi
done
for r in 1 2 3; do
  if [ $((r % 2)) = 1 ]; then ./fr.sh bn$r ./new-shardlog; ./fr.sh bd$r ./dsync-shardlog; else ./fr.sh bd$r ./dsync-shardlog; ./fr.sh bn$r ./new-shardlog; fi
done
