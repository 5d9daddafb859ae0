"""Fixtures that run the real shardlog binary.

`broker` is a started broker with default settings; `broker_factory(config={...})` starts one
with a configuration file. Each broker gets a free port and a fresh data directory, writes its
stderr to `broker.log` in the test's temporary directory, and is killed at teardown whatever
happened. When a test fails, the tail of every broker log it used is added to the report.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Bounds on how long the harness waits for the broker. They only turn a hang into a failure:
# no test asserts that anything was fast.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 80

READY_LINE = "shardlog is ready"


def broker_binary() -> Path:
    path = Path(os.environ.get("SHARDLOG_BIN") or REPO / "target" / "release" / "shardlog")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"shardlog binary not found at {path}: build it with "
            "`cargo build --release -p shardlog-engine`, or point SHARDLOG_BIN at a binary",
            pytrace=False,
        )
    return path


# Every port free_port has handed out in this run. A cluster picks all its ports before any
# broker binds one: two brokers on one port (they bind with SO_REUSEPORT) would split each
# other's connections.
_handed_out_ports: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on now and that no earlier call returned. It lies below the
    kernel's ephemeral range, so a client's outgoing connection cannot take it as its source
    port before the broker binds it. The probe binds without SO_REUSEPORT, so it also fails on
    a port that another broker (which binds with SO_REUSEPORT) holds."""
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _handed_out_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out_ports.add(port)
        return port
    raise RuntimeError(f"no free port below the ephemeral range (starting at {low}) after 1000 tries")


def shard_cores() -> str:
    """Two shards where the machine allows, so cross-shard routing is exercised."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    return ",".join(str(c) for c in cores)


def listening_socket_inodes(port: int, net_dir: str = "/proc/net") -> set[str]:
    """The listening sockets on `port` in the network namespace whose /proc net directory is
    `net_dir` (ours by default; `/proc/<pid>/net` is that process's)."""
    inodes = set()
    for table in (f"{net_dir}/tcp", f"{net_dir}/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def process_socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    return inodes


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs the broker if the test process dies,
    so even a killed pytest run leaves no broker behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Broker:
    """One shardlog process at a time on a fixed port and data directory: it can be stopped,
    killed and started again on the same data."""

    def __init__(self, workdir: Path, config: dict[str, object] | None = None, env: dict[str, str] | None = None, extra_listeners: list[str] | None = None):
        self.workdir = workdir
        # Listeners beside PLAINTEXT (e.g. ["SSL", "SASL_SSL"]), each on its own free port.
        self.extra_ports: dict[str, int] = {}
        for name in extra_listeners or []:
            self.extra_ports[name] = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        # Several log directories (JBOD) instead of data_dir, when a test sets them.
        self.log_dirs: list[Path] | None = None
        self.log_path = workdir / "broker.log"
        self.port = free_port()
        # Every broker gets its own admin listener (metrics, health), so that brokers of
        # different tests, or one a developer runs on the default 9644, never collide.
        self.admin_port = free_port()
        config = {"admin.listeners": f"127.0.0.1:{self.admin_port}", **(config or {})}
        self.config_path: Path | None = workdir / "broker.properties"
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        self.env = dict(os.environ)
        self.env.pop("RUST_LOG", None)
        self.env.setdefault("SHARDLOG_LOG", "info")
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.run_log_start = 0  # byte offset in broker.log where the current run began
        self.starts = 0
        # A cgroup's `cgroup.procs` file the broker joins before it runs (e.g. to throttle its
        # disk writes), when a test sets it.
        self.cgroup_procs: Path | None = None
        # The CPUs that run shards ("0": one shard), when a test sets them.
        self.cores: str | None = None
        # The address every listener binds and advertises; and the network namespace
        # (`ip netns`) the broker runs in, when a test puts it in one (it then starts it with
        # `ip netns exec`, and this process cannot reach it: see test_cluster_faults.py).
        self.host = "127.0.0.1"
        self.netns: str | None = None
        # False for a controller-only node (`process.roles=controller`), which serves no
        # clients: it gets no PLAINTEXT listener, and is ready when its admin listener answers.
        self.kafka_listener = True

    # --- addresses --------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> "Broker":
        self.launch()
        self._wait_ready()
        return self

    def launch(self) -> "Broker":
        """Starts the process without waiting for it to be ready: the nodes of a cluster wait
        for each other (their metadata quorum), so they are launched together and then
        waited for with `wait_ready`."""
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        kafka = [f"PLAINTEXT://{self.bootstrap}"] if self.kafka_listener else []
        listeners = ",".join(kafka + [f"{n}://{self.host}:{p}" for n, p in self.extra_ports.items()])
        data = ",".join(str(d) for d in self.log_dirs) if self.log_dirs else str(self.data_dir)
        cmd = [str(broker_binary()), "--data-dir", data, "--listeners", listeners, "--cores", self.cores or shard_cores()]
        if self.config_path:
            cmd += ["--config", str(self.config_path)]
        if self.netns:
            # `ip netns exec` execs the broker in place: the process (and its pid) is the
            # broker's, so kill9 and the death signal below still reach it.
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"----- e2e: start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.run_log_start = log.tell()
            cgroup_procs = self.cgroup_procs

            def before_exec() -> None:
                _die_with_parent()
                if cgroup_procs is not None:
                    cgroup_procs.write_text(str(os.getpid()))

            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env, cwd=self.workdir, preexec_fn=before_exec)
        return self

    def wait_ready(self) -> "Broker":
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        port = self.port if self.kafka_listener else self.admin_port
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited with status {self.proc.returncode} before it was ready\n{self.log_tail()}")
            if READY_LINE in self.run_log():
                if self.netns:
                    # Out of our reach: its listening socket, in its namespace, is the sign.
                    if listening_socket_inodes(port, f"/proc/{self.pid}/net") & process_socket_inodes(self.pid):
                        break
                else:
                    try:
                        socket.create_connection((self.host, port), timeout=2).close()
                        break
                    except OSError:
                        pass
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"broker not ready after {START_TIMEOUT_S}s\n{self.log_tail()}")
            time.sleep(0.05)
        # Every listening socket on our port must be ours: with SO_REUSEPORT a foreign
        # process on the same port would silently take half of the connections.
        foreign = listening_socket_inodes(port, f"/proc/{self.pid}/net") - process_socket_inodes(self.pid)
        if foreign:
            self.kill9()
            raise AssertionError(f"another process also listens on port {port}; test results would be meaningless")

    def stop(self, expect_clean_exit: bool = True) -> str:
        """SIGTERM and wait. Returns the log text of the run that just ended."""
        assert self.proc is not None, "broker was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"broker did not stop within {STOP_TIMEOUT_S}s of SIGTERM\n{self.log_tail()}")
        text = self.run_log()
        if expect_clean_exit:
            assert self.proc.returncode == 0, f"broker exited with status {self.proc.returncode} after SIGTERM\n{self.log_tail()}"
        return text

    def kill9(self) -> None:
        """SIGKILL: no clean shutdown, no flush, nothing."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> str:
        """Clean stop, then start on the same data directory and port. Returns the stopped
        run's log."""
        text = self.stop()
        self.start()
        return text

    # --- inspection -------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        assert self.proc is not None, "broker was never started"
        code = self.proc.poll()
        assert code is None, f"broker process died (exit status {code})\n{self.log_tail()}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def run_log(self) -> str:
        return self.log_since(self.run_log_start)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def wait_for_log(self, pattern: str, since: int, timeout_s: float = 15.0) -> list[str]:
        """Waits until lines written after byte offset `since` match the regex `pattern`, and
        returns them. Log lines are written asynchronously, hence the wait."""
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while True:
            found = [line for line in self.log_since(since).splitlines() if rx.search(line)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def shard_stopped_totals(log_text: str) -> tuple[int, int, int]:
    """Sums `sendfile_calls` and `sendfile_bytes` over the `shard stopped` lines of one run.
    Returns (shards, calls, bytes)."""
    shards = calls = total = 0
    for line in log_text.splitlines():
        if "shard stopped" not in line:
            continue
        shards += 1
        calls += int(re.search(r"sendfile_calls=(\d+)", line).group(1))
        total += int(re.search(r"sendfile_bytes=(\d+)", line).group(1))
    return shards, calls, total


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def broker_factory(request, tmp_path):
    """broker_factory(config=None, env=None, start=True) -> Broker. Every broker made here is
    killed at teardown."""
    made: list[Broker] = []
    request.node._shardlog_brokers = made

    def make(config: dict[str, object] | None = None, env: dict[str, str] | None = None, start: bool = True, extra_listeners: list[str] | None = None, workdir: Path | None = None) -> Broker:
        b = Broker(workdir or tmp_path / f"broker{len(made)}", config=config, env=env, extra_listeners=extra_listeners)
        made.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in made:
        b.kill9()


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in getattr(item, "_shardlog_brokers", []):
            report.sections.append((f"shardlog log ({b.workdir.name}, port {b.port})", b.log_tail()))
