"""README "Live reload": a reload changes ``server.shutdown_grace_seconds``. Both listeners drain with the value
running when the stop begins, not the one the process started with: an in-flight HTTP-mode check held by a hung AS
is cut at the reloaded grace."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from authz.config import load_config
from tests.harness import GATEWAY_SECRET, Stack, http_request, wait_until
from tests.inprocess import InProcessAuthz


class HungAS:
    """Accepts connections, reads nothing, answers nothing (a stopped AS, like the README's ``kill -STOP``)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def _check(port: int) -> None:
    try:
        http_request("GET", port, "/phantom-authz/httpbin/get", headers={"Authorization": "Bearer opaque-token-1"})
    except OSError:
        pass  # the connection is closed when the grace runs out


def test_a_reloaded_shutdown_grace_bounds_the_http_drain(tmp_path: Path) -> None:
    hung = HungAS()
    s = Stack(tmp_path, mode="http")
    try:
        s.as_port = hung.port
        authz = s.start_authz(in_process=True, as_overrides={"timeout_seconds": 30})  # grace 5 at start
        assert isinstance(authz, InProcessAuthz)
        shorter = load_config(s.dir / "authz.yaml", {"TEST_GATEWAY_SECRET": GATEWAY_SECRET})
        shorter = shorter.model_copy(update={"server": shorter.server.model_copy(
            update={"shutdown_grace_seconds": 0.2})})
        authz.on_loop(lambda server: server.reconfigure(shorter))
        threading.Thread(target=_check, args=(s.http_port,), daemon=True).start()
        wait_until(lambda: hung.accepted, "the check is waiting for the AS")
        started = time.monotonic()
        authz.stop(timeout=30)
        assert time.monotonic() - started < 3.0, "the drain waited the grace the process started with"
    finally:
        s.stop()
        hung.close()
