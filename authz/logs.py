"""Logging set-up and the one way to name a token in a log line: a short SHA-256 prefix, never the token."""

from __future__ import annotations

import hashlib
import logging
import sys

from authz.library_logs import LibraryRecordFilter

__all__ = ["configure_logging", "loggable_path", "token_id"]


def token_id(token: str) -> str:
    """First 12 hex digits of SHA-256(token): enough to correlate log lines, useless to an attacker."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def loggable_path(path: str) -> str:
    """A request path as log lines show it: at most 200 characters, the query replaced by ``?…``. A query can carry
    a credential (``?access_token=``, RFC 6750 §2.3, which we refuse but a client may still send)."""
    route, mark, _ = path.partition("?")
    return repr(route[:200]) + ("?…" if mark else "")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(LibraryRecordFilter())  # library log lines may quote request bytes (a token): never their data
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
