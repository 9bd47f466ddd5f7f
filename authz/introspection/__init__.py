"""Stage 3: introspection. One ``Introspector`` per authorization server, its dialect chosen in config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import aiohttp

from authz.config import Config
from authz.introspection.client import ASResponse, AuthorizationServerClient
from authz.introspection.phantom import PhantomIntrospector
from authz.models import Introspection

__all__ = [
    "ASResponse",
    "AuthorizationServerClient",
    "Introspector",
    "PhantomIntrospector",
    "build_introspectors",
]


class Introspector(Protocol):
    dialect: str

    async def introspect(self, token: str) -> Introspection: ...


def build_introspectors(config: Config, session: aiohttp.ClientSession) -> Mapping[str, Introspector]:
    """One introspector per configured authorization server, sharing one HTTP session."""
    return {
        name: PhantomIntrospector(AuthorizationServerClient(server, session))
        for name, server in config.authorization_servers.items()
    }
