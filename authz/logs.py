"""The one way to name a token in a log line (a short SHA-256 prefix, never the token), and a request path as log
lines show it. The log stream itself is set up by ``authz.log_format``."""

from __future__ import annotations

import hashlib

__all__ = ["loggable_path", "token_id"]


def token_id(token: str) -> str:
    """First 12 hex digits of SHA-256(token): enough to correlate log lines, useless to an attacker."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def loggable_path(path: str) -> str:
    """A request path as log lines show it: at most 200 characters, the query replaced by ``?…``. A query can carry
    a credential (``?access_token=``, RFC 6750 §2.3, which we refuse but a client may still send)."""
    route, mark, _ = path.partition("?")
    return repr(route[:200]) + ("?…" if mark else "")

