"""Values passed between pipeline stages. No I/O, no gRPC."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Allow", "Identity", "Introspection", "RequestInfo", "RouteSettings"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the pipeline needs of one HTTP request, whatever transport carried it."""

    method: str
    path: str
    host: str
    headers: Mapping[str, str]  # lower-case names; duplicate headers merged as Envoy merges them
    authorization: tuple[str, ...]  # every Authorization header value as received
    context_extensions: Mapping[str, str]
    request_id: str = ""
    source: Any = None  # the CheckRequest (gRPC), for building the policy input
    build_source: Callable[[], Any] | None = None  # HTTP transport: builds an equivalent CheckRequest when needed

    def check_request(self) -> Any:
        """The CheckRequest the policy input is made from (built on first need by the HTTP transport)."""
        return self.source if self.build_source is None else self.build_source()


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """The effective settings of the route a request hit: service defaults overridden per route."""

    required_scopes: tuple[str, ...]
    disabled: bool
    authorization_server: str
    policy: str | None = None  # OPA decision path, e.g. envoy/authz/allow; None: no policy for this route


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
