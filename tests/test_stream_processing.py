"""A stream-processing library runs an exactly-once pipeline against shardlog: quixstreams
with processing_guarantee="exactly-once" (transactions, offsets sent to the transaction,
read_committed input).

The pipeline is killed with SIGKILL in the middle of the stream and started again; its
committed output must hold every input record exactly once: no loss, no duplicate.

quixstreams needs an older confluent-kafka than the other tests, so it runs in its own virtual
environment (.venv-quix, made by scripts/install-deps); the test is skipped, saying so, where
that environment is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clients
from test_transactions import consume_all

ROOT = Path(__file__).resolve().parent.parent
QUIX_PYTHON = Path(os.environ.get("SHARDLOG_QUIX_PYTHON", ROOT / ".venv-quix" / "bin" / "python"))
RECORDS = 400


def run_pipeline(bootstrap: str, log_path: Path, sleep_ms: int, idle_s: float) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(
        [str(QUIX_PYTHON), str(ROOT / "tests" / "quix_pipeline.py"), bootstrap, "eos-in", "eos-out", "eos-app", str(sleep_ms), str(idle_s)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.skipif(not QUIX_PYTHON.exists(), reason=f"quixstreams environment missing: run scripts/install-deps (looked for {QUIX_PYTHON})")
def test_quixstreams_exactly_once_survives_a_kill(broker, tmp_path):
    clients.create_topic(broker.bootstrap, "eos-in", 2)
    clients.create_topic(broker.bootstrap, "eos-out", 2)
    producer = clients.confluent_producer(broker.bootstrap)
    for n in range(RECORDS):
        producer.produce("eos-in", key=str(n).encode(), value=json.dumps({"n": n}).encode(), partition=n % 2)
    assert producer.flush(30) == 0
    log_path = tmp_path / "quix.log"

    # First run: slow (50 ms a record, 20 s in all), killed once some output is in the log.
    first = run_pipeline(broker.bootstrap, log_path, sleep_ms=50, idle_s=30)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            written = sum(high for _, high in clients.confluent_watermarks(broker.bootstrap, "eos-out", 2).values())
            if written >= 40:
                break
            time.sleep(0.2)
        assert first.poll() is None, f"the pipeline exited early:\n{log_path.read_text(errors='replace')[-3000:]}"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    partial = consume_all(broker.bootstrap, "eos-out", 2, "read_committed")
    assert 0 < len(partial) < RECORDS, f"kill came too late or too early: {len(partial)} committed"

    # Second run: to the end of the input, then idle for 15 s and stop.
    second = run_pipeline(broker.bootstrap, log_path, sleep_ms=0, idle_s=15)
    try:
        assert second.wait(240) == 0, f"pipeline failed:\n{log_path.read_text(errors='replace')[-3000:]}"
    finally:
        if second.poll() is None:
            second.kill()
    out = [json.loads(v) for _, _, v in consume_all(broker.bootstrap, "eos-out", 2, "read_committed")]
    ns = sorted(o["n"] for o in out)
    assert ns == list(range(RECORDS)), f"{len(ns)} outputs; duplicates: {sorted({n for n in ns if ns.count(n) > 1})[:10]}; missing: {sorted(set(range(RECORDS)) - set(ns))[:10]}"
    assert all(o["square"] == o["n"] * o["n"] for o in out)
    # The uncommitted (aborted or fenced) output of the killed run is in the log but hidden.
    assert len(consume_all(broker.bootstrap, "eos-out", 2, "read_uncommitted")) >= RECORDS
