"""A real redis-server (Debian package) on a free loopback port, for the L2 cache tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.processes import Process, free_port

__all__ = ["RedisServer", "redis_available"]


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


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
