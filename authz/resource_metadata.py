"""RFC 9728 OAuth 2.0 Protected Resource Metadata: the documents the service publishes, and the URL 401 challenges
name (``resource_metadata="..."``, §5.1). Pure: built once from the configuration.

A route's ``resource`` (``routes.resource`` or a rule's, an https URL) is its resource identifier. Each identifier
gets one document at ``https://<host>/.well-known/oauth-protected-resource<path>`` (§3.1: the well-known string goes
between the host and the identifier's path, a final ``/`` dropped), made from the settings of every route that names
it, so metadata and challenges cannot disagree:

``resource``                 the identifier, as configured
``authorization_servers``    the ``issuer`` of each authorization server those routes introspect with
``scopes_supported``         the scopes those routes require
``bearer_methods_supported`` ``["header"]``: the gateway reads tokens from ``Authorization`` only
``resource_documentation``   the configured ``resource_documentation``, when there is one
``tls_client_certificate_bound_access_tokens``  true when a route takes RFC 8705 certificate-bound tokens
``dpop_signing_alg_values_supported``, ``dpop_bound_access_tokens_required``  when a route takes DPoP (RFC 9449):
                             ``dpop.algorithms``; required when every route of the resource requires it

A 401 names its route's document only when the document covers the route as the request resolved it: Envoy's
``context_extensions`` may send a route to another AS or ask for other scopes than its rule, and a challenge must not
point a client at an AS the route does not accept.

The service answers ``GET``/``HEAD`` on the well-known path itself: in gRPC mode as the check's "denial" with status
200 (what ext_authz offers for answering a request instead of the upstream; Envoy sends it to the client), in HTTP
mode on ``server.http.listen`` as an upstream Envoy routes the path to (in that mode a 200 to a check is an allow).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from authz.errors import DirectAnswer
from authz.route_rules.patterns import request_host

if TYPE_CHECKING:
    from authz.config import Config
    from authz.models import RouteSettings

__all__ = ["WELL_KNOWN", "ProtectedResources", "is_metadata_path", "metadata_url"]

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_JSON = (("content-type", "application/json"), ("cache-control", "max-age=300"))
_METHODS = frozenset({"GET", "HEAD"})


def metadata_url(resource: str) -> str:
    """RFC 9728 §3.1: ``https://api.example.com/records`` -> ``https://api.example.com/.well-known/oauth-protected-
    resource/records``."""
    scheme, _, rest = resource.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority}{WELL_KNOWN}{(slash + path).rstrip('/')}"


def _well_known(path: str) -> bool:
    """``path`` (its query aside) is the well-known path or under it."""
    path = path.partition("?")[0]
    return path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/")


def is_metadata_path(raw_path: str, check_prefix: str) -> bool:
    """A request to the HTTP transport that asks for metadata: the well-known path, and never a check call (those
    always start with ``server.http.path_prefix``)."""
    return _well_known(raw_path) and not raw_path.startswith(check_prefix)


def _host_key(authority: str) -> str:
    """``Host`` as compared: as route rules read it (lower case, no final dot), without the default https port."""
    name, port = request_host(authority.strip())
    return name if port in (None, "443") else f"{name}:{port}"


@dataclass
class _Document:
    resource: str
    issuers: dict[str, None] = field(default_factory=dict)  # ordered sets
    scopes: dict[str, None] = field(default_factory=dict)
    documentation: str | None = None
    certificate_bound: bool = False
    dpop_routes: int = 0
    dpop_required_routes: int = 0
    token_routes: int = 0

    def add(self, route: RouteSettings, issuer: str | None) -> None:
        if route.disabled:
            return
        self.token_routes += 1
        if issuer is not None:
            self.issuers[issuer] = None
        self.scopes.update(dict.fromkeys(route.required_scopes))
        self.certificate_bound |= route.mtls_bound != "off"
        self.dpop_routes += route.dpop != "off"
        self.dpop_required_routes += route.dpop == "required"

    def body(self, dpop_algorithms: tuple[str, ...]) -> str:
        doc: dict[str, object] = {"resource": self.resource}
        if self.issuers:
            doc["authorization_servers"] = list(self.issuers)
        if self.scopes:
            doc["scopes_supported"] = list(self.scopes)
        doc["bearer_methods_supported"] = ["header"]
        if self.documentation is not None:
            doc["resource_documentation"] = self.documentation
        if self.certificate_bound:
            doc["tls_client_certificate_bound_access_tokens"] = True
        if self.dpop_routes:
            doc["dpop_signing_alg_values_supported"] = list(dpop_algorithms)
            if self.dpop_required_routes == self.token_routes:
                doc["dpop_bound_access_tokens_required"] = True
        return json.dumps(doc, separators=(",", ":"))


class ProtectedResources:
    """The documents by (host, well-known path), and what each covers."""

    def __init__(self, config: Config, routes: Iterable[RouteSettings]) -> None:
        self._issuers = {name: server.issuer for name, server in config.authorization_servers.items()}
        documents: dict[str, _Document] = {}
        for route in routes:
            if route.resource is not None:
                document = documents.setdefault(route.resource, _Document(route.resource))
                document.add(route, self._issuers[route.authorization_server])
        for resource, documentation in config.routes.documentation.items():
            if resource in documents:
                documents[resource].documentation = documentation
        self._documents = documents
        self._answers: dict[tuple[str, str], DirectAnswer] = {}
        for document in documents.values():
            url = metadata_url(document.resource)
            authority, _, path = url.partition("://")[2].partition("/")
            self._answers[(_host_key(authority), "/" + path)] = DirectAnswer(
                200, "resource_metadata", document.body(config.dpop.algorithms), _JSON,
                detail=f"RFC 9728 metadata of {document.resource}")

    @classmethod
    def of(cls, config: Config, routes: Iterable[RouteSettings]) -> ProtectedResources | None:
        """None when no route names a resource (nothing to publish)."""
        carriers = tuple(routes)
        return cls(config, carriers) if any(r.resource is not None for r in carriers) else None

    def answer(self, method: str, host: str, path: str) -> DirectAnswer | None:
        """The answer to a request for ``path`` on ``host``; None when the path is not the well-known one or under
        it (then it is a request like any other)."""
        if not _well_known(path):
            return None
        found = self._answers.get((_host_key(host), path.partition("?")[0]))
        if found is None:
            return DirectAnswer(404, "resource_metadata_not_found", '{"error":"not_found"}', _JSON,
                                detail="no protected resource has its metadata here")
        if method not in _METHODS:
            return DirectAnswer(405, "method_not_allowed", '{"error":"method_not_allowed"}',
                                (*_JSON, ("allow", "GET, HEAD")), detail="metadata is read with GET")
        return found

    def http_answer(self, method: str, host: str, path: str) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """``answer`` for the HTTP transport's listener (Envoy routes the well-known path to it as an upstream)."""
        answer = self.answer(method, host, path)
        assert answer is not None, "is_metadata_path first"
        return answer.status, answer.headers, answer.body.encode()

    def challenge(self, route: RouteSettings) -> str | None:
        """The metadata URL a 401 on ``route`` names, when the route's document covers it (its AS and scopes)."""
        document = None if route.resource is None else self._documents.get(route.resource)
        if document is None:
            return None
        issuer = self._issuers[route.authorization_server]
        if issuer is None or issuer not in document.issuers:
            return None
        if not document.scopes.keys() >= set(route.required_scopes):
            return None
        return metadata_url(document.resource)
