"""``server.workers`` > 1: N processes share the gRPC port with SO_REUSEPORT; the kernel spreads connections.

The parent only supervises: it starts ``python -m authz serve`` N times with ``AUTHZ_WORKER_INDEX`` set (and one
random ``AUTHZ_SIDECAR_ID`` for all), forwards SIGTERM/SIGINT/SIGHUP, and exits 0 once every worker has drained and
exited 0 (else 1). Each worker has its own L1 cache (use the Redis tier to share answers) and binds the admin and
metrics addresses offset by its index (``127.0.0.1:9002`` -> 9002, 9003, …; ``unix:/run/a.sock`` ->
``/run/a.sock.0``, ``.1``, …). An eviction sent to one worker's admin API is relayed to the others
(``authz.admin``); the sidecar id lets them ignore their own broadcast through Redis.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

__all__ = ["SIDECAR_ENV", "WORKER_ENV", "offset_address", "supervise"]

WORKER_ENV = "AUTHZ_WORKER_INDEX"
SIDECAR_ENV = "AUTHZ_SIDECAR_ID"


def offset_address(address: str, index: int) -> str:
    if address.startswith("unix:"):
        return f"{address}.{index}"
    host, _, port = address.rpartition(":")
    return address if int(port) == 0 else f"{host}:{int(port) + index}"


def supervise(argv: list[str], workers: int) -> int:
    sidecar = secrets.token_hex(8)
    children = [subprocess.Popen([sys.executable, "-m", "authz", *argv],
                                 env={**os.environ, WORKER_ENV: str(i), SIDECAR_ENV: sidecar})
                for i in range(workers)]

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while any(child.poll() is None for child in children):
        if any(child.returncode not in (None, 0) for child in children):  # one died: stop the rest
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return 0 if all(child.returncode == 0 for child in children) else 1
