"""``parsed_path``, ``parsed_query``, ``parsed_body`` and ``truncated_body`` of the policy input, as opa-envoy-plugin
makes them with Go's ``net/url`` and ``encoding/json``. Pure: no I/O.

- ``parsed_path`` / ``parsed_query``: Go's ``url.PathUnescape`` / ``url.ParseQuery``; a malformed escape or a ``;``
  in the query fails the check in the plugin, here ``PolicyInputError`` (a ``PolicyEvaluationError``).
- ``parsed_body`` (JSON, form, multipart) / ``truncated_body`` (``x-envoy-auth-partial-body: true``, a larger
  ``content-length``, a body over ``max_body_bytes``). A JSON, form or multipart body that does not parse (or a bad
  ``content-length``) fails the check as in the plugin (``PolicyInputError``; ``authz.request_form`` makes it a 400
  first); gRPC: ``None``.
- multipart (``authz.policy.multipart``): ``{name: [value, ...]}`` in part order; a value is the part's content as
  text (a file's too; invalid UTF-8 becomes U+FFFD), or the JSON value of a part whose own content type says
  ``application/json`` (a part that does not parse fails the check, as in the plugin).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from authz.policy.engine import PolicyEvaluationError
from authz.policy.multipart import form_parts

__all__ = ["PolicyInputError", "parse_body", "parse_path_and_query"]

_PARTIAL_BODY = "x-envoy-auth-partial-body"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_GO_INT = re.compile(r"[+-]?[0-9]+")
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MAX = 2**63 - 1


class PolicyInputError(PolicyEvaluationError):
    """The request's path, query or body cannot be parsed as Go parses it; opa-envoy-plugin fails such checks."""


def _unescape(s: str, query: bool) -> str:
    """Go's ``url.QueryUnescape`` (query=True: ``+`` is a space) or ``url.PathUnescape``; ValueError when malformed."""
    if "%" not in s:
        return s.replace("+", " ") if query and "+" in s else s
    bad = _BAD_ESCAPE.search(s)
    if bad is not None:
        raise ValueError(f"invalid URL escape {s[bad.start():bad.start() + 3]!r}")
    return unquote(s.replace("+", " ") if query else s)  # invalid UTF-8 becomes U+FFFD, as in Go's JSON output


def _parse_query(query: str) -> tuple[dict[str, list[str]], str | None]:
    """Go's ``url.ParseQuery``: every well-formed pair, and the first error (if any)."""
    values: dict[str, list[str]] = {}
    error: str | None = None
    if not query:
        return values, None
    for pair in query.split("&"):
        if ";" in pair:
            error = "invalid semicolon separator in query"
            continue
        if not pair:
            continue
        key, _, value = pair.partition("=")
        try:
            key, value = _unescape(key, True), _unescape(value, True)
        except ValueError as exc:
            error = error or str(exc)
            continue
        values.setdefault(key, []).append(value)
    return values, error


def parse_path_and_query(path: str) -> tuple[list[str], dict[str, list[str]]]:
    raw_path, _, raw_query = path.partition("?")  # no fragment handling: Envoy never sends one, the plugin keeps it
    # split, then decode each segment: an encoded slash (a route with allow_encoded_slashes) stays inside its segment
    segments = raw_path.lstrip("/").split("/")
    if "%" in raw_path:
        try:
            segments = [_unescape(segment, False) for segment in segments]
        except ValueError as exc:
            raise PolicyInputError(f"request path: {exc}") from None
    query, error = _parse_query(raw_query)
    if error is not None:
        raise PolicyInputError(f"request query: {error}")
    return segments, query



def parse_body(headers: Mapping[str, str], body: str, raw: bytes, max_body_bytes: int | None) -> tuple[Any, bool]:
    """(parsed_body, truncated_body) of a body (``body``, or ``raw`` when it is not UTF-8) and the headers the
    plugin consults (lower-case names; with raw header lists, the first value of each)."""
    if headers.get(_PARTIAL_BODY) == "true":  # Envoy cut the body at max_request_bytes
        return None, True
    size = len(body.encode()) if body else len(raw)
    if max_body_bytes is not None and size > max_body_bytes:
        return None, True
    content_type = headers.get("content-type")
    if content_type is None or size == 0:
        return None, False
    if "application/json" in content_type:
        kind = "json"
    elif "application/grpc" in content_type:
        return None, False  # needs the service's descriptors, which the plugin only has when configured with them
    elif "application/x-www-form-urlencoded" in content_type:
        kind = "form"
    elif "multipart/form-data" in content_type:
        kind = "multipart"
    else:
        return None, False
    content_length = headers.get("content-length")
    if content_length is not None:
        declared = _go_parse_int(content_length)
        if declared is None:
            raise PolicyInputError(f"request body: content-length {content_length[:40]!r} is not an integer")
        if declared != -1 and declared > size:
            return None, True
    if kind == "multipart":
        return _parse_multipart(content_type, body.encode() if body else raw), False
    text = body or raw.decode("utf-8", "replace")
    if kind == "form":
        values, error = _parse_query(text)
        if error is not None:
            raise PolicyInputError(f"request body (form): {error}")
        return values, False
    return _parse_json(text), False


def _parse_multipart(content_type: str, data: bytes) -> dict[str, list[Any]]:
    try:
        parts = form_parts(content_type, data)
    except ValueError as exc:
        raise PolicyInputError(f"request body (multipart): {exc}") from None
    values: dict[str, list[Any]] = {}
    for part in parts:
        text = part.value.decode("utf-8", "replace")
        values.setdefault(part.name, []).append(_parse_json(text) if "application/json" in part.content_type
                                                else text)
    return values


def _go_parse_int(s: str) -> int | None:
    """Go's ``strconv.ParseInt(s, 10, 64)``: an optional sign and decimal digits, in int64 range."""
    if _GO_INT.fullmatch(s) is None:
        return None
    n = int(s)
    return n if -_INT64_MAX - 1 <= n <= _INT64_MAX else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(s: str) -> float:
    value = float(s)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _parse_json(text: str) -> Any:
    """RFC 8259 JSON as Go decodes it (no NaN/Infinity, nothing after the value); ``PolicyInputError`` when it is
    not (the plugin fails the check: a policy never sees ``null`` for a body an upstream may still read)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _LONE_SURROGATE_ESCAPE.search(text) is not None:
            data = _replace_surrogates(data)  # Go turns a lone \ud800 into U+FFFD; keep the document encodable
    except (ValueError, RecursionError) as exc:
        raise PolicyInputError(f"request body (JSON): {str(exc)[:200]}") from None
    return data


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value
