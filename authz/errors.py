"""One exception tree for every expected failure on the request path.

Each error carries a stable snake_case ``reason`` (used in logs, metrics and the denial body) and the HTTP
``status`` the client sees. ``authz.response`` is the only place that turns them into CheckResponses::

    AuthzError (500 internal_error)
    ├── CredentialError
    │   ├── MissingCredential          401  no Authorization header, or not a Bearer credential
    │   └── MalformedCredential        400  invalid_request: two tokens, bad characters, too long, two headers
    ├── MalformedRequest               400  invalid_request: path not in normal form, unparsable query or body
    ├── InvalidToken                   401  invalid_token: inactive, expired, wrong audience/issuer
    │   └── DpopBindingError           401  invalid_token: a DPoP-bound token without its key's proof (RFC 9449 §7)
    ├── InvalidDpopProof               401  invalid_dpop_proof: the DPoP proof is missing, malformed, replayed, ...
    │   └── UseDpopNonce               401  use_dpop_nonce: a nonce we issued is required (DPoP-Nonce header)
    ├── InsufficientScope              403  insufficient_scope: a required scope is missing
    ├── NoRouteRule                    403  route rules are configured, none matches, and routes.default is deny
    ├── DirectAnswer                   its own  the service answers the request itself (RFC 9728 metadata: 200)
    │   (HTTP mode cannot send one: MetadataCheck, 403, in its place)
    ├── RouteMisconfigured             500  unknown or invalid context_extensions on the route
    ├── UpstreamUnavailable            503  AS unreachable, timeout, 5xx, 429 (carries Retry-After)
    │   └── TokenExchangeUnavailable   503  ... when exchanging the token for the route's audience (RFC 8693)
    ├── UpstreamMisbehaved             502  AS rejects our client credentials, answers outside its dialect
    │   └── TokenExchangeFailed        502  the AS refused the route's exchange, or issued nothing we can forward
    ├── PolicyDenied                   the policy's http_status (403), headers and body
    └── PolicyFailed                   503 (configurable 500/403): OPA unreachable, error, undefined, bad result

Anything that is not an ``AuthzError`` is a bug and becomes a 500 ``internal_error``; it is never an allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authz.dpop.challenge import DpopChallenge

__all__ = [
    "AuthzError",
    "CredentialError",
    "DirectAnswer",
    "DpopBindingError",
    "InsufficientScope",
    "InvalidDpopProof",
    "InvalidToken",
    "MalformedCredential",
    "MalformedRequest",
    "MetadataCheck",
    "MissingCredential",
    "NoRouteRule",
    "PolicyDenied",
    "PolicyFailed",
    "RequestTooLarge",
    "RouteMisconfigured",
    "TokenExchangeFailed",
    "TokenExchangeUnavailable",
    "UnsupportedDecision",
    "UpstreamMisbehaved",
    "UpstreamUnavailable",
    "UseDpopNonce",
]


class AuthzError(Exception):
    """Base of every expected failure. ``detail`` is for operators' logs; ``description`` goes to the client."""

    status: int = 500
    reason: str = "internal_error"
    oauth_error: str | None = None  # RFC 6750 error code for WWW-Authenticate, when one applies
    description: str = "the request could not be authorized"
    token_id: str | None = None  # short hash of the token involved, for logs; set by the pipeline
    resource_metadata: str | None = None  # RFC 9728: the metadata URL a 401's challenge names; set by the pipeline
    dpop: DpopChallenge | None = None  # on a route taking DPoP: the challenges to offer (set by authz.dpop)

    def __init__(self, detail: str = "", *, description: str | None = None) -> None:
        super().__init__(detail or self.description)
        self.detail = detail or self.description
        if description is not None:
            self.description = description


class CredentialError(AuthzError):
    """The request's credential cannot be used."""


class MissingCredential(CredentialError):
    status = 401
    reason = "missing_credential"
    description = "a bearer access token is required"


class MalformedCredential(CredentialError):
    status = 400
    reason = "malformed_credential"
    oauth_error = "invalid_request"
    description = "the Authorization header is not a valid bearer credential"


class MalformedRequest(AuthzError):
    """The request itself is malformed (``authz.request_form``): a path not in normal form, or a query or body the
    policy input cannot parse. Refused before anything path-based, and before any policy or reused decision."""

    status = 400
    reason = "malformed_request"
    oauth_error = "invalid_request"
    description = "the request's path, query or body is malformed"


class InvalidToken(AuthzError):
    status = 401
    reason = "invalid_token"
    oauth_error = "invalid_token"
    description = "the access token is invalid, expired or revoked"


class DpopBindingError(InvalidToken):
    """RFC 9449 §7.1: the token is DPoP-bound but came as a Bearer token, came as DPoP but is not bound, or is bound
    to another key than the proof's. ``why`` names which, for logs and metrics (reason ``dpop_<why>``)."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = f"dpop_{why}"


class InvalidDpopProof(AuthzError):
    """The DPoP proof cannot be accepted (RFC 9449 §4.3); ``why`` names the failed check (reason ``dpop_<why>``)."""

    status = 401
    reason = "invalid_dpop_proof"
    oauth_error = "invalid_dpop_proof"
    description = "the DPoP proof is missing or invalid"

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = f"dpop_{why}"


class UseDpopNonce(InvalidDpopProof):
    """RFC 9449 §9: the proof must carry a nonce we issued; ``nonce`` goes to the client in ``DPoP-Nonce``."""

    oauth_error = "use_dpop_nonce"
    description = "the DPoP proof must carry the server's nonce"

    def __init__(self, why: str, detail: str, nonce: str) -> None:
        super().__init__(why, detail)
        self.nonce = nonce


class InsufficientScope(AuthzError):
    status = 403
    reason = "insufficient_scope"
    oauth_error = "insufficient_scope"
    description = "the access token lacks a required scope"

    def __init__(self, required: tuple[str, ...], missing: tuple[str, ...]) -> None:
        super().__init__(f"missing scopes: {' '.join(missing)}")
        self.required = required
        self.missing = missing


class NoRouteRule(AuthzError):
    status = 403
    reason = "no_route_rule"
    description = "no route rule allows this request"


class DirectAnswer(AuthzError):
    """Not a failure: the service answers the request itself, in place of the upstream (RFC 9728 metadata). Envoy's
    ext_authz can only allow or deny, and a denial is what it sends to the client: this one carries its own status
    (200 for a document), headers and body."""

    def __init__(self, status: int, reason: str, body: str, headers: tuple[tuple[str, str], ...], *,
                 detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.body, self.headers = status, reason, body, headers


class MetadataCheck(AuthzError):
    """HTTP mode: Envoy asked to check the RFC 9728 well-known path, whose ``DirectAnswer`` a check cannot carry (a 200
    from an HTTP authorization service is an allow). A plain denial in its place; its log line says how to route it."""

    status = 403
    reason = "resource_metadata_check"
    description = "the protected-resource metadata is not served through an authorization check"

    def __init__(self) -> None:
        super().__init__("RFC 9728 metadata cannot be the answer to an HTTP-mode check (a 200 is an allow): route "
                         "the well-known path to server.http.listen, ext_authz disabled on that route")


class RouteMisconfigured(AuthzError):
    status = 500
    reason = "route_misconfigured"
    description = "the route's authorization settings are invalid"


class RequestTooLarge(AuthzError):
    """HTTP transport: a check request whose body is over ``server.http.max_body_bytes``."""

    status = 413
    reason = "request_too_large"
    description = "request body too large"


class UnsupportedDecision(AuthzError):
    """HTTP transport: an allow this transport cannot express (query-parameter changes); fails closed."""

    reason = "unsupported_decision"
    description = "the authorization decision cannot be applied"


class UpstreamUnavailable(AuthzError):
    status = 503
    reason = "authorization_server_unavailable"
    description = "the authorization server is temporarily unavailable"

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamMisbehaved(AuthzError):
    status = 502
    reason = "authorization_server_error"
    description = "the authorization server gave an unusable answer"


class TokenExchangeUnavailable(UpstreamUnavailable):
    """RFC 8693: the AS could not be asked to exchange the token (down, 5xx, 429, timeout): fail closed, never forward
    the token the route wanted exchanged."""

    reason = "token_exchange_unavailable"


class TokenExchangeFailed(UpstreamMisbehaved):
    """RFC 8693: the AS refused the exchange the route asks for (``invalid_scope``, ``invalid_target``, ...) or
    issued a token the gateway will not forward (unverifiable, for another audience, wider scopes)."""

    reason = "token_exchange_failed"
    description = "the access token could not be exchanged for this service"


class PolicyDenied(AuthzError):
    """The policy said no; the client gets the policy's status, headers and body (``decision``)."""

    reason = "policy_denied"
    description = "the request is not allowed by policy"

    def __init__(self, decision: Any, detail: str = "") -> None:
        super().__init__(detail or "policy denied the request")
        self.decision = decision
        self.status = decision.http_status or 403


class PolicyFailed(AuthzError):
    reason = "policy_error"
    description = "the authorization policy could not be evaluated"

    def __init__(self, detail: str, *, status: int = 503) -> None:
        super().__init__(detail)
        self.status = status
