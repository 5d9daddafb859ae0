#!/bin/bash
# One sitting: the disk alone; fixed rate 120,000 records/s x5 rounds (split, one, Kafka, order
# rotating each round); max-1k-acks-all x3 rounds (split, one, Kafka, rotating); the disk again.
# split = release build of 19352ed (the rewritten partial page a write of its own), one = the
# build with one write per flush.
cd /tmp/b13
bash fiod.sh d41
for r in 1 2 3 4 5; do
  case $((r % 3)) in
    1) bash fr.sh hs$r ./new-shardlog; bash fr.sh ho$r ./one-shardlog; bash frk.sh hk$r ;;
    2) bash fr.sh ho$r ./one-shardlog; bash frk.sh hk$r; bash fr.sh hs$r ./new-shardlog ;;
    0) bash frk.sh hk$r; bash fr.sh hs$r ./new-shardlog; bash fr.sh ho$r ./one-shardlog ;;
  esac
done
for r in 1 2 3; do
  case $((r % 3)) in
    1) bash max.sh js$r ./new-shardlog; bash max.sh jo$r ./one-shardlog; bash maxk.sh jk$r ;;
    2) bash max.sh jo$r ./one-shardlog; bash maxk.sh jk$r; bash max.sh js$r ./new-shardlog ;;
    0) bash maxk.sh jk$r; bash max.sh js$r ./new-shardlog; bash max.sh jo$r ./one-shardlog ;;
  esac
done
bash fiod.sh d42
