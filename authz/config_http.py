"""The ``server.http:`` section: Envoy's HTTP ext_authz transport (``http_service``), off unless ``listen`` is set."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from authz.config_section import ConfigError, Section

__all__ = ["HttpTransportConfig", "parse_http_transport"]

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


@dataclass(frozen=True, slots=True)
class HttpTransportConfig:
    listen: str | None = None  # HOST:PORT or unix:PATH; None: no HTTP transport
    path_prefix: str = "/phantom-authz"  # = Envoy's path_prefix; check paths: <prefix>[;<settings>]<original path>
    max_body_bytes: int = 1024 * 1024  # a larger check request body is refused (413), never read
    max_headers: int = 100  # more header lines: 400 from the HTTP parser
    max_header_bytes: int = 64 * 1024  # one header line longer than this: 400 from the HTTP parser
    request_timeout_seconds: float = 10.0  # head and body must arrive within this, else the connection closes
    keepalive_timeout_seconds: float = 300.0  # idle kept-alive connections from Envoy close after this

    @property
    def enabled(self) -> bool:
        return self.listen is not None


def parse_http_transport(sec: Section, listen_address: Callable[[str, str], str]) -> HttpTransportConfig:
    listen = sec.raw("listen")
    if listen in (None, "", False):
        listen = None
    elif not isinstance(listen, str):
        raise ConfigError(sec.key("listen"), "must be HOST:PORT, unix:PATH, or empty to disable")
    else:
        listen = listen_address(listen, sec.key("listen"))
    prefix = sec.str_("path_prefix", "/phantom-authz")
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(sec.key("path_prefix"), f"must be a path like /phantom-authz with no trailing '/' (the same "
                          f"string as Envoy's http_service.path_prefix; routes with settings add ';<settings>'), "
                          f"got {prefix!r}")
    result = HttpTransportConfig(
        listen=listen,
        path_prefix=prefix,
        max_body_bytes=int(sec.number("max_body_bytes", 1024 * 1024, integer=True)),
        max_headers=int(sec.number("max_headers", 100, integer=True)),
        max_header_bytes=int(sec.number("max_header_bytes", 64 * 1024, minimum=1023, integer=True)),
        request_timeout_seconds=sec.number("request_timeout_seconds", 10.0),
        keepalive_timeout_seconds=sec.number("keepalive_timeout_seconds", 300.0),
    )
    sec.done()
    return result
