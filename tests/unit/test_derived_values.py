"""What is derived from a cached AS answer (identity, Allow, replies) lives on the cache entry, and the cache key
names the whole configuration of the AS: through the real pipeline, cache, Authority and a local AS."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.cache import IntrospectionCache
from authz.config import AuthorizationServerConfig, Config, PrivateKeyJwtConfig, Secret, load_config
from authz.config.token_exchange import TokenExchangeConfig
from authz.introspection import build_authorities
from authz.introspection.authority import configuration_hash
from authz.metrics import Metrics
from authz.models import RequestInfo
from authz.pipeline import AuthorityLike, Authorizer
from tests.local_http import serve

TOKEN = "opaque-token-shared-by-two-routes"


@dataclass
class LocalAS:
    """An RFC 7662 AS answering claims (no JWT) for every token; counts its introspection calls."""

    url: str = ""
    calls: list[str] = field(default_factory=list)


@pytest.fixture
async def local_as() -> AsyncIterator[LocalAS]:
    state = LocalAS()

    async def introspect(request: web.Request) -> web.StreamResponse:
        state.calls.append(str((await request.post())["token"]))
        return web.json_response({"active": True, "sub": "alice", "scope": "read", "client_id": "web",
                                  "exp": int(time.time()) + 600})

    app = web.Application()
    app.router.add_post("/introspect", introspect)
    async with serve(app) as base:
        state.url = f"{base}/introspect"
        yield state


def _config(tmp_path: Path, servers: Mapping[str, Mapping[str, Any]], cache: bool = True) -> Config:
    doc = {"authorization_servers": dict(servers), "routes": {"required_scopes": ["read"]},
           "cache": {"enabled": cache}}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


def _server(local_as: LocalAS, **settings: Any) -> dict[str, Any]:
    return {"introspection_endpoint": local_as.url, "client_id": "gw", "client_secret_env": "S",
            "dialect": "rfc7662", **settings}


def _request(**extensions: str) -> RequestInfo:
    return RequestInfo("GET", "/orders", "api.example", {}, (f"Bearer {TOKEN}",), extensions)


def _decider(config: Config, session: aiohttp.ClientSession) -> tuple[Authorizer, IntrospectionCache | None]:
    authorities: dict[str, AuthorityLike] = dict(build_authorities(config, session))
    cache = None
    if config.cache.enabled:
        cache = IntrospectionCache(config.cache, Metrics())
        authorities = {name: cache.wrap(a) for name, a in authorities.items()}  # type: ignore[arg-type]
    return Authorizer(config, authorities), cache


async def _check(decider: Authorizer, **extensions: str) -> CheckResponse:
    return await decider.decide(lambda: _request(**extensions), lambda: "GET /orders")


def _headers(response: CheckResponse) -> dict[str, str]:
    assert response.HasField("ok_response"), response
    return {o.header.key: o.header.value for o in response.ok_response.headers}


async def test_two_authorization_servers_sharing_an_endpoint_never_share_an_allow(
        local_as: LocalAS, tmp_path: Path) -> None:
    """Same endpoint, client id and dialect; only claims_forwarding differs. Each AS's answer (and the Allow made
    from it) is its own: the claims header is sent for the AS that forwards claims, and only for it."""
    config = _config(tmp_path, {"plain": _server(local_as),
                                "forwarding": _server(local_as, claims_forwarding="header")})
    async with aiohttp.ClientSession() as session:
        decider, _ = _decider(config, session)
        first = await _check(decider, **{"as": "plain"})
        forwarded = await _check(decider, **{"as": "forwarding"})
        again = await _check(decider, **{"as": "plain"})
    assert "x-token-claims" not in _headers(first) and "x-token-claims" not in _headers(again)
    claims = json.loads(_b64(_headers(forwarded)["x-token-claims"]))
    assert claims["sub"] == "alice"
    assert local_as.calls == [TOKEN, TOKEN]  # one call per AS; the third request was a hit of the first's entry


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_every_setting_of_an_authorization_server_is_in_its_cache_identity() -> None:
    base = AuthorizationServerConfig(name="corp", introspection_endpoint="https://as.example/i", client_id="gw",
                                     client_secret=Secret("sekrit-1"), dialect="rfc7662")
    changed: dict[str, Any] = {
        "name": "other", "introspection_endpoint": "https://as.example/j", "client_id": "gw2",
        "dialect": "phantom", "client_auth_method": "client_secret_post",
        "private_key_jwt": PrivateKeyJwtConfig(key_pem=Secret("pem"), kid="k1"), "timeout_seconds": 3.0,
        "max_response_bytes": 1024, "retry_after_seconds": 9, "verify_tls": False, "allow_insecure_http": True,
        "issuer": "https://as.example", "jwks_uri": "https://as.example/jwks",
        "metadata_url": "https://as.example/meta", "audiences": ("api",), "algorithms": ("ES256",),
        "leeway_seconds": 5.0, "jwks_cache_seconds": 60.0, "jwks_min_refresh_seconds": 1.0, "jwt_field": "jwt",
        "claims_forwarding": "header", "claims_header": "x-claims", "ca_file": "/etc/as-ca.pem",
        "client_cert_file": "/etc/gw-cert.pem", "token_exchange": TokenExchangeConfig(subject_token="jwt"),
        "tls_reload_interval_seconds": 1.0,
    }
    settings = set(AuthorizationServerConfig.model_fields)
    # a new setting must be added here (and so to the key); the secrets and their sources are no part of it (the
    # client certificate's key is the credential of the RFC 8705 methods)
    assert settings - set(changed) == {"client_secret", "client_secret_file", "client_secret_env", "client_key_file",
                                       "client_key_pem"}
    identity = configuration_hash(base)
    for name, value in changed.items():
        assert configuration_hash(base.model_copy(update={name: value})) != identity, name
    # a secret is no part of it: a rotated secret keeps the cache, and no secret reaches a key
    for secret in ({"client_secret": Secret("sekrit-2")}, {"client_secret_file": "/run/secrets/gw"},
                   {"client_secret_env": "GW_SECRET"}):
        assert configuration_hash(base.model_copy(update=secret)) == identity
    assert "sekrit" not in repr(base)


async def test_a_cached_answer_keeps_its_replies_until_it_is_evicted(local_as: LocalAS, tmp_path: Path) -> None:
    config = _config(tmp_path, {"plain": _server(local_as)})
    async with aiohttp.ClientSession() as session:
        decider, cache = _decider(config, session)
        assert cache is not None
        first = await _check(decider)
        assert await _check(decider) is first  # a hit: the entry's reply, made once
        assert await cache.evict_token(TOKEN) == 1
        after = await _check(decider)  # the entry and what was derived from it are gone: made again
    assert after is not first and after == first
    assert local_as.calls == [TOKEN, TOKEN]


async def test_without_the_cache_nothing_is_kept_between_requests(local_as: LocalAS, tmp_path: Path) -> None:
    config = _config(tmp_path, {"plain": _server(local_as)}, cache=False)
    async with aiohttp.ClientSession() as session:
        decider, cache = _decider(config, session)
        first, second = await _check(decider), await _check(decider)
    assert cache is None and first is not second and first == second
    assert local_as.calls == [TOKEN, TOKEN]


async def test_a_route_keeping_authorization_has_its_own_reply_for_a_cached_claims_only_answer(
        local_as: LocalAS, tmp_path: Path) -> None:
    """One cached answer, two kinds of route: each gets the removals of its own kind, in either order."""
    config = _config(tmp_path, {"plain": _server(local_as)})
    async with aiohttp.ClientSession() as session:
        decider, _ = _decider(config, session)
        replies = [await _check(decider, **extensions)
                   for extensions in ({}, {"keep_authorization": "true"}, {}, {"keep_authorization": "true"})]
    removed = [tuple(r.ok_response.headers_to_remove) for r in replies]
    assert "authorization" in removed[0] and "authorization" in removed[2]
    assert "authorization" not in removed[1] and "authorization" not in removed[3]
    assert local_as.calls == [TOKEN]
