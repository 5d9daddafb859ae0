#!/usr/bin/env python3
"""Startup time against the size of the log: does recovery after kill -9 (or a clean stop) grow
with the data kept? It should not: sealed segments are trusted and only the active segment of
each partition is scanned.

For each total size, on a fresh data directory: start shardlog, fill one partition with that
many bytes through kcat (acks=all), then ROUNDS times: kill -9 the broker (or stop it cleanly)
and time a start from exec to the "shardlog is ready" log line. Prints one table with the median
and the range per size and shutdown kind.

    bench/startup-vs-log-size.py [--sizes-mib 256,1024,3072] [--segment-mib 256] [--rounds 3]
                                 [--dir /var/tmp/shardlog-startup] [--bin target/release/shardlog]
                                 [--drop-caches]

--drop-caches (root) empties the page cache before every start, so recovery reads from the disk.

Needs kcat and the disk space for the largest size. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

READY_LINE = "shardlog is ready"
START_TIMEOUT_S = 600.0
RECORD_BYTES = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary: str, data: Path, segment_bytes: int):
        self.binary, self.data = binary, data
        self.port, self.admin_port = free_port(), free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.config = data.parent / "startup.properties"
        self.config.write_text(f"log.segment.bytes={segment_bytes}\nadmin.listeners=127.0.0.1:{self.admin_port}\nnum.partitions=1\n")
        self.log = data.parent / "broker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Starts the broker; returns the seconds from exec to the ready line."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        cmd = [self.binary, "--data-dir", str(self.data), "--listeners", f"PLAINTEXT://127.0.0.1:{self.port}", "--config", str(self.config)]
        started = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        while True:
            with open(self.log, "rb") as f:
                f.seek(offset)
                if READY_LINE.encode() in f.read():
                    return time.monotonic() - started
            if self.proc.poll() is not None:
                sys.exit(f"broker exited with status {self.proc.returncode}; see {self.log}")
            if time.monotonic() - started > START_TIMEOUT_S:
                self.proc.kill()
                sys.exit(f"broker not ready after {START_TIMEOUT_S}s; see {self.log}")
            time.sleep(0.005)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)


def fill(broker: Broker, total_bytes: int) -> None:
    """Produces total_bytes of 1000-byte records to partition 0 with kcat, acks=all."""
    records = total_bytes // RECORD_BYTES
    line = b"x" * (RECORD_BYTES - 1) + b"\n"
    chunk = line * 10_000
    kcat = subprocess.Popen(
        ["kcat", "-P", "-b", f"127.0.0.1:{broker.port}", "-t", "startup", "-p", "0", "-X", "acks=all", "-X", "linger.ms=20", "-X", "batch.size=1000000", "-z", "none"],
        stdin=subprocess.PIPE,
    )
    sent = 0
    last_report = time.monotonic()
    while sent < records:
        n = min(10_000, records - sent)
        kcat.stdin.write(chunk if n == 10_000 else line * n)
        sent += n
        if time.monotonic() - last_report > 2:
            print(f"  filled {sent * RECORD_BYTES >> 20} of {total_bytes >> 20} MiB", file=sys.stderr, flush=True)
            last_report = time.monotonic()
    kcat.stdin.close()
    if kcat.wait() != 0:
        sys.exit("kcat failed while filling the log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mib", default="256,1024,3072")
    parser.add_argument("--segment-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp/shardlog-startup")
    parser.add_argument("--bin", default=str(Path(__file__).resolve().parent.parent / "target" / "release" / "shardlog"))
    parser.add_argument("--drop-caches", action="store_true", help="empty the page cache before every start (needs root)")
    args = parser.parse_args()
    if shutil.which("kcat") is None:
        sys.exit("kcat not found (Debian: apt-get install kcat)")
    rows = []
    for size_mib in [int(s) for s in args.sizes_mib.split(",")]:
        work = Path(args.dir) / f"{size_mib}MiB"
        shutil.rmtree(work, ignore_errors=True)
        (work / "data").mkdir(parents=True)
        broker = Broker(args.bin, work / "data", args.segment_mib << 20)
        empty = broker.start()
        print(f"{size_mib} MiB: broker up ({empty:.2f}s on an empty directory); filling", file=sys.stderr, flush=True)
        fill(broker, size_mib << 20)
        on_disk = sum(f.stat().st_size for f in (work / "data" / "startup-0").glob("*.log"))
        for kind in ("kill -9", "clean stop"):
            times = []
            for r in range(args.rounds):
                broker.kill9() if kind == "kill -9" else broker.stop()
                if args.drop_caches:
                    os.sync()
                    Path("/proc/sys/vm/drop_caches").write_text("3\n")
                times.append(broker.start())
                print(f"  {kind} round {r + 1}: ready in {times[-1]:.3f}s", file=sys.stderr, flush=True)
            rows.append((size_mib, on_disk, kind, statistics.median(times), min(times), max(times)))
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"| log size | segment files | shutdown | start to ready, median of {args.rounds} | range |")
    print("|---|---|---|---|---|")
    for size_mib, on_disk, kind, median, lo, hi in rows:
        print(f"| {size_mib} MiB | {on_disk / (1 << 20):.0f} MiB | {kind} | {median:.3f} s | {lo:.3f} – {hi:.3f} s |")


if __name__ == "__main__":
    main()
