"""Stages 3 and 4: introspection in the AS's dialect, and verification of what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp

from authz.config import Config
from authz.introspection.authority import Authority
from authz.introspection.client import ASResponse, AuthorizationServerClient
from authz.introspection.phantom import PhantomIntrospector
from authz.introspection.rfc7662 import Rfc7662Introspector
from authz.introspection.rfc9701 import Rfc9701Introspector

if TYPE_CHECKING:
    from authz.tracing.otel import Tracing

__all__ = [
    "ASResponse",
    "Authority",
    "AuthorizationServerClient",
    "PhantomIntrospector",
    "Rfc7662Introspector",
    "Rfc9701Introspector",
    "build_authorities",
]


def build_authorities(config: Config, session: aiohttp.ClientSession,
                      tracing: Tracing | None = None) -> Mapping[str, Authority]:
    """One ``Authority`` per configured authorization server, sharing one HTTP session."""
    return {name: Authority(server, session, tracing=tracing) for name, server in config.authorization_servers.items()}
