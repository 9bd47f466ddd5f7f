"""What Envoy's HTTP ext_authz mode cannot tell the service, and the start-up refusal of features that need it.

In HTTP mode Envoy sends the method, path, Host, the allowed headers and the body, but not the peers' addresses,
principals or certificates, the TLS session, metadata, the request's protocol (``HTTP/1.1``, ``HTTP/2``: Envoy's
HTTP check request is its own, not the client's), or the client's body size: the check request's ``Content-Length``
is Envoy's own (the length of the body it forwards, at most ``max_request_bytes``; 0 without one), and so is the
``size`` made from it, where gRPC mode carries the client's (a 9017-byte upload read ``8192`` in HTTP mode, so a
policy denying uploads over 8 KiB by either field let it through). A policy that reads those would see nothing, or
another number, and decide on less than it was written for, so with the HTTP transport on, the service refuses to
start (and a reload is refused) when the embedded policies can read them. ``attributes.request.http.protocol`` and
``.size`` count as read when a policy names them in a path from ``input``, or holds ``input.attributes.request`` or
``.http`` whole (``http := input.attributes.request.http``) and names them anywhere (after a dot or as a string);
the ``content-length`` header likewise, ``.headers`` held whole too. A remote OPA's policies are unknown: a warning
says so.
"""

from __future__ import annotations

import logging
from typing import Any

from authz.config import Config
from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import PolicyLoadError
from authz.policy.input_needs import InputNeeds

__all__ = ["HTTP_MODE_MISSING", "http_gap", "refuse_http_gaps"]

log = logging.getLogger("authz.http")

HTTP_MODE_MISSING = ("source", "destination", "tlsSession", "metadataContext", "routeMetadataContext")
_CLIENT_ONLY = ("protocol", "size")  # attributes.request.http fields HTTP mode has only of Envoy's check request
_CONTENT_LENGTH = "content-length"


def http_gap(needs: InputNeeds) -> str | None:
    """Why policies with these needs cannot run on the HTTP transport; None when they can."""
    tree = needs.tree
    if tree is None:
        return "the policies use `input` as a whole (e.g. walk(input), input[x])"
    if "source_principal" in tree:
        return "the policies read input.source_principal"
    if "attributes" in tree:
        attributes = tree["attributes"]
        if attributes is None:
            return "the policies read input.attributes as a whole"
        for name in HTTP_MODE_MISSING:
            if name in attributes:
                return f"the policies read input.attributes.{name}"
        return _protocol_gap(attributes, needs.names)
    return None


def _protocol_gap(attributes: dict[str, Any], names: frozenset[str]) -> str | None:
    """The client's protocol, body size or ``Content-Length`` read under ``attributes`` (HTTP mode has Envoy's)."""
    if "request" not in attributes:
        return None
    request = attributes["request"]
    http = None if request is None else request.get("http", {})
    for field in _CLIENT_ONLY:
        if http is not None and field in http:
            return f"the policies read input.attributes.request.http.{field}"
        if http is None and field in names:
            return (f"the policies hold {_whole(request)} whole and name `{field}` "
                    f"(input.attributes.request.http.{field})")
    headers = None if http is None else http.get("headers", {})
    if headers is not None and _CONTENT_LENGTH in headers:
        return f'the policies read input.attributes.request.http.headers["{_CONTENT_LENGTH}"]'
    if headers is None and _CONTENT_LENGTH in names:
        held = _whole(request) if http is None else "input.attributes.request.http.headers"
        return f"the policies hold {held} whole and name `{_CONTENT_LENGTH}` (the client's, which HTTP mode lacks)"
    return None


def _whole(request: Any) -> str:
    return "input.attributes.request" if request is None else "input.attributes.request.http"


def _check(needs: InputNeeds) -> None:
    reason = http_gap(needs)
    if reason is not None:
        raise PolicyLoadError(f"{reason}, which Envoy's HTTP ext_authz mode does not send (peers, TLS session, "
                              "metadata, protocol, the client's body size); serve those policies over gRPC, or leave "
                              "server.http.listen unset")


def refuse_http_gaps(config: Config, engine: EmbeddedEngine | None) -> None:
    """Raise ``PolicyLoadError`` when the loaded policies need what HTTP mode lacks; guard later reloads too."""
    if engine is not None:
        _check(engine.needs)
        engine.needs_check = _check
    elif config.policy.engine == "remote":
        log.warning("HTTP ext_authz mode sends no peer addresses, certificates, TLS session, metadata or protocol: "
                    "remote OPA policies that read input.attributes.source/destination/tlsSession/metadataContext or "
                    "input.attributes.request.http.protocol see nothing, and Envoy's own Content-Length and size (the "
                    "forwarded body's), not the client's")
