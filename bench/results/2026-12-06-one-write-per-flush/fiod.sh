#!/bin/bash
# usage: fiod.sh LABEL -- the disk alone: durable (O_DIRECT+O_DSYNC) write bandwidth of 16 files
# written 64 KiB at a time into preallocated blocks at queue depth 1 and 4 (the broker's pattern at
# max rate), then the fixed-rate pattern (16 files, 128 KiB writes, 7.5 MiB/s each) with latencies
label=$1; cd /tmp
for qd in 1 4; do
  rm -rf /tmp/fiot; mkdir /tmp/fiot
  fio --name=seg --directory=/tmp/fiot --rw=write --bs=64k --size=1G --direct=1 --sync=dsync --ioengine=io_uring --iodepth=$qd --numjobs=16 --fallocate=native --group_reporting --runtime=10 --time_based > /tmp/b13/$label.fio-qd$qd.txt 2>&1
  echo "$label qd$qd $(grep -E 'WRITE:' /tmp/b13/$label.fio-qd$qd.txt)"
done
rm -rf /tmp/fiot; mkdir /tmp/fiot
fio --name=seg --directory=/tmp/fiot --rw=write --bs=128k --size=1G --direct=1 --sync=dsync --ioengine=io_uring --iodepth=1 --numjobs=16 --rate=7680k --fallocate=native --group_reporting --runtime=30 --time_based --percentile_list=50:99:99.9:99.99 > /tmp/b13/$label.fio-rate.txt 2>&1
echo "$label rate $(grep -A2 ' clat percentiles' /tmp/b13/$label.fio-rate.txt | tail -2 | tr -s ' ' | tr '\n' ' ')"
rm -rf /tmp/fiot
