#!/bin/bash
# usage: sc.sh LABEL BIN -- max-1k-acks-all, syscall counts of the broker over 5 s mid-run
label=$1; bin=$2; dur=15
cd /tmp/b13; rm -rf d; mkdir d
$bin --data-dir /tmp/b13/d --listeners PLAINTEXT://127.0.0.1:19700 > $label.broker.log 2>&1 & pid=$!
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/19700) 2>/dev/null && break; sleep 0.2; done
(sleep 9; perf stat -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendmsg,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_membarrier,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_sendfile64,syscalls:sys_enter_futex,io_uring:io_uring_submit_req,io_uring:io_uring_complete' -p $pid -o /tmp/b13/$label.sc -- sleep 5 >/dev/null 2>&1) & rp=$!
/tmp/b13/bench run /work/main/bench/workloads/max-1k-acks-all.toml -b 127.0.0.1:19700 --warmup-s 3 --duration-s $dur -q -o /tmp/b13/$label.json > $label.out 2>&1
wait $rp
echo "$label $(grep -E 'produce:|consume:' $label.out | tr '\n' ' ')"
grep -E "syscalls|io_uring" /tmp/b13/$label.sc
kill $pid; wait $pid; rm -rf /tmp/b13/d
