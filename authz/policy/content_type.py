"""A media-type header value (a body's ``Content-Type``, a multipart part's ``Content-Disposition``) taken apart so
that the policy input and the upstream cannot read it two ways. Pure: no I/O.

``media_type(value)`` -> (the type, lower case; its parameters by lower-case name, values as sent, a quoted value
unquoted). ``ValueError`` when the value

- holds a comma outside a quoted string: more than one value (Envoy merges a repeated header with ``,``; one
  upstream takes the first, another the last);
- repeats a parameter, in any letter case (``boundary=a; boundary=b``: Go's ``mime.ParseMediaType`` refuses it,
  python-multipart takes the last, others the first);
- leaves a quoted string open.

A parameter without ``=`` is skipped.
"""

from __future__ import annotations

__all__ = ["media_type"]


def _pieces(value: str) -> list[str]:
    """``value`` split on ``;`` outside quoted strings; ValueError on a comma outside them or an open quote."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for c in value:
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = c == "\\", c != '"'
        elif c == '"':
            quoted = True
        elif c == ",":
            raise ValueError("names more than one value")
        elif c == ";":
            pieces.append("".join(current))
            current = []
            continue
        current.append(c)
    if quoted:
        raise ValueError("has an unterminated quoted string")
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"':
        return value
    out: list[str] = []
    escaped = False
    for c in value[1:-1]:
        if escaped or c != "\\":
            out.append(c)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def media_type(value: str) -> tuple[str, dict[str, str]]:
    first, *rest = _pieces(value)
    params: dict[str, str] = {}
    for piece in rest:
        name, eq, raw = piece.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        if name in params:
            raise ValueError(f"repeats the parameter {name[:40]!r}")
        params[name] = _unquote(raw.strip())
    return first.strip().lower(), params
