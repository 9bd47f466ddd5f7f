"""The URI a DPoP proof's ``htu`` must name, compared as RFC 9449 §4.3 says: without query and fragment, after
RFC 3986 syntax-based normalization (§6.2.2: case of scheme and host, percent-encoding case, decoded unreserved
characters, dot segments) and scheme-based normalization (§6.2.3: default port, empty path ``/``). Pure.

``normalized(uri)`` is the form both sides are compared in, or ``None`` for anything that is not an absolute
``http``/``https`` URI with a host: user information, a bad port, spaces, control or non-ASCII characters never
match. ``request_uri(scheme, host, path)`` is the request's own URI in that form, from what Envoy describes: the
scheme, the ``Host``/``:authority`` and the path as the client sent them (its query dropped).
"""

from __future__ import annotations

import re

__all__ = ["normalized", "request_uri"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_URI = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?")
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]@]+)(?::([0-9]*))?")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for a path that is empty or starts with ``/``."""
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path or "/"
    kept: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    result = "/" + "/".join(kept)
    if segments[-1] in (".", "..") and not result.endswith("/"):
        result += "/"
    return result


def normalized(uri: str) -> str | None:
    """``scheme://host[:port]/path`` in normal form, without query or fragment; None if ``uri`` is no absolute
    http(s) URI with a host."""
    if not _VISIBLE_ASCII.fullmatch(uri):
        return None
    parts = _URI.fullmatch(uri)
    if parts is None:
        return None
    scheme = parts.group(1).lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    authority = _AUTHORITY.fullmatch(parts.group(2))
    if default_port is None or authority is None:
        return None
    host = _ESCAPE.sub(_escape, authority.group(1).lower())
    port = authority.group(2)
    if port:
        if len(port) > 5 or int(port) > 65535:
            return None
        port = str(int(port))
    if port and port != default_port:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{_remove_dot_segments(_ESCAPE.sub(_escape, parts.group(3)))}"


def request_uri(scheme: str, host: str, path: str) -> str | None:
    """The URI of the request Envoy describes, in ``normalized`` form (None: it cannot be one)."""
    return normalized(f"{scheme}://{host}{path.partition('?')[0]}")
