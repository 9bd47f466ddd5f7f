"""Live reload of the whole configuration: on SIGHUP, and when the file's content changes (a ConfigMap's symlink swap
included: the file is read through its path, whatever it points to).

A new configuration is validated first. One that does not load (bad YAML, a bad key, a half-written file) keeps the
old one: one log line naming the key, ``phantom_authz_config_reloads_total{result="error"}``. One that loads is
applied (``apply``): the server builds a new pipeline from it and the transports take it for the checks that start
after; checks in flight finish on the pipeline they started with. Settings that only a restart can change (listeners,
workers, TLS, the log format, the watch's interval, the cache's tiers) keep their running values, with one warning
naming them.

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

from authz.config import Config, ConfigError, load_config
from authz.metrics import Metrics

__all__ = ["RESTART_ONLY", "ConfigReloader", "restart_only_changes"]

log = logging.getLogger("authz.reload")

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
        self._applied = self._digest()
        self._seen = self._applied

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def reload(self, why: str) -> bool:
        """Load and apply the file now; False (the old configuration kept) when it does not load."""
        digest = self._digest()
        self._applied = self._seen = digest  # tried: the file watch does not try the same content again
        try:
            new = load_config(self.path, self._environ)
        except ConfigError as exc:
            self._results["error"].inc()
            log.error("config reload (%s) refused, the running configuration is kept: %s", why, exc)
            return False
        kept = restart_only_changes(self.config, new)
        if kept:
            log.warning("config reload (%s): %s changed; that takes a restart, the running values are kept",
                        why, ", ".join(kept))
        try:
            self._apply(new)
        except Exception as exc:  # building the new pipeline failed (a policy that does not compile, say)
            self._results["error"].inc()
            log.error("config reload (%s) refused, the running configuration is kept: %s", why, exc)
            return False
        self.config = new
        self._results["ok"].inc()
        log.info("config reloaded (%s) from %s", why, self.path)
        return True

    def poll(self) -> bool | None:
        """One look at the file: reload when its content changed and read the same as on the previous look (None:
        nothing to do)."""
        digest = self._digest()
        previous, self._seen = self._seen, digest
        if digest is None or digest == self._applied or digest != previous:
            return None
        return self.reload("file changed")  # a bad file is reported once, not on every poll

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.poll()
