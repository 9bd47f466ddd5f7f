"""Translate one Envoy HTTP-mode check request (``http_service``) into a ``RequestInfo``. Pure: no I/O.

Envoy sends the check as ``<method> <path_prefix><original path>`` with the original Host, Authorization,
Content-Length and the headers its ``allowed_headers`` lets through (plus the body, with ``with_request_body``).
HTTP mode has no ``context_extensions``, so the route's settings travel in the path prefix, which only Envoy's
config can set. Envoy's ``path_prefix`` is ``server.http.path_prefix`` itself (the service's defaults) or that
string, ``;`` and the form-encoded settings; the client's path is appended after it and always starts with ``/``::

    /phantom-authz<original path and query>                        (path_prefix "/phantom-authz": the defaults)
    /phantom-authz;<settings><original path and query>
    /phantom-authz;required_scopes=read+write&policy=records%2Fdecision/records/alice?x=1

Settings are read only from right after the prefix, where a client's byte (always ``/``) can never be: whatever
Envoy is given, the client's path never becomes settings. ``<settings>`` has the same keys and values as the gRPC
mode's context extensions. A misconfigured route fails closed (500): a path without the prefix, a settings segment
that repeats a key, ``//`` right after the prefix or the settings (Envoy's ``path_prefix`` ends with ``/``), or an
original path whose first segment reads as route settings (what the old ``/phantom-authz/<settings>`` form makes:
those settings would otherwise be lost).

For policies, the request's view (``authz.policy.view.RequestView``, made on a policy route only) holds what gRPC mode
would carry: method, path, host, scheme, headers (with Envoy's pseudo-headers), body, request id, time and the
settings as ``context_extensions``. What HTTP mode cannot see (peer addresses and certificates, TLS session,
metadata) stays empty; see ``authz.transport.http_gaps``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from urllib.parse import parse_qsl

from authz.errors import MalformedCredential, RouteMisconfigured
from authz.header_text import header_text
from authz.models import RequestInfo
from authz.policy.view import RequestView
from authz.routes import KNOWN_KEYS, SettingsMemo
from authz.transport.grpc_request import authorization_values

__all__ = ["HttpCheckTranslator"]

_AUTHORIZATION = "authorization"
# headers Envoy's HTTP client adds to every check call itself, whatever the client's request carried
_CHECK_CALL_HEADERS = ("x-envoy-expected-rq-timeout-ms", "x-envoy-internal")


class HttpCheckTranslator:
    def __init__(self, path_prefix: str, max_header_bytes: int) -> None:
        self._prefix = path_prefix
        self._max_header_bytes = max_header_bytes
        self._settings: SettingsMemo[str, dict[str, str]] = SettingsMemo()

    def request_info(self, method: str, raw_path: str, raw_headers: Iterable[tuple[bytes, bytes]],
                     body: bytes) -> RequestInfo:
        """Raise ``RouteMisconfigured`` (path without prefix, bad settings) or ``MalformedCredential``."""
        path, extensions = self._split(raw_path)
        headers: dict[str, str] = {}
        authorization: list[str] = []
        size = 0
        for raw_name, raw_value in raw_headers:
            size += len(raw_name) + len(raw_value)
            name = raw_name.decode("latin-1").lower()
            value = header_text(raw_value)  # as Envoy's gRPC mode would carry it
            if name in headers:
                headers[name] = f"{headers[name]},{value}"
            else:
                headers[name] = value
            if name == _AUTHORIZATION:
                authorization.append(value)
        for name in _CHECK_CALL_HEADERS:
            headers.pop(name, None)
        if size > self._max_header_bytes:
            raise MalformedCredential("request headers exceed the size limit")
        host = headers.get("host", "")
        return RequestInfo(
            method=method,
            path=path,
            host=host,
            headers=headers,
            authorization=authorization_values(tuple(authorization)),
            context_extensions=extensions,
            make_view=partial(_view, method, path, host, headers, body, extensions),
            scheme=headers.get("x-forwarded-proto", ""),  # as Envoy set it (HTTP mode carries no :scheme)
        )

    def _split(self, raw_path: str) -> tuple[str, dict[str, str]]:
        """(original path, route settings) of a check path, or ``RouteMisconfigured``."""
        prefix = self._prefix
        if not raw_path.startswith(prefix):
            raise RouteMisconfigured(f"HTTP check path does not start with {prefix!r}: set Envoy's "
                                     f"http_service.path_prefix to server.http.path_prefix ({prefix!r}), or to it "
                                     "followed by ';' and the route's settings")
        path = raw_path[len(prefix):]
        extensions: dict[str, str] = {}
        if path[:1] == ";":
            segment, slash, rest = path[1:].partition("/")
            if not slash:
                raise RouteMisconfigured("HTTP check path has no original path after the route settings")
            extensions = self._settings.get(segment, _parse_settings, segment)
            path = "/" + rest
        elif path[:1] != "/":
            raise RouteMisconfigured(f"HTTP check path does not start with {prefix!r} then '/' or ';': set Envoy's "
                                     f"http_service.path_prefix to server.http.path_prefix ({prefix!r})")
        if path[:2] == "//":
            raise RouteMisconfigured(f"HTTP check path has '//' after {prefix!r} and the route's settings: Envoy's "
                                     "http_service.path_prefix must not end with '/'")
        end = path.find("/", 1)
        if end > 0 and "=" in path[1:end]:
            self._settings.get("/" + path[1:end], _refuse_old_form, path[1:end])
        return path, extensions


def _refuse_old_form(segment: str) -> dict[str, str]:
    """An original path whose first segment reads as route settings is what an Envoy ``path_prefix`` of the form
    ``<prefix>/<settings>`` makes: refuse it rather than serve the route with the defaults."""
    keys = {key for key, _ in parse_qsl(segment, keep_blank_values=True)}
    if keys and keys <= KNOWN_KEYS:
        raise RouteMisconfigured("HTTP check path's first segment after the prefix reads as route settings: write "
                                 "Envoy's http_service.path_prefix as '<server.http.path_prefix>;<settings>' (a ';', "
                                 "not a '/')")
    return {}


def _parse_settings(segment: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for key, value in parse_qsl(segment, keep_blank_values=True):
        if key in settings:
            raise RouteMisconfigured(f"route setting {key!r} appears twice in the HTTP check path")
        settings[key] = value
    return settings


def _view(method: str, path: str, host: str, headers: dict[str, str], body: bytes,
          extensions: dict[str, str]) -> RequestView:
    """What a policy reads of an HTTP-mode check: the request gRPC mode would have carried, as far as HTTP mode
    can tell."""
    scheme = headers.get("x-forwarded-proto", "http")
    grpc_headers = {**headers, ":authority": host, ":method": method, ":path": path, ":scheme": scheme}
    grpc_headers.pop("host", None)  # gRPC mode carries it as :authority only
    text, raw = "", b""
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raw = body
    return RequestView(method, path, host, scheme, headers.get("x-request-id", ""), grpc_headers, text, raw,
                       len(body), context_extensions=extensions, time_ns=time.time_ns())
