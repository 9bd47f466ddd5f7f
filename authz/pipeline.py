"""The pipeline: ``Authorizer.decide`` turns a transport's translated request into the one ``CheckResponse`` every
transport answers from (``check`` is the decision itself: an ``Allow``, or a typed ``AuthzError``). Plain async Python.

Stages, in order (see DESIGN.md): request form (path normal form) -> route settings (context_extensions, route
rules) -> credential -> introspection -> token -> scopes -> policy -> response.

The AS's answer comes as an ``Answer`` (the cache entry's on a hit): its identity and Allow are made once per answer
and kept on it; scopes, times and the policy are checked on every request.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from time import perf_counter
from typing import TYPE_CHECKING, Protocol

from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.cert_binding import check_binding, check_transport
from authz.config import Config
from authz.dpop import DpopStage
from authz.errors import AuthzError, DirectAnswer, MetadataCheck
from authz.log_context import note_route_rule
from authz.logs import token_id
from authz.metrics import Metrics
from authz.models import Allow, Answer, Identity, Replies, RequestInfo, RouteSettings
from authz.policy.stage import PolicyStage
from authz.request_form import check_method, check_path
from authz.resource_metadata import WELL_KNOWN, ProtectedResources
from authz.response import allow_response, deny_response
from authz.routes import RouteResolver
from authz.scopes import require_scopes
from authz.token_exchange import ExchangeStage, TokenExchanger

if TYPE_CHECKING:
    from authz.tracing.otel import Tracing

__all__ = ["AuthorityLike", "Authorizer"]

log = logging.getLogger("authz.check")

class AuthorityLike(Protocol):
    """What the pipeline needs of an authorization server (``authz.introspection.Authority``, or the cache's
    ``CachedAuthority``)."""

    async def answer(self, token: str) -> Answer: ...

    def identity(self, answer: Answer) -> Identity: ...

    @property
    def exchanger(self) -> TokenExchanger | None: ...  # RFC 8693 at this AS (read on exchange routes only)


class Authorizer:
    tracing: Tracing | None = None  # on: authz.tracing.check.TracedAuthorizer (the transports read it)

    def __init__(self, config: Config, authorities: Mapping[str, AuthorityLike],
                 policy: PolicyStage | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self._realm = config.realm
        metrics = metrics or Metrics()
        self._checks = metrics.checks
        self._allowed = self._checks.labels("allow", "200", "ok")
        # phantom_authz_check_seconds: decide is the gRPC transport's entry, decide_kept the HTTP transport's
        self._grpc_seconds = metrics.check_seconds.labels("grpc")
        self._http_seconds = metrics.check_seconds.labels("http")
        self.routes = RouteResolver(config)
        self.resources = ProtectedResources.of(config, self.routes.configured())  # RFC 9728; None: none configured
        self._authorities = authorities
        self._policy = policy
        # client-sent copies of the headers we may set are always removed, so upstreams cannot be spoofed
        claim_headers = {s.claims_header for s in config.authorization_servers.values()
                         if s.claims_forwarding == "header"}
        self._remove = tuple(dict.fromkeys((*config.headers_to_remove, *sorted(claim_headers))))
        self._remove_with_authorization = (*self._remove, "authorization")
        # an allow that swaps in no JWT removes the client's Authorization (its opaque token) unless the route keeps it
        self._pass = Allow(headers_to_remove=self._remove_with_authorization, replies=Replies())
        self._pass_keeping_authorization = Allow(headers_to_remove=self._remove, replies=Replies())
        # RFC 9449: the credential per route, DPoP proofs and bindings (the app gives it a longer-lived replay cache)
        self.dpop = DpopStage(config.dpop, config.credential.max_token_length)
        self._dpop_scheme = "DPoP " if config.dpop.forward == "dpop" else "Bearer "  # a DPoP-bound token's JWT
        self._dpop_proof_removal = () if config.dpop.forward_proof else ("dpop",)
        self.exchange = ExchangeStage(config.cache, metrics, self._remove)  # RFC 8693, routes with exchange_audience
        # what this pipeline makes of a cached answer (the Allow: the headers it sets and removes, by this
        # configuration's headers_to_remove and dpop.forward) is kept on the answer with this tag, and used only by
        # this pipeline: after a reload the answers cached before it get Allows made by the new configuration
        self._allows_tag = object()

    async def decide(self, translate: Callable[[], RequestInfo], where: Callable[[], str]) -> CheckResponse:
        """``translate`` builds the RequestInfo (and may raise ``AuthzError`` for a malformed request);
        ``where`` describes the request for log lines (method, path, request id), called only when logging."""
        started = perf_counter()
        try:
            response = self._response_for(await self.check(translate()))
            self._allowed.inc()
        except Exception as exc:
            response = self._denial(exc, where)
        self._grpc_seconds.observe(perf_counter() - started)
        return response

    async def decide_kept(self, translate: Callable[[], RequestInfo],
                          where: Callable[[], str]) -> tuple[CheckResponse, Replies | None]:
        """``decide`` for a transport that keeps its own translation of an allow (Envoy's HTTP mode, which has no
        dynamic metadata): the response without the policy's decision id, and the ``Replies`` holder (None for a
        denial) where the transport may keep what it made of it, for as long as the cached answer lives."""
        started = perf_counter()
        answer: tuple[CheckResponse, Replies | None]
        try:
            allow = await self.check(translate())
            replies = _replies(allow)
            self._allowed.inc()
            answer = _base_response(allow, replies), replies
        except DirectAnswer:  # a 200 to an HTTP check is an allow: the document is served by the listener itself
            answer = self._denial(MetadataCheck(), where), None
        except Exception as exc:
            answer = self._denial(exc, where), None
        self._http_seconds.observe(perf_counter() - started)
        return answer

    def _denial(self, exc: Exception, where: Callable[[], str]) -> CheckResponse:
        if isinstance(exc, AuthzError):
            self.deny_log(exc, where)
            return deny_response(exc, self._realm)
        log.error("internal error while checking %s; denying with 500", where(), exc_info=exc,
                  extra={"outcome": "error", "status": 500, "reason": "internal_error"})
        self._checks.labels("deny", "500", "internal_error").inc()
        return deny_response(AuthzError("internal error"), self._realm)

    def deny_log(self, err: AuthzError, where: Callable[[], str]) -> None:
        """Count a denial and log it (no token, only its short id; the request id and route rule come with the
        check's log context, ``authz.log_context``)."""
        outcome = "deny" if err.status >= 400 else "answer"  # an answer: RFC 9728 metadata (authz.errors.DirectAnswer)
        self._checks.labels(outcome, str(err.status), err.reason).inc()
        level = logging.ERROR if err.status in (500, 502) else logging.WARNING if err.status >= 500 else logging.INFO
        if log.isEnabledFor(level):
            fields: dict[str, object] = {"outcome": outcome, "status": err.status, "reason": err.reason}
            if err.token_id is not None:
                fields["token_id"] = err.token_id
            log.log(level, "%s %s: %s", outcome, where(), err.detail, extra=fields)

    @staticmethod
    def _response_for(allow: Allow) -> CheckResponse:
        """The allow's kept response; a policy's per-request decision_id is set on a copy."""
        base = _base_response(allow, _replies(allow))
        decision_id = allow.dynamic_metadata.get("decision_id")
        if decision_id is None:
            return base
        response = CheckResponse()
        response.CopyFrom(base)
        response.dynamic_metadata.fields["decision_id"].string_value = decision_id
        return response

    async def check(self, request: RequestInfo) -> Allow:
        path = request.path
        check_method(request.method)  # stage 0, before anything reads the method or the path (route rules too)
        check_path(path, allow_encoded_slashes=True)
        if self.resources is not None and path.startswith(WELL_KNOWN):
            answer = self.resources.answer(request.method, request.host, path)
            if answer is not None:
                raise answer  # RFC 9728 metadata: the service answers the request itself
        route, params = self.routes.resolve(request)
        if route.rule is not None:
            note_route_rule(route.rule)  # for the check's log lines
        try:
            return await self._check_route(request, route, params)
        except AuthzError as exc:
            if exc.status == 401 and self.resources is not None:
                exc.resource_metadata = self.resources.challenge(route)  # RFC 9728 §5.1
            raise

    async def _check_route(self, request: RequestInfo, route: RouteSettings, params: Mapping[str, str]) -> Allow:
        path = request.path
        if not route.allow_encoded_slashes and ("%2F" in path or "%2f" in path):
            check_path(path)  # 400 unless the route allows an encoded slash
        passed = self._pass_keeping_authorization if route.keep_authorization else self._pass
        if self._is_preflight(request, route):
            return passed
        if route.disabled:
            return await self._with_policy(passed, route, request, None, params=params)
        check_transport(route.mtls_bound, request.peer_certificate)  # HTTP mode and mtls_bound: 500 before the token
        presented = self.dpop.present(request, route.dpop)  # the token (RFC 6750; RFC 9449 §7.1) and its DPoP proof
        token = presented.token
        authority = self._authorities[route.authorization_server]
        try:
            answer = await authority.answer(token)
            identity = authority.identity(answer)  # the times checked on every request, the rest once per answer
            check_binding(identity.claims, route.mtls_bound, request.peer_certificate)  # RFC 8705, every request
            if identity.jkt is not None or presented.proof is not None:  # RFC 9449: the bound key's proof, once
                await self.dpop.bind(presented, identity.jkt)
            require_scopes(identity.scopes, route.required_scopes)
            allow = self._allow_for(answer, identity, route)
            if route.policy is not None:  # (awaited only then: a coroutine per check costs a tenth of a cache hit)
                allow = await self._with_policy(allow, route, request, identity, answer, params)
            if route.exchange_audience is None:
                return allow
            # RFC 8693: what the checks allowed goes upstream with a token exchanged for the route's audience
            return await self.exchange.allow(allow, authority.exchanger, answer, identity, token, route)
        except AuthzError as exc:
            exc.token_id = token_id(token)
            if exc.dpop is None:
                exc.dpop = presented.challenge
            raise

    async def _with_policy(self, allow: Allow, route: RouteSettings, request: RequestInfo,
                           identity: Identity | None, answer: Answer | None = None,
                           params: Mapping[str, str] | None = None) -> Allow:
        if route.policy is None:
            return allow
        assert self._policy is not None, "routes naming a policy are refused when no engine is configured"
        matched = None if route.rule is None else {"name": route.rule, "params": dict(params or {})}
        outcome = await self._policy.decide(route.policy, request, identity, answer, matched)
        return replace(allow, policy=outcome.decision,
                       dynamic_metadata={**allow.dynamic_metadata, "decision_id": outcome.decision_id})

    def _allow_for(self, answer: Answer, identity: Identity, route: RouteSettings) -> Allow:
        """The answer's Allow, made on its first allowed request in this pipeline and kept on it (``kept_allow``: for a
        route keeping the client's Authorization, which only differs when the answer has no JWT to swap in)."""
        keep = route.keep_authorization and identity.jwt is None
        kept = answer.kept_allow if keep else answer.allow
        if kept is None or kept[0] is not self._allows_tag:
            kept = self._allows_tag, self._allow(identity, route.authorization_server, keep_authorization=keep)
            if keep:
                answer.kept_allow = kept
            else:
                answer.allow = kept
        return kept[1]

    def _allow(self, identity: Identity, server: str, keep_authorization: bool = False) -> Allow:
        metadata = _metadata(identity)
        bound = identity.jkt is not None  # DPoP-bound: the JWT as dpop.forward says, the proof removed unless kept
        proof_removal = self._dpop_proof_removal if bound else ()
        if identity.jwt is not None:
            scheme = self._dpop_scheme if bound else "Bearer "
            return Allow((("authorization", scheme + identity.jwt),), (*self._remove, *proof_removal), metadata,
                         identity, replies=Replies())
        # claims but no JWT: never pass the opaque token on as if it were one (unless the route keeps it)
        settings = self.config.authorization_servers[server]
        headers: tuple[tuple[str, str], ...] = ()
        remove = (*(self._remove if keep_authorization else self._remove_with_authorization), *proof_removal)
        if settings.claims_forwarding == "header":
            payload = json.dumps(dict(identity.claims), separators=(",", ":"), sort_keys=True).encode()
            headers = ((settings.claims_header, base64.urlsafe_b64encode(payload).rstrip(b"=").decode()),)
            # Envoy applies removals after additions: never remove the header we set (it overwrites anyway)
            remove = tuple(h for h in remove if h != settings.claims_header)
        return Allow(headers, remove, metadata, identity, replies=Replies())

    def _is_preflight(self, request: RequestInfo, route: RouteSettings) -> bool:
        """A CORS preflight let through without a token (``cors_preflight: allow``): an OPTIONS carrying both
        ``Origin`` and ``Access-Control-Request-Method``, on a route that names no policy (unless
        ``cors_preflight_on_policy_routes``: a policy route's preflight is otherwise checked like any request)."""
        return (
            self.config.cors_preflight == "allow"
            and request.method == "OPTIONS"
            and bool(request.headers.get("access-control-request-method"))
            and bool(request.headers.get("origin"))
            and (route.policy is None or self.config.cors_preflight_on_policy_routes)
        )


def _metadata(identity: Identity) -> dict[str, str]:
    meta = {"scope": " ".join(sorted(identity.scopes))}
    if identity.subject is not None:
        meta["sub"] = identity.subject
    if identity.client_id is not None:
        meta["client_id"] = identity.client_id
    return meta


def _replies(allow: Allow) -> Replies:
    """Where the replies of ``allow`` are kept: its own ``Replies``, or for an allowing policy's decision the
    ``for_policy`` one made for that decision (fresh ones for an Allow made for one request)."""
    replies = allow.replies
    if replies is None:
        return Replies()
    policy = allow.policy
    if policy is None:
        return replies
    for_policy = replies.for_policy
    if for_policy is None or for_policy.policy is not policy:  # the decision it holds, not another equal one
        for_policy = replies.for_policy = Replies(policy)
    return for_policy


def _base_response(allow: Allow, replies: Replies) -> CheckResponse:
    """The CheckResponse of ``allow`` without a decision id, made once per ``replies``."""
    response = replies.response
    if response is None:
        metadata = {k: v for k, v in allow.dynamic_metadata.items() if k != "decision_id"}
        response = replies.response = allow_response(replace(allow, dynamic_metadata=metadata))
    return response
