"""Values passed between pipeline stages. No I/O, no gRPC."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Allow", "HttpFields", "HttpSource", "Identity", "Introspection", "RequestInfo", "RouteSettings"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the pipeline needs of one HTTP request, whatever transport carried it."""

    method: str
    path: str
    host: str
    headers: Mapping[str, str]  # lower-case names; duplicate headers merged as Envoy merges them
    authorization: tuple[str, ...]  # every Authorization header value as received
    context_extensions: Mapping[str, str]
    source: Any = None  # the CheckRequest (gRPC), for building the policy input
    http: HttpSource | None = None  # HTTP transport: what a policy can read, made on first need

    def check_request(self) -> Any:
        """The CheckRequest the policy input is made from (built on first need by the HTTP transport)."""
        return self.source if self.http is None else self.http.check_request()


class HttpSource(Protocol):
    """The HTTP transport's request as a policy sees it, each part made once, on first need."""

    def fields(self) -> HttpFields: ...

    def check_request(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class HttpFields:
    """``attributes.request.http`` of the CheckRequest gRPC mode would carry, as plain values: the same attribute
    names as Envoy's ``AttributeContext.HttpRequest``, so what reads one (the policy decision key) reads either."""

    method: str
    path: str
    host: str
    scheme: str
    id: str
    headers: Mapping[str, str]  # as gRPC mode carries them: with Envoy's pseudo-headers, host as :authority
    body: str = ""
    raw_body: bytes = b""  # a body that is not UTF-8
    size: int = 0
    query: str = ""
    fragment: str = ""
    protocol: str = ""


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """The effective settings of the route a request hit: service defaults overridden per route."""

    required_scopes: tuple[str, ...]
    disabled: bool
    authorization_server: str
    policy: str | None = None  # OPA decision path, e.g. envoy/authz/allow; None: no policy for this route
    keep_authorization: bool = False  # an allow forwarding no JWT keeps the client's Authorization (else removed)
    allow_encoded_slashes: bool = False  # the path may hold %2F inside a segment (authz.request_form)


@dataclass(frozen=True, slots=True)
class Introspection:
    """The AS's answer about one token, as the dialect understood it."""

    active: bool
    jwt: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    max_age: int | None = None  # from Cache-Control, when the AS sent one


@dataclass(frozen=True, slots=True)
class Identity:
    """The token's holder as the verified JWT describes it."""

    jwt: str | None  # None when the AS gave claims but no JWT (plain RFC 7662, RFC 9701)
    claims: Mapping[str, Any]
    scopes: frozenset[str]
    subject: str | None
    client_id: str | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Allow:
    """An allow decision: request headers to set (overwriting), headers to remove, metadata for Envoy."""

    headers: tuple[tuple[str, str], ...] = ()
    headers_to_remove: tuple[str, ...] = ()
    dynamic_metadata: Mapping[str, str] = field(default_factory=dict)
    identity: Identity | None = None
    policy: Any = None  # authz.policy.decision.PolicyDecision of an allowing policy, applied after our headers
