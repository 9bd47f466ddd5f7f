"""The pipeline: ``Authorizer.check(RequestInfo) -> Allow``, or a typed ``AuthzError``. Plain async Python.

Stages, in order (see DESIGN.md): route settings -> request form (path normal form) -> credential -> introspection ->
token -> scopes -> policy -> response.

The AS's answer comes as an ``Answer`` (the cache entry's on a hit): its identity and Allow are made once per answer
and kept on it; scopes, times and the policy are checked on every request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from authz.config import Config
from authz.credential import bearer_token
from authz.errors import AuthzError
from authz.logs import token_id
from authz.models import Allow, Answer, Identity, Replies, RequestInfo, RouteSettings
from authz.policy.stage import PolicyStage
from authz.request_form import check_path
from authz.routes import RouteResolver
from authz.scopes import require_scopes

__all__ = ["AuthorityLike", "Authorizer"]

class AuthorityLike(Protocol):
    """What the pipeline needs of an authorization server (``authz.introspection.Authority``, or the cache's
    ``CachedAuthority``)."""

    async def answer(self, token: str) -> Answer: ...

    def identity(self, answer: Answer) -> Identity: ...


class Authorizer:
    def __init__(self, config: Config, authorities: Mapping[str, AuthorityLike],
                 policy: PolicyStage | None = None) -> None:
        self.config = config
        self.routes = RouteResolver(config)
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

    async def check(self, request: RequestInfo) -> Allow:
        route = self.routes.resolve(request.context_extensions)
        check_path(request.path, allow_encoded_slashes=route.allow_encoded_slashes)  # before anything path-based
        passed = self._pass_keeping_authorization if route.keep_authorization else self._pass
        if self._is_preflight(request, route):
            return passed
        if route.disabled:
            return await self._with_policy(passed, route, request, None)
        token = bearer_token(request.authorization, self.config.credential.max_token_length)
        authority = self._authorities[route.authorization_server]
        try:
            answer = await authority.answer(token)
            identity = authority.identity(answer)  # the times checked on every request, the rest once per answer
            require_scopes(identity.scopes, route.required_scopes)
            return await self._with_policy(self._allow_for(answer, identity, route), route, request, identity,
                                           answer)
        except AuthzError as exc:
            exc.token_id = token_id(token)
            raise

    async def _with_policy(self, allow: Allow, route: RouteSettings, request: RequestInfo,
                           identity: Identity | None, answer: Answer | None = None) -> Allow:
        if route.policy is None:
            return allow
        assert self._policy is not None, "routes naming a policy are refused when no engine is configured"
        outcome = await self._policy.decide(route.policy, request, identity, answer)
        return replace(allow, policy=outcome.decision,
                       dynamic_metadata={**allow.dynamic_metadata, "decision_id": outcome.decision_id})

    def _allow_for(self, answer: Answer, identity: Identity, route: RouteSettings) -> Allow:
        """The answer's Allow, made on its first allowed request and kept on it (``kept_allow``: for a route keeping
        the client's Authorization, which only differs when the answer has no JWT to swap in)."""
        if route.keep_authorization and identity.jwt is None:
            allow = answer.kept_allow
            if allow is None:
                allow = answer.kept_allow = self._allow(identity, route.authorization_server, keep_authorization=True)
            return allow
        allow = answer.allow
        if allow is None:
            allow = answer.allow = self._allow(identity, route.authorization_server)
        return allow

    def _allow(self, identity: Identity, server: str, keep_authorization: bool = False) -> Allow:
        metadata = _metadata(identity)
        if identity.jwt is not None:
            return Allow((("authorization", "Bearer " + identity.jwt),), self._remove, metadata, identity,
                         replies=Replies())
        # claims but no JWT: never pass the opaque token on as if it were one (unless the route keeps it)
        settings = self.config.authorization_servers[server]
        headers: tuple[tuple[str, str], ...] = ()
        remove = self._remove if keep_authorization else self._remove_with_authorization
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
