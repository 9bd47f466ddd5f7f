"""Stage 0: a request that is not in normal form is refused (400 ``invalid_request``) before anything reads it.

**The path** (the part before ``?``) is checked on every request, right after the route's settings are resolved
(they come from Envoy's ``context_extensions`` or the HTTP check path's settings segment, never from the client's
path) and before the credential, scopes, policy or any other path-based step. A path is in normal form when

- it starts with ``/`` and holds only RFC 3986 ``pchar`` characters and ``/`` as they are (no ``\\``, ``#``, space,
  control or non-ASCII character);
- every ``%`` starts a ``%HH`` escape, and no escape encodes an unreserved character (``%2e`` is ``.``, ``%41`` is
  ``A``: RFC 3986 §6.2.2.2 normal form decodes those), ``/`` (``%2F``; a route may allow it with
  ``allow_encoded_slashes: "true"``, as long as the decoded segment has no dot or empty part), ``\\`` (``%5C``), a
  control character (``%00``-``%1F``, ``%7F``) or another escape (``%252e``: double encoding), and the escaped bytes
  are UTF-8;
- it has no empty segment (``//``; a single trailing ``/`` is fine) and no dot segment: ``.`` or ``..``, also before
  a ``;`` parameter (``..;``, which some servlet containers read as ``..``).

So a path in normal form is unchanged by RFC 3986 §5.2.4 ``remove_dot_segments`` and means the same to every
upstream, however many times it decodes. ``parsed_path`` and every later path match see only such paths.

**The method** must not have a lower-case letter. RFC 9110 methods are case-sensitive and every registered one is
upper case; Envoy's HTTP/1 codec refuses ``delete``, but it passes an HTTP/2 client's ``:method: delete`` on, and
some servers upper-case it (Werkzeug reads ``DELETE``). A route rule's ``methods``, a policy comparing
``input.attributes.request.http.method`` and the upstream must read the same method, so such a request is a 400.

**Query and body** are checked only on routes that name a policy, before a reused decision is looked up: a query
Go's ``url.ParseQuery`` refuses (``;``, a bad escape), or a JSON or form body that does not parse, is a 400 — as
opa-envoy-plugin fails such requests — instead of a ``parsed_body: null`` a policy may read as "nothing to deny";
so is a body parsers read two ways (a repeated JSON key, two content types: ``authz.policy.parse``).
"""

from __future__ import annotations

import re

from authz.errors import MalformedRequest
from authz.policy.parse import PolicyInputError
from authz.policy.view import RequestView, check_parsable

__all__ = ["check_method", "check_path", "check_policy_request", "path_problem"]

# RFC 3986: pchar = unreserved / pct-encoded / sub-delims / ":" / "@"; segments are separated by "/"
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_DOT_SEGMENTS = frozenset({".", ".."})


def check_method(method: str) -> None:
    """Raise ``MalformedRequest`` when ``method`` has a lower-case letter (one a server may upper-case)."""
    if not method.isupper() and method != method.upper():
        raise MalformedRequest(f"request method {method[:20]!r} is not upper case (a server may read it as "
                               f"{method[:20].upper()!r})")


def check_path(path: str, *, allow_encoded_slashes: bool = False) -> None:
    """Raise ``MalformedRequest`` unless the path part of ``path`` (a request target without fragment) is in
    normal form."""
    problem = path_problem(path.partition("?")[0], allow_encoded_slashes=allow_encoded_slashes)
    if problem is not None:
        raise MalformedRequest(f"request path not in normal form: {problem}")


def path_problem(path: str, *, allow_encoded_slashes: bool = False) -> str | None:
    """Why ``path`` (no query) is not in normal form, or None when it is."""
    if not path.startswith("/"):
        return "does not start with /"
    if _PATH_CHARS.fullmatch(path) is None:
        bad = next(c for c in path if _PATH_CHARS.fullmatch(c) is None)
        return f"character {bad!r} must be percent-encoded"
    if "//" in path:
        return "empty segment (//)"
    if "%" in path:
        problem = _escape_problem(path, allow_encoded_slashes)
        if problem is not None:
            return problem
    if "/." in path:
        for segment in path.split("/"):
            if segment.partition(";")[0] in _DOT_SEGMENTS:
                return f"dot segment {segment!r}"
    return None


def _escape_problem(path: str, allow_encoded_slashes: bool) -> str | None:
    bad = _BAD_ESCAPE.search(path)
    if bad is not None:
        return f"invalid percent-encoding {path[bad.start():bad.start() + 3]!r}"
    for segment in path.split("/"):
        if "%" not in segment:
            continue
        decoded = bytearray()
        last = 0
        for m in _ESCAPE.finditer(segment):
            decoded += segment[last:m.start()].encode("ascii")
            byte = int(m.group(1), 16)
            if byte in _UNRESERVED:
                return f"percent-encoded unreserved character {m.group(0)!r} ({chr(byte)!r})"
            if byte < 0x20 or byte == 0x7F:
                return f"percent-encoded control character {m.group(0)!r}"
            if byte == 0x5C:
                return f"percent-encoded backslash {m.group(0)!r}"
            if byte == 0x2F and not allow_encoded_slashes:
                return f"percent-encoded slash {m.group(0)!r} (the route may allow it: allow_encoded_slashes)"
            decoded.append(byte)
            last = m.end()
        decoded += segment[last:].encode("ascii")
        if _double_encoded(decoded):
            return "double percent-encoding (%25 followed by hex digits)"
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            return "percent-encoded bytes are not UTF-8"
        if "/" in text:  # an allowed encoded slash: what an upstream that decodes it reads is in normal form too
            for part in text.split("/"):
                if part.partition(";")[0] in _DOT_SEGMENTS or not part:
                    return f"segment {segment!r} decodes to a dot or empty segment"
    return None


def _double_encoded(decoded: bytearray) -> bool:
    """A decoded segment that still holds an escape: an upstream that decodes twice would read something else."""
    start = decoded.find(b"%")
    while start != -1:
        if start + 2 < len(decoded) and decoded[start + 1] in _HEX and decoded[start + 2] in _HEX:
            return True
        start = decoded.find(b"%", start + 1)
    return False


def check_policy_request(view: RequestView) -> None:
    """On a route that names a policy: raise ``MalformedRequest`` when the policy input cannot be built from the
    request's query or body (opa-envoy-plugin's request parse errors). Runs before any decision is reused; what it
    parses stays on ``view`` for the policy input."""
    try:
        check_parsable(view)
    except PolicyInputError as exc:
        raise MalformedRequest(str(exc)) from None
