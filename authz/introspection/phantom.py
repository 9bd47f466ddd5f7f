"""The ``phantom`` dialect (Curity): ``Accept: application/jwt``; 200 = the JWT as the body, 204 = inactive.

A 200 JSON ``{"active": false}`` is also read as inactive (some servers answer so). Anything else that is not
what the dialect promises (another content type, a body that is not a compact JWS) is ``UpstreamMisbehaved``.
"""

from __future__ import annotations

import re

from authz.errors import UpstreamMisbehaved
from authz.introspection.client import AuthorizationServerClient
from authz.json_body import parse_json_object
from authz.models import Introspection

__all__ = ["PhantomIntrospector"]

ACCEPT = "application/jwt"
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_INACTIVE = Introspection(active=False)


class PhantomIntrospector:
    dialect = "phantom"

    def __init__(self, client: AuthorizationServerClient) -> None:
        self.client = client

    async def introspect(self, token: str) -> Introspection:
        resp = await self.client.introspect(token, ACCEPT)
        if resp.status == 204:
            return _INACTIVE
        if resp.content_type == "application/json":
            return self._json_answer(resp.body)
        if resp.content_type != ACCEPT:
            raise UpstreamMisbehaved(
                f"AS {self.client.name}: expected Content-Type {ACCEPT}, got {resp.content_type or 'none'!r}"
            )
        try:
            jwt = resp.body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise UpstreamMisbehaved(f"AS {self.client.name}: JWT body is not ASCII") from None
        if not _COMPACT_JWS.fullmatch(jwt):
            raise UpstreamMisbehaved(f"AS {self.client.name}: body is not a compact JWT")
        return Introspection(active=True, jwt=jwt, max_age=resp.max_age)

    def _json_answer(self, body: bytes) -> Introspection:
        doc = parse_json_object(body, f"AS {self.client.name}: introspection answer", UpstreamMisbehaved)
        if doc.get("active") is False:
            return _INACTIVE
        raise UpstreamMisbehaved(
            f"AS {self.client.name}: phantom dialect expects a JWT, got a JSON body other than active=false"
        )
