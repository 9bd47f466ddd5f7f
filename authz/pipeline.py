"""The pipeline: ``Authorizer.check(RequestInfo) -> Allow``, or a typed ``AuthzError``. Plain async Python.

Stages, in order (see DESIGN.md): route settings -> credential -> introspection -> token -> scopes -> response.
"""

from __future__ import annotations

from collections.abc import Mapping

from authz.config import Config
from authz.credential import bearer_token
from authz.errors import AuthzError, InvalidToken, UpstreamMisbehaved
from authz.introspection import Introspector
from authz.logs import token_id
from authz.models import Allow, Identity, RequestInfo, RouteSettings
from authz.routes import RouteResolver
from authz.scopes import require_scopes
from authz.token import IdentityReader

__all__ = ["Authorizer"]


class Authorizer:
    def __init__(
        self,
        config: Config,
        introspectors: Mapping[str, Introspector],
        identities: IdentityReader | None = None,
    ) -> None:
        self.config = config
        self.routes = RouteResolver(config)
        self._introspectors = introspectors
        self._identities = identities or IdentityReader(config.clock_skew_seconds)
        self._remove = config.headers_to_remove
        self._pass = Allow(headers_to_remove=config.headers_to_remove)

    async def check(self, request: RequestInfo) -> Allow:
        route = self.routes.resolve(request.context_extensions)
        if route.disabled or self._is_preflight(request):
            return self._pass
        token = bearer_token(request.authorization, self.config.credential.max_token_length)
        try:
            identity = await self._identify(token, route)
            require_scopes(identity.scopes, route.required_scopes)
        except AuthzError as exc:
            exc.token_id = token_id(token)
            raise
        return Allow(
            headers=(("authorization", "Bearer " + identity.jwt),),
            headers_to_remove=self._remove,
            dynamic_metadata=_metadata(identity),
            identity=identity,
        )

    async def _identify(self, token: str, route: RouteSettings) -> Identity:
        introspector = self._introspectors[route.authorization_server]
        answer = await introspector.introspect(token)
        if not answer.active:
            raise InvalidToken("authorization server says the token is not active")
        if answer.jwt is None:
            raise UpstreamMisbehaved(f"AS {route.authorization_server}: active answer carries no JWT")
        return self._identities.read(answer.jwt, route.authorization_server)

    def _is_preflight(self, request: RequestInfo) -> bool:
        return (
            self.config.cors_preflight == "allow"
            and request.method == "OPTIONS"
            and "access-control-request-method" in request.headers
        )


def _metadata(identity: Identity) -> dict[str, str]:
    meta = {"scope": " ".join(sorted(identity.scopes))}
    if identity.subject is not None:
        meta["sub"] = identity.subject
    if identity.client_id is not None:
        meta["client_id"] = identity.client_id
    return meta
