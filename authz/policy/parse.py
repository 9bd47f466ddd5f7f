"""``parsed_path``, ``parsed_query``, ``parsed_body`` and ``truncated_body`` of the policy input, as opa-envoy-plugin
makes them with Go's ``net/url`` and ``encoding/json``. Pure: no I/O.

- ``parsed_path`` / ``parsed_query``: Go's ``url.PathUnescape`` / ``url.ParseQuery``; a malformed escape or a ``;``
  in the query fails the check in the plugin, here ``PolicyInputError`` (a ``PolicyEvaluationError``).
- ``parsed_body`` (JSON, form, multipart) / ``truncated_body`` (``x-envoy-auth-partial-body: true``, a larger
  ``content-length``, a body over ``max_body_bytes``). A JSON, form or multipart body that does not parse (or a bad
  ``content-length``) fails the check as in the plugin (``PolicyInputError``; ``authz.request_form`` makes it a 400
  first); gRPC: ``None``. The media type is matched in any letter case (the plugin's substring tests are not).
- A body parsers read differently fails the check too (the plugin would give one reading, an upstream may act on
  another): a JSON object repeating a key, an integer regorus cannot hold (outside int64..uint64), a content type
  with two values or a repeated parameter (``authz.policy.content_type``), a JSON or form body whose charset is not
  UTF-8.
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

from authz.policy.content_type import media_type
from authz.policy.engine import PolicyEvaluationError
from authz.policy.multipart import form_parts

__all__ = ["PolicyInputError", "parse_body", "parse_path_and_query"]

_PARTIAL_BODY = "x-envoy-auth-partial-body"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_GO_INT = re.compile(r"[+-]?[0-9]+")
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_KINDS = (("application/json", "json"), ("application/grpc", None),  # gRPC: needs descriptors the plugin may lack
          ("application/x-www-form-urlencoded", "form"), ("multipart/form-data", "multipart"))
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii"})


_ACCESS_TOKEN = "access_token"  # RFC 6750 §2.2/§2.3: the bearer token as a form or query parameter


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
    _refuse_access_token(query, "request query", "2.3")
    return segments, query


def _refuse_access_token(values: Mapping[str, Any], where: str, section: str) -> None:
    """A credential in the query or a form body (RFC 6750 §2.3, §2.2) is not one this service accepts, and the policy
    input (so a full decision log) would carry it: refused. RFC 6750 §2 lets a client use one method only."""
    if _ACCESS_TOKEN in values:
        raise PolicyInputError(f"{where}: carries access_token (RFC 6750 §{section}), which is not accepted: send the "
                               "token in the Authorization header only")



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
    kind, params = _body_kind(content_type)
    if kind is None:
        return None, False
    content_length = headers.get("content-length")
    if content_length is not None:
        declared = _go_parse_int(content_length)
        if declared is None:
            raise PolicyInputError(f"request body: content-length {content_length[:40]!r} is not an integer")
        if declared != -1 and declared > size:
            return None, True
    if kind == "multipart":
        return _parse_multipart(params, body.encode() if body else raw), False
    text = body or raw.decode("utf-8", "replace")
    if kind == "form":
        values, error = _parse_query(text)
        if error is not None:
            raise PolicyInputError(f"request body (form): {error}")
        _refuse_access_token(values, "request body (form)", "2.2")
        return values, False
    return _parse_json(text), False


def _body_kind(content_type: str) -> tuple[str | None, dict[str, str]]:
    """"json", "form", "multipart" or None (not parsed), as the plugin's substring tests give it, letters in any
    case; and the media type's parameters. ``PolicyInputError`` when the header could be read two ways: two values,
    a repeated parameter, or a charset other than UTF-8 for a JSON or form body (the policy reads UTF-8, an upstream
    would decode other characters)."""
    try:
        _, params = media_type(content_type)
    except ValueError as exc:
        raise PolicyInputError(f"request body: the content type {exc}") from None
    lowered = content_type.lower()
    kind = next((k for marker, k in _KINDS if marker in lowered), None)
    if kind in ("json", "form") and params.get("charset", "utf-8").lower() not in _UTF8:
        raise PolicyInputError(f"request body: charset {params['charset'][:40]!r} is not UTF-8")
    return kind, params


def _parse_multipart(params: dict[str, str], data: bytes) -> dict[str, list[Any]]:
    try:
        parts = form_parts(params.get("boundary", ""), data)
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


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("an object repeats a key (parsers disagree on which value counts)")
    return obj


def _engine_int(s: str) -> int:
    """An integer the engine holds exactly (regorus: int64 or uint64; it saturates beyond)."""
    value = int(s)
    if not -_INT64_MAX - 1 <= value <= _UINT64_MAX:
        raise ValueError("integer out of the 64-bit range")
    return value


def _finite_float(s: str) -> float:
    value = float(s)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _parse_json(text: str) -> Any:
    """RFC 8259 JSON as Go decodes it (no NaN/Infinity, nothing after the value); ``PolicyInputError`` when it is
    not (the plugin fails the check: a policy never sees ``null`` for a body an upstream may still read)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_engine_int,
                          object_pairs_hook=_reject_repeated_keys)
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
