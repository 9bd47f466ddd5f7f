"""phantom-authz inside the test process: the real ``authz.app.Server`` — grpc.aio server, HTTP transport, admin API
and /metrics on the loopback addresses its configuration names — on an event loop of its own in a background thread.

It is what ``authz serve`` runs (``authz.app.run`` serves through the same ``async with Server(config)``) minus the
process around it: no signal handlers, no worker processes, no ``gc.freeze``, no ready line on stdout, and no log
handler of its own: the ``authz`` loggers take ``server.log_level`` while a server runs, and their records reach the
root logger, where pytest's ``caplog`` reads them (``tests/log_lines.py`` writes them as the service would). What
the process's handler adds, its filter of library records and each check's ``request_id``/``trace_id`` fields, is
tested on the subprocess. It starts in a fraction of the subprocess's time. ``Stack.start_authz(in_process=True)``
uses it; tests of signals, the CLI, worker processes, exit codes or the process's own output start the subprocess.

``InProcessAuthz`` has the part of ``devtools.processes.Process``'s interface that ``Stack`` uses (``spawn``,
``await_ready``, ``start``, ``signal(SIGTERM)``, ``stop``, ``running``), so ``with stack.together():`` starts it side
by side with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from authz.app import Server
from authz.config import Config, load_config

__all__ = ["InProcessAuthz"]

T = TypeVar("T")
_AUTHZ_LOG = logging.getLogger("authz")
_serving: list[InProcessAuthz] = []  # started and not yet stopped; the first one saved the ``authz`` logger's level
_level_before = logging.NOTSET


class InProcessAuthz:
    """``Server(config)`` from ``config_path`` (read with ``environ`` over this process's environment, as the
    subprocess would) on a thread of its own."""

    def __init__(self, config_path: Path, environ: Mapping[str, str], port: int) -> None:
        self.name = "authz-in-process"
        self.config_path = config_path
        self.environ = {**os.environ, **environ}  # what the subprocess would see
        self.port = port  # the gRPC port (``Process`` compatibility; the start waits for every listener anyway)
        self.server: Server | None = None  # once started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> InProcessAuthz:
        return self.spawn().await_ready(timeout)

    def spawn(self) -> InProcessAuthz:
        """Read the configuration (a ``ConfigError`` raises here) and start serving in the background."""
        config = load_config(self.config_path, self.environ)
        # garbage this thread made (regorus engines of earlier tests among it) is collected here, on its own thread,
        # before the server's thread can trigger a collection that would drop it there
        gc.collect()
        global _level_before
        if not _serving:
            _level_before = _AUTHZ_LOG.level
        _serving.append(self)
        _AUTHZ_LOG.setLevel(config.server.log_level)
        if config.server.event_loop == "uvloop":  # the loop ``authz serve`` would run
            import uvloop

            self._loop = uvloop.new_event_loop()
        else:
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(self._loop, config), name=self.name, daemon=True)
        self._thread.start()
        return self

    def await_ready(self, timeout: float = 20.0) -> InProcessAuthz:
        """Wait until every listener is up; raise what stopped the start (a bad policy, a port in use, ...)."""
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.name} did not start within {timeout} s")
        if self._start_error is not None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {self._start_error!r}") from self._start_error
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, config: Config) -> None:
        try:
            loop.run_until_complete(self._serve(config))
        except BaseException as exc:
            if self.server is not None:
                raise  # a failure while serving or stopping: pytest reports the thread's unhandled exception
            self._start_error = exc
        finally:
            self._ready.set()
            loop.close()
            # regorus engines may only be dropped on the thread that made them: drop this server's here, now,
            # rather than wherever a later garbage collection happens to run (another server's thread, say)
            self.server = self._loop = None
            gc.collect()

    async def _serve(self, config: Config) -> None:
        async with Server(config) as server:  # start: every listener bound; end: drain, close listeners and session
            self.server = server
            self._ready.set()
            await self._stopping.wait()

    def on_loop(self, call: Callable[[Server], T], timeout: float = 10.0) -> T:
        """``call(server)`` on the server's own loop (as a reload or a signal handler runs), its result or its error."""
        if self._loop is None or self.server is None:
            raise RuntimeError(f"{self.name} is not running")
        server = self.server

        async def run() -> T:
            return call(server)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def signal(self, sig: signal.Signals) -> None:
        """``Stack.stop`` asks every process to stop at once with SIGTERM: begin the drain without waiting for it.
        Only SIGTERM: signal handling itself is tested on the subprocess."""
        if sig != signal.SIGTERM:
            raise ValueError(f"{self.name} takes no {sig.name}: test signals on the subprocess")
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed (the start failed, or stopped)
                self._loop.call_soon_threadsafe(self._stopping.set)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Drain (health NOT_SERVING, in-flight checks finish within ``server.shutdown_grace_seconds``), close every
        listener and the outbound session, end the loop and join the thread. Returns 0, like a clean exit."""
        if self._thread is None:
            return None
        self.signal(signal.SIGTERM)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {timeout} s")
        if self in _serving:
            _serving.remove(self)
            if not _serving:
                _AUTHZ_LOG.setLevel(_level_before)
        return 0

    @property
    def running(self) -> bool:
        return self.server is not None and self._thread is not None and self._thread.is_alive() \
            and not self._stopping.is_set()
