#!/bin/bash
# The sitting of 2026-12-06 (second VM of the day): the disk alone, max-1k-acks-all shardlog / Kafka
# alternating (broker and client CPU), half-1k-acks-all at 120,000 records/s alternating, the disk again.
cd /tmp/b13
bash fiod.sh disk1
for r in 1 2 3; do bash max.sh ys$r /tmp/b13/new-shardlog; bash maxk.sh yk$r; done
for r in 1 2 3 4 5; do bash fr.sh ws$r /tmp/b13/new-shardlog; bash frk.sh wk$r; done
bash fiod.sh disk2
