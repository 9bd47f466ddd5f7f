"""The ``rfc7662`` dialect: ``Accept: application/json``; 200 JSON with a boolean ``active``.

Active answers carry the token's claims; if ``jwt_field`` is configured (Keycloak's ``jwt``, a Curity
token-procedure field such as ``phantom_token``), that field must hold the JWT to forward, which is then verified
like a phantom JWT. Anything else (204, another content type, no boolean ``active``) is ``UpstreamMisbehaved``.
"""

from __future__ import annotations

from typing import Any

from authz.claims import check_access_token
from authz.errors import UpstreamMisbehaved
from authz.introspection.client import ASResponse, AuthorizationServerClient
from authz.json_body import parse_json_object
from authz.models import Introspection

__all__ = ["Rfc7662Introspector", "json_object"]

ACCEPT = "application/json"
_INACTIVE = Introspection(active=False)


def json_object(resp: ASResponse, as_name: str) -> dict[str, Any]:
    """The body as a JSON object, if the content type says JSON."""
    if resp.content_type != "application/json" and not resp.content_type.endswith("+json"):
        raise UpstreamMisbehaved(f"AS {as_name}: expected JSON, got Content-Type {resp.content_type or 'none'!r}")
    return parse_json_object(resp.body, f"AS {as_name}: introspection answer", UpstreamMisbehaved)


def claims_from_answer(doc: dict[str, Any], as_name: str, max_age: int | None) -> Introspection:
    """RFC 7662 §2.2 fields -> ``Introspection`` (the caller picks out any JWT)."""
    active = doc.get("active")
    if not isinstance(active, bool):
        raise UpstreamMisbehaved(f"AS {as_name}: introspection answer has no boolean 'active'")
    if not active:
        return _INACTIVE
    return Introspection(active=True, claims={k: v for k, v in doc.items() if k != "active"}, max_age=max_age)


class Rfc7662Introspector:
    dialect = "rfc7662"

    def __init__(self, client: AuthorizationServerClient, jwt_field: str | None = None) -> None:
        self.client = client
        self._jwt_field = jwt_field

    async def introspect(self, token: str) -> Introspection:
        name = self.client.name
        resp = await self.client.introspect(token, ACCEPT)
        if resp.status != 200:
            raise UpstreamMisbehaved(f"AS {name}: rfc7662 introspection answered HTTP {resp.status}, not 200")
        answer = claims_from_answer(json_object(resp, name), name, resp.max_age)
        if not answer.active or self._jwt_field is None:
            return answer
        check_access_token(answer.claims)  # what the answer says of the token; the JWT's claims replace it
        jwt = answer.claims.get(self._jwt_field)
        if not isinstance(jwt, str) or jwt.count(".") != 2:
            raise UpstreamMisbehaved(f"AS {name}: active answer has no JWT in field {self._jwt_field!r}")
        claims = {k: v for k, v in answer.claims.items() if k != self._jwt_field}
        return Introspection(active=True, jwt=jwt, claims=claims, max_age=answer.max_age)
