"""A real redis-server (Debian package) on a free loopback port, for the L2 cache tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.processes import Process, free_port

__all__ = ["RedisServer", "redis_available"]


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(workdir)]
        self.process = Process("redis", argv, self.port, workdir)

    def start(self) -> RedisServer:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()
