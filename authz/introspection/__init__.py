"""Stages 3 and 4: introspection in the AS's dialect, and verification of what it returns."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from authz.config import Config
from authz.introspection.authority import Authority
from authz.introspection.client import ASResponse, AuthorizationServerClient
from authz.introspection.phantom import PhantomIntrospector
from authz.introspection.rfc7662 import Rfc7662Introspector
from authz.introspection.rfc9701 import Rfc9701Introspector

__all__ = [
    "ASResponse",
    "Authority",
    "AuthorizationServerClient",
    "PhantomIntrospector",
    "Rfc7662Introspector",
    "Rfc9701Introspector",
    "build_authorities",
]


def build_authorities(config: Config, session: aiohttp.ClientSession) -> Mapping[str, Authority]:
    """One ``Authority`` per configured authorization server, sharing one HTTP session."""
    return {name: Authority(server, session) for name, server in config.authorization_servers.items()}
