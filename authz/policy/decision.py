"""The OPA decision contract: a policy's result document -> a validated :class:`PolicyDecision`. Pure, no I/O.

A result is ``true``/``false`` or an object with a boolean ``allowed`` and the optional keys opa-envoy-plugin reads
(``envoyauth/response.go``), with the same accepted shapes, so Envoy Rego policies written for OPA-Envoy run unchanged:

============================== ===========================================================================
key                            accepted shape
============================== ===========================================================================
``headers``                    object ``{name: string | [string, ...]}``, or an array of such objects
``response_headers_to_add``    same as ``headers``
``request_headers_to_remove``  array of strings
``query_parameters_to_set``    object ``{name: string | [string, ...]}`` (an array is an error, as in OPA)
``query_parameters_to_remove`` array of strings
``http_status``                number; here: an integer (or integral float) in 100..599
``body``                       string
``dynamic_metadata``           object (any JSON inside); here: at most 32 levels of objects and arrays
============================== ===========================================================================

Unknown keys are ignored, as opa-envoy-plugin ignores them. Unlike opa-envoy-plugin, which reads only the keys that
matter for the outcome (``body``/``http_status`` on a denial, the request mutations on an allow), every known key is
validated on every result: a malformed document never allows. On top of OPA's type checks:

- header names must be RFC 9110 tokens (lower-cased here) and values must not carry CR, LF or NUL (injection);
- query parameter names and values must already be percent-encoded query text without ``&`` or ``#`` (and names
  without ``=``): Envoy splices them into ``:path`` as they are, so ``"a&admin=1"`` would add a parameter;
- ``http_status`` may arrive as an integral float (``403.0``); OPA-Envoy accepts fewer codes (those named by both Go's
  ``net/http`` and Envoy's ``StatusCode`` enum), so every status it accepts is accepted here too.

Header order and ``append``: in ``headers`` the first value of a name overwrites what the request (or the local
reply) already has, further values of that name are appended, so the header ends up with exactly the policy's values
(with opa-envoy-plugin, which leaves ``append`` unset, Envoy keeps only the last value of a repeated request header).
Every value in ``response_headers_to_add`` is added (``append=True``), as the key says and as Envoy 1.40 treats
opa-envoy-plugin's options there; the upstream's own header of that name stays.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["MAX_METADATA_DEPTH", "HeaderMutation", "PolicyDecision", "PolicyResultError", "decision_from_result"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_CHARS = re.compile(r"[\r\n\x00]")
# RFC 3986 query characters (pchar / "/" / "?") or %XX, without the separators "&" and "#"; names also without "=".
_QUERY_VALUE = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_QUERY_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*+,;:@/?]|%[0-9A-Fa-f]{2})+")
_MIN_STATUS, _MAX_STATUS = 100, 599
# dynamic_metadata's nesting, its own object counted: each object level is three protobuf messages (Struct, map entry,
# Value) and Envoy reads a CheckResponse at most 100 messages deep; a deeper response is an ext_authz error in Envoy
MAX_METADATA_DEPTH = 32
_T = TypeVar("_T")
_D = TypeVar("_D")


class PolicyResultError(Exception):
    """The policy's result does not have the contract's shape; the message names the key and why (for logs).

    Messages carry key and header names and JSON type names, never header values or bodies (they may be secrets).
    """


@dataclass(frozen=True, slots=True)
class HeaderMutation:
    """One header to send. ``append=False`` overwrites (or adds) the header, ``append=True`` adds another value."""

    name: str  # lower-cased
    value: str
    append: bool


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    allowed: bool
    headers: tuple[HeaderMutation, ...] = ()  # allow: request headers for upstream; deny: response headers to client
    request_headers_to_remove: tuple[str, ...] = ()
    response_headers_to_add: tuple[HeaderMutation, ...] = ()
    query_parameters_to_set: tuple[tuple[str, str], ...] = ()
    query_parameters_to_remove: tuple[str, ...] = ()
    http_status: int | None = None  # deny only; None -> 403
    body: str | None = None  # deny only
    dynamic_metadata: Mapping[str, Any] | None = field(default=None, hash=False)


_BOOL_ONLY = {True: PolicyDecision(allowed=True), False: PolicyDecision(allowed=False)}


def _type_name(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _shown(name: str) -> str:
    """A name from the policy, safe to put in a log line."""
    text = repr(name)
    return text if len(text) <= 66 else text[:62] + "...'"


def _header_name(key: str, name: object) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        shown = _shown(name) if isinstance(name, str) else _type_name(name)
        raise PolicyResultError(f"{key}: header name {shown} is not a valid HTTP field name (RFC 9110 token)")
    return name.lower()


def _header_value(key: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise PolicyResultError(f"{key}.{name}: header value must be a string, got {_type_name(value)}")
    if _FORBIDDEN_CHARS.search(value):
        raise PolicyResultError(f"{key}.{name}: header value contains CR, LF or NUL")
    return value


def _string_values(where: str, value: object) -> list[object]:
    """``string`` -> [it]; ``[string, ...]`` -> the list (elements checked by the caller); else an error."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise PolicyResultError(f"{where}: must be a string or an array of strings, got {_type_name(value)}")


def _headers(key: str, value: object, *, add_all: bool = False) -> tuple[HeaderMutation, ...]:
    """``{name: value | [values]}`` or ``[{...}, ...]``, in document order.

    The first value of a name overwrites whatever the message already carries under that name, later values of the
    same name are appended; with ``add_all`` every value is appended (added).
    """
    if isinstance(value, Mapping):
        objects: Sequence[object] = (value,)
    elif isinstance(value, list | tuple):
        objects = value
    else:
        raise PolicyResultError(f"{key}: must be an object or an array of objects, got {_type_name(value)}")
    seen: set[str] = set()
    mutations: list[HeaderMutation] = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, Mapping):
            raise PolicyResultError(f"{key}[{index}]: must be an object, got {_type_name(obj)}")
        for raw_name, raw_values in obj.items():
            name = _header_name(key, raw_name)
            for raw in _string_values(f"{key}.{name}", raw_values):
                mutations.append(HeaderMutation(name, _header_value(key, name, raw), append=add_all or name in seen))
                seen.add(name)
    return tuple(mutations)


def _response_headers(key: str, value: object) -> tuple[HeaderMutation, ...]:
    return _headers(key, value, add_all=True)


def _header_names(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise PolicyResultError(f"{key}: must be an array of strings, got {_type_name(value)}")
    return tuple(_header_name(key, name) for name in value)


def _query_text(where: str, text: object, what: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(text, str):
        raise PolicyResultError(f"{where}: {what} must be a string, got {_type_name(text)}")
    if not pattern.fullmatch(text):
        raise PolicyResultError(f"{where}: {what} must be {rule}")
    return text


def _query_name(key: str, name: object) -> str:
    rule = "non-empty percent-encoded query text without '&', '#' or '='"
    return _query_text(key, name, "query parameter name", _QUERY_NAME, rule)


def _query_value(where: str, value: object) -> str:
    return _query_text(where, value, "value", _QUERY_VALUE, "percent-encoded query text without '&' or '#'")


def _query_to_set(key: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise PolicyResultError(f"{key}: must be an object, got {_type_name(value)}")
    pairs: list[tuple[str, str]] = []
    for raw_name, raw_values in value.items():
        name = _query_name(key, raw_name)
        where = f"{key}.{_shown(name)}"
        pairs.extend((name, _query_value(where, raw)) for raw in _string_values(where, raw_values))
    return tuple(pairs)


def _query_to_remove(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise PolicyResultError(f"{key}: must be an array of strings, got {_type_name(value)}")
    return tuple(_query_name(key, name) for name in value)


def _http_status(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyResultError(f"{key}: must be a number, got {_type_name(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise PolicyResultError(f"{key}: must be an integer, got {value!r}")
        value = int(value)
    if not _MIN_STATUS <= value <= _MAX_STATUS:
        raise PolicyResultError(f"{key}: must be in {_MIN_STATUS}..{_MAX_STATUS}, got {value}")
    return value


def _body(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise PolicyResultError(f"{key}: must be a string, got {_type_name(value)}")
    return value


def _json(where: str, value: object, depth: int = 1) -> Any:
    """A plain, independent copy of a JSON value (what ``google.protobuf.Struct`` can hold), or an error.

    ``depth``: the nesting level of ``value`` if it is an object or array (the ``dynamic_metadata`` object is 1).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise PolicyResultError(f"{where}: {value!r} is not a JSON number")
        return value
    if isinstance(value, Mapping | list | tuple) and depth > MAX_METADATA_DEPTH:
        raise PolicyResultError(f"dynamic_metadata: nested deeper than {MAX_METADATA_DEPTH} levels (Envoy could not "
                                "read the response)")
    if isinstance(value, Mapping):
        copy: dict[str, Any] = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise PolicyResultError(f"{where}: object keys must be strings, got {_type_name(name)}")
            copy[name] = _json(f"{where}.{_shown(name)}", item, depth + 1)
        return copy
    if isinstance(value, list | tuple):
        return [_json(f"{where}[{index}]", item, depth + 1) for index, item in enumerate(value)]
    raise PolicyResultError(f"{where}: {type(value).__name__} is not a JSON value")


def _dynamic_metadata(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyResultError(f"{key}: must be an object, got {_type_name(value)}")
    copied: dict[str, Any] = _json(key, value)
    return MappingProxyType(copied)


def _optional(result: Mapping[str, object], key: str, parse: Callable[[str, object], _T], default: _D) -> _T | _D:
    """``parse(key, result[key])`` when the key is present (even as ``null``, which every parser refuses)."""
    return parse(key, result[key]) if key in result else default


def decision_from_result(result: object) -> PolicyDecision:
    """Check a policy's result against the contract. ``allowed=True`` only for an explicit ``true``.

    Raises :class:`PolicyResultError` for anything else than a boolean or an object with a boolean ``allowed`` and
    well-formed known keys.
    """
    if isinstance(result, bool):
        return _BOOL_ONLY[result]
    if not isinstance(result, Mapping):
        raise PolicyResultError(f"result: must be a boolean or an object, got {_type_name(result)}")
    if "allowed" not in result:
        raise PolicyResultError('allowed: missing; an object result needs a boolean "allowed"')
    allowed = result["allowed"]
    if not isinstance(allowed, bool):
        raise PolicyResultError(f"allowed: must be a boolean, got {_type_name(allowed)}")

    return PolicyDecision(
        allowed=allowed is True,
        headers=_optional(result, "headers", _headers, ()),
        request_headers_to_remove=_optional(result, "request_headers_to_remove", _header_names, ()),
        response_headers_to_add=_optional(result, "response_headers_to_add", _response_headers, ()),
        query_parameters_to_set=_optional(result, "query_parameters_to_set", _query_to_set, ()),
        query_parameters_to_remove=_optional(result, "query_parameters_to_remove", _query_to_remove, ()),
        http_status=_optional(result, "http_status", _http_status, None),
        body=_optional(result, "body", _body, None),
        dynamic_metadata=_optional(result, "dynamic_metadata", _dynamic_metadata, None),
    )
