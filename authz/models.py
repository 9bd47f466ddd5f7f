"""Values passed between pipeline stages. No I/O, no gRPC."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

    from authz.policy.view import RequestView

__all__ = ["Allow", "Answer", "Identity", "Introspection", "Replies", "RequestInfo", "RouteSettings"]


@dataclass(slots=True)
class RequestInfo:
    """What the pipeline needs of one HTTP request, whatever transport carried it. Read-only by convention: no stage
    writes to it. (Not a frozen dataclass: its ``__init__`` sets each field through ``object.__setattr__``, 0.65 µs
    more per check, a twentieth of a cached HTTP-mode check.)"""

    method: str
    path: str
    host: str
    # lower-case names; duplicate headers merged as Envoy merges them (not in the repr: they carry credentials)
    headers: Mapping[str, str] = field(repr=False)
    authorization: tuple[str, ...] = field(repr=False)  # every Authorization header value as received
    context_extensions: Mapping[str, str]
    make_view: Callable[[], RequestView] | None = None  # what a policy reads of it; the transport makes it on need
    # the mTLS peer's and the local workload's SPIFFE ids ("" when none); None: the transport does not carry them
    source_principal: str | None = None
    destination_principal: str | None = None
    # the URL scheme the client used as Envoy tells it (gRPC: :scheme; HTTP mode: x-forwarded-proto); "": unknown
    scheme: str = ""
    # the client's TLS certificate as Envoy sends it (URL-encoded PEM; "" when none); None: the transport does not
    # carry it (Envoy's HTTP mode)
    peer_certificate: str | None = None


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """The effective settings of the route a request hit: service defaults overridden per route."""

    required_scopes: tuple[str, ...]
    disabled: bool
    authorization_server: str
    policy: str | None = None  # OPA decision path, e.g. envoy/authz/allow; None: no policy for this route
    keep_authorization: bool = False  # an allow forwarding no JWT keeps the client's Authorization (else removed)
    allow_encoded_slashes: bool = False  # the path may hold %2F inside a segment (authz.request_form)
    rule: str | None = None  # the name of the route rule these settings come from (None: no rule matched)
    mtls_bound: str = "off"  # RFC 8705 certificate-bound tokens: off, allowed or required (authz.cert_binding)
    resource: str | None = None  # RFC 9728 resource identifier (authz.resource_metadata); None: none
    dpop: str = "off"  # RFC 9449 DPoP: off (a DPoP-bound token is refused), allowed, required (authz.dpop)
    # RFC 8693 (authz.token_exchange): the upstream gets a token exchanged for this audience (None: the JWT itself),
    # with these scopes (None: as the AS decides)
    exchange_audience: str | None = None
    exchange_scope: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Introspection:
    """The AS's answer about one token, as the dialect understood it."""

    active: bool
    jwt: str | None = field(default=None, repr=False)
    claims: Mapping[str, Any] = field(default_factory=dict)
    max_age: int | None = None  # from Cache-Control, when the AS sent one


@dataclass(frozen=True, slots=True)
class Identity:
    """The token's holder as the verified JWT describes it."""

    jwt: str | None = field(repr=False)  # None when the AS gave claims but no JWT (plain RFC 7662, RFC 9701)
    claims: Mapping[str, Any]
    scopes: frozenset[str]
    subject: str | None
    client_id: str | None
    expires_at: float | None
    jkt: str | None = None  # cnf.jkt: the token is DPoP-bound to the key with this RFC 7638 thumbprint


class Replies:
    """What one Allow is sent as, each made on first need: the ``CheckResponse`` (without a policy's per-request
    decision id) and the HTTP transport's answer. ``for_policy`` holds those of the Allow with a policy's decision
    added (``policy``: the decision they were made for; another decision replaces them). Created with the Allow it
    belongs to, so it lives as long as that Allow: on a cached answer's ``Answer``, until the entry goes."""

    __slots__ = ("for_policy", "http_answer", "policy", "response")

    def __init__(self, policy: Any = None) -> None:
        self.policy = policy  # authz.policy.decision.PolicyDecision, for a ``for_policy`` Replies
        self.response: CheckResponse | None = None
        self.http_answer: Any = None  # the HTTP transport's answer, as written (authz.transport.http_wire.Wire)
        self.for_policy: Replies | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    """An allow decision: request headers to set (overwriting), headers to remove, metadata for Envoy."""

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # the JWT among them
    headers_to_remove: tuple[str, ...] = ()
    dynamic_metadata: Mapping[str, str] = field(default_factory=dict)
    identity: Identity | None = None
    policy: Any = None  # authz.policy.decision.PolicyDecision of an allowing policy, applied after our headers
    # where this Allow's replies are kept (None: made for one request). ``replace`` keeps it, so an Allow made from
    # another may differ from the one it was created with only by ``policy`` and a ``decision_id`` in the metadata
    replies: Replies | None = field(default=None, compare=False, repr=False)


class Answer:
    """One AS answer as the pipeline reads it, with what is derived from it filled in on first need: the identity
    (its static claim checks done; ``not_before`` kept for the time checks every request still makes), the Allow
    (``kept_allow``: for routes that keep the client's Authorization), which carries its own ``Replies``, and the
    token's leaf of the policy input (with its canonical form, its part of a reuse key), and the tokens exchanged for it
    (RFC 8693: ``authz.token_exchange.Exchange`` per audience and scope, each with its Allow). The cache hands back its
    entry's Answer on every hit, so each of these is worked out once per cached answer and goes with the entry; an
    answer it does not keep is a fresh Answer per call. Nothing here refers back to the Answer: evicting the entry
    frees it all without the cycle collector."""

    __slots__ = ("allow", "exchanges", "identity", "introspection", "kept_allow", "not_before", "policy_token")

    def __init__(self, introspection: Introspection) -> None:
        self.introspection = introspection
        self.identity: Identity | None = None
        self.not_before: float | None = None
        # (the pipeline's tag, the Allow it made): a reloaded pipeline makes its own (authz.pipeline)
        self.allow: tuple[object, Allow] | None = None
        self.kept_allow: tuple[object, Allow] | None = None
        self.policy_token: tuple[Any, Any] | None = None  # (projection, the token's leaf: authz.policy.projection)
        self.exchanges: dict[tuple[str, tuple[str, ...] | None], Any] | None = None  # authz.token_exchange
