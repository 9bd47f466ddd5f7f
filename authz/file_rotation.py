"""Files that a running process re-reads for a rotation, and what it built from them, replaced only by contents that
load: the listeners' certificate (``server.tls``, ``authz.transport.tls``) and an authorization server's CA bundle and
client certificate (``authz.introspection.client_tls``).

A ``FileRotation`` reads the files every ``interval`` seconds through their paths (a Kubernetes secret's ``..data``
symlink swap is seen like an in-place write) and compares their contents with the generation in use. New contents
are given to ``load`` (the same checks as at start); what loads becomes ``current`` and ``taken`` is told of it. What
does not (a key that is not the certificate's, a file missing, unreadable or caught half-written) leaves the
generation in use as it is: one warning naming the key (never the contents), once per new content, and
``on_result("error")``; a taken one is ``on_result("ok")``. Contents that change while they are loaded are left for
the next read, so a rotation caught between its two files is never taken half done.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from authz.config import ConfigError

__all__ = ["FileRotation", "Generation"]

Files = tuple[bytes, ...]


class Generation(Protocol):
    """What was built from one reading of the files."""

    @property
    def files(self) -> Files: ...  # the raw contents, to tell a change

    def describe(self) -> str: ...  # for the log: what is in use (a serial, a subject), never secret material


G = TypeVar("G", bound=Generation)


class FileRotation(Generic[G]):
    """The generation built from ``read()``'s contents by ``load``; ``start()`` watches the files, ``stop()`` ends it.

    ``key`` names the files' section in log lines (``server.tls``); ``kept`` says what a refusal keeps ("keeping the
    certificate in use"), ``taken_as`` what a change gives ("new connections get certificate"); ``fallback_key`` names
    the file an ``ssl.SSLError`` from ``load`` is blamed on (a ``ConfigError`` names its own)."""

    def __init__(self, key: str, read: Callable[[], Files], load: Callable[[Files], G], *, interval: float,
                 log: logging.Logger, kept: str, taken_as: str, fallback_key: str,
                 taken: Callable[[G, G], None] | None = None) -> None:
        self.key = key
        self._read = read
        self._load = load
        self._interval = interval
        self._log = log
        self._kept = kept
        self._taken_as = taken_as
        self._fallback_key = fallback_key
        self._taken = taken  # (old, new), once ``current`` is the new one
        self.on_result: Callable[[str], None] | None = None  # "ok" / "error": a metric's counter
        self.current: G = load(read())
        self._refused: object = None  # the contents (or read error) last logged as unusable
        self._watcher: asyncio.Future[None] | None = None

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def reload(self) -> bool:
        """Read the files; take new contents that load. True when the generation in use changed."""
        try:
            files = self._read()
        except ConfigError as exc:
            return self._refuse(str(exc), exc)
        if files == self.current.files or files == self._refused:
            return False
        try:
            generation = self._load(files)
        except (ConfigError, ssl.SSLError) as exc:
            return self._refuse(files, exc)
        try:
            if self._read() != files:  # changed while it was loaded (a rotation in progress): the next read takes it
                return False
        except ConfigError:
            return False
        old, self.current, self._refused = self.current, generation, None
        self._log.info("%s: files changed, %s %s", self.key, self._taken_as, generation.describe())
        if self.on_result is not None:
            self.on_result("ok")
        if self._taken is not None:
            self._taken(old, generation)
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.reload()
            except Exception as exc:  # never let the watch die: the generation in use stays
                self._log.error("%s: reload failed (%s); %s", self.key, type(exc).__name__, self._kept)

    def _refuse(self, seen: object, exc: Exception) -> bool:
        """Log and count once per new unusable content (or read error); keep the generation in use."""
        if seen != self._refused:
            why = str(exc) if isinstance(exc, ConfigError) else f"{self._fallback_key}: {exc}"
            self._log.warning("%s; %s (%s)", why, self._kept, self.current.describe())
            if self.on_result is not None:
                self.on_result("error")
        self._refused = seen
        return False
