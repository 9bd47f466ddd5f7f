"""Live reload of the whole configuration: on SIGHUP, and when the file's content changes (a ConfigMap's symlink swap
included: the file is read through its path, whatever it points to).

A new configuration is validated first. One that does not load (bad YAML, a bad key, a half-written file) keeps the
old one: one log line naming the key, ``phantom_authz_config_reloads_total{result="error"}``. One that loads is
applied (``apply``): the server builds a new pipeline from it and the transports take it for the checks that start
after; checks in flight finish on the pipeline they started with. Settings that only a restart can change (listeners,
workers, TLS, the log format, the watch's interval, the cache's tiers) keep their running values, with one warning
naming them. While the file holds a refused content, the watch tries it again now and then, quietly (what it reads
besides itself may settle: a secret file caught mid-rotation, a policy being fixed).

The file watch polls the content (a SHA-256) every ``interval`` seconds and applies a change only once two polls in a
row read the same content, so a file caught half-written is not taken for the new configuration.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from authz.config import Config, load_config
from authz.metrics import Metrics

__all__ = ["RESTART_ONLY", "ConfigReloader", "restart_only_changes"]

log = logging.getLogger("authz.reload")

_RETRY_GAP = 32  # at most this many looks between two tries of a refused content

# top-level keys, or "section.key", that a running process cannot change
RESTART_ONLY = ("server.listen", "server.workers", "server.event_loop", "server.max_receive_bytes", "server.http",
                "server.tls", "server.log_format", "server.config_watch_interval_seconds", "admin_listen",
                "metrics_listen", "cache.enabled", "cache.redis", "tracing",
                "dpop.replay_cache_entries", "dpop.replay_on_redis_error")  # the replay cache outlives a reload


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The restart-only keys whose values differ between ``old`` and ``new``."""
    changed = []
    for key in RESTART_ONLY:
        before, after = _get(old, key), _get(new, key)
        if before != after:
            changed.append(key)
    return changed


def _get(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value


class ConfigReloader:
    """Loads ``path`` on demand (``reload``) or on change (``watch``) and hands valid configurations to ``apply``."""

    def __init__(self, path: str | Path, config: Config, apply: Callable[[Config], None], metrics: Metrics,
                 environ: Any = None) -> None:
        self.path = Path(path)
        self.config = config
        self._apply = apply
        self._environ = environ
        self._results = {result: metrics.config_reloads.labels(result) for result in ("ok", "error")}
        self._applied = self._digest()  # the content running
        self._seen = self._applied  # the content the last look read
        self._refused: str | None = None  # the content last refused, while the file still holds it
        self._retry_in = self._backoff = 0  # polls until that content is tried again; the gap after that

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def reload(self, why: str) -> bool:
        """Load and apply the file now; False (the old configuration kept) when it does not load."""
        digest = self._seen = self._digest()
        if self._load_and_apply(why, report=True):
            self._applied, self._refused = digest, None
            return True
        self._refused, self._retry_in, self._backoff = digest, 1, 1
        return False

    def _load_and_apply(self, why: str, report: bool) -> bool:
        """``report``: a refusal is logged and counted (a retry's is not: the first try's already was)."""
        try:
            new = load_config(self.path, self._environ)
            self._apply(new)
        except Exception as exc:  # a file that does not load, or a pipeline that cannot be built (a bad policy)
            if report:
                self._results["error"].inc()
                log.error("config reload (%s) refused, the running configuration is kept: %s", why, exc)
            return False
        kept = restart_only_changes(self.config, new)
        if kept:
            log.warning("config reload (%s): %s changed; that takes a restart, the running values are kept",
                        why, ", ".join(kept))
        self.config = new
        self._results["ok"].inc()
        log.info("config reloaded (%s) from %s", why, self.path)
        return True

    def poll(self) -> bool | None:
        """One look at the file: reload when its content changed and read the same as on the previous look (None:
        nothing to do). A refused content still there is tried again, quietly, 1, 2, 4 ... 32 looks apart: what it
        reads besides itself (a ``client_secret_file`` caught mid-rotation, a policy being fixed) may have settled,
        and a process (one worker of several) must not run its old configuration for as long as the file stays."""
        digest = self._digest()
        previous, self._seen = self._seen, digest
        if digest is None or digest == self._applied or digest != previous:
            return None
        if digest != self._refused:
            return self.reload("file changed")  # a bad file is reported once, not on every poll
        self._retry_in -= 1
        if self._retry_in > 0:
            return None
        if self._load_and_apply("file changed, tried again", report=False):
            self._applied, self._refused = digest, None
            return True
        self._backoff = self._retry_in = min(2 * self._backoff, _RETRY_GAP)
        return False

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.poll()
