"""A real redis-server (Debian package) on a free loopback port, for the L2 cache tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from devtools.processes import Process, free_port

__all__ = ["RedisServer", "cached_answers", "listening_sidecars", "redis_available"]


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def cached_answers(client: Any, prefix: str = "phantom-authz") -> int:
    """How many introspection answers sidecars have written to Redis (``<prefix>:a:*``), on a ``redis.Redis``.

    Not ``dbsize()``: a subscribed sidecar also keeps its listener id there (``<prefix>:listeners``), so a wait on the
    key count alone ends before any answer is written."""
    return sum(1 for _ in client.scan_iter(match=f"{prefix}:a:*"))


def listening_sidecars(client: Any, prefix: str = "phantom-authz") -> int:
    """How many sidecar processes are subscribed to evictions (registered in ``<prefix>:listeners``). A sidecar writes
    no answer to Redis before it is: a test that wants one sidecar's answer read by another waits for this first."""
    return int(client.zcard(f"{prefix}:listeners"))


class RedisServer:
    """``args`` are more ``redis-server`` options (later ones win: ``--port 0 --tls-port N`` serves TLS only)."""

    def __init__(self, workdir: Path, *args: str, name: str = "redis", port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.address = f"127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(workdir), *args]
        self.process = Process(name, argv, self.port, workdir)

    def start(self) -> RedisServer:
        self.process.start()
        return self

    def spawn(self) -> RedisServer:
        """Start without waiting (``process.await_ready`` waits): several side by side."""
        self.process.spawn()
        return self

    def stop(self) -> None:
        self.process.stop()
