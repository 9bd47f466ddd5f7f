"""RFC 8693 through the real pipeline, cache, Authority and the dev AS on loopback: the upstream gets a token
exchanged for the route's audience and scopes, once per cached answer, audience and scope (single-flight, the
cache's TTL rule, gone with the entry), and every failure fails closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from aiohttp import web
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.cache import IntrospectionCache
from authz.config import Config, ConfigError, load_config
from authz.introspection import build_authorities
from authz.metrics import Metrics
from authz.models import RequestInfo
from authz.pipeline import AuthorityLike, Authorizer
from authz.token_exchange import ExchangeStage
from devtools.auth_server import DEV_AS_KEY, METADATA_PATH, TOKEN_PATH, DevASConfig, DevAuthServer, DevClient, start

GW_SECRET = "gw-secret"
CLIENTS = {"demo-client": DevClient("demo-secret", ("read", "write", "admin"), ("read",)),
           "gateway-client": DevClient(GW_SECRET, can_introspect=True, can_exchange=True)}
ORDERS = {"exchange_audience": "orders.example.com", "exchange_scope": "read"}


class Gateway:
    """The dev AS, a token it issued (``read write`` for alice) and the pipeline in front of it."""

    def __init__(self, dev_as: DevAuthServer, runner: web.AppRunner, tmp_path: Path,
                 session: aiohttp.ClientSession) -> None:
        self.dev_as, self.runner, self.tmp_path, self.session = dev_as, runner, tmp_path, session
        self.token = dev_as.issue("demo-client", "alice", ("read", "write"))
        self.metrics = Metrics()
        self.cache: IntrospectionCache | None = None

    def config(self, exchange: dict[str, Any] | None = None, cache: dict[str, Any] | None = None,
               **server: Any) -> Config:
        base = self.dev_as.base_url
        entry = {"introspection_endpoint": f"{base}/oauth/v2/oauth-introspect", "client_id": "gateway-client",
                 "client_secret_env": "S", "issuer": self.dev_as.issuer, "jwks_uri": f"{base}/oauth/v2/oauth-anonymous/"
                 "jwks", "token_exchange": {"token_endpoint": base + TOKEN_PATH, **(exchange or {})}, **server}
        doc = {"authorization_servers": {"dev": entry}, "routes": {"required_scopes": "read"},
               "cache": cache or {}}
        path = self.tmp_path / "authz.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return load_config(path, {"S": GW_SECRET})

    def authorizer(self, config: Config | None = None) -> Authorizer:
        config = config or self.config()
        self.cache = IntrospectionCache(config.cache, self.metrics)
        authorities: dict[str, AuthorityLike] = {
            name: self.cache.wrap(a) for name, a in build_authorities(config, self.session).items()}
        return Authorizer(config, authorities, metrics=self.metrics)

    def exchanges(self, result: str) -> float:
        return self.metrics.token_exchanges.labels("dev", result)._value.get()  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
async def gateway(tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[Gateway]:
    runner = await start(DevASConfig(port=0, clients=CLIENTS))
    try:
        yield Gateway(runner.app[DEV_AS_KEY], runner, tmp_path, session)
    finally:
        await runner.cleanup()


async def check(authorizer: Authorizer, token: str, **extensions: str) -> CheckResponse:
    request = RequestInfo("GET", "/orders/1", "api.example", {}, (f"Bearer {token}",), extensions)
    return await authorizer.decide(lambda: request, lambda: "GET /orders/1")


def forwarded(response: CheckResponse) -> str:
    assert response.HasField("ok_response"), response
    headers = {o.header.key: o.header.value for o in response.ok_response.headers}
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def denied(response: CheckResponse, status: int) -> None:
    assert response.HasField("denied_response"), response
    assert response.denied_response.status.code == status, response
    assert not response.HasField("ok_response")


async def test_the_upstream_gets_a_token_for_the_route_audience_exchanged_once_per_answer(gateway: Gateway) -> None:
    authorizer = gateway.authorizer()
    phantom = forwarded(await check(authorizer, gateway.token))  # a route without exchange: the introspected JWT
    first = forwarded(await check(authorizer, gateway.token, **ORDERS))
    assert first != phantom and claims(phantom)["aud"] == "api.example.com"
    exchanged = claims(first)
    assert exchanged["aud"] == "orders.example.com" and exchanged["scope"] == "read"
    assert exchanged["sub"] == "alice" and exchanged["act"] == {"sub": "gateway-client"}
    assert exchanged["exp"] <= claims(phantom)["exp"]
    for _ in range(3):
        assert forwarded(await check(authorizer, gateway.token, **ORDERS)) == first
    assert (gateway.dev_as.exchanges, gateway.dev_as.introspections) == (1, 1)
    billing = claims(forwarded(await check(authorizer, gateway.token, exchange_audience="billing.example.com")))
    assert billing["aud"] == "billing.example.com" and billing["scope"] == "read write"  # no scope asked: the AS's
    wider = claims(forwarded(await check(authorizer, gateway.token, exchange_audience="orders.example.com",
                                         exchange_scope="read write")))
    assert wider["scope"] == "read write"
    assert gateway.dev_as.exchanges == 3  # one per (audience, scope) of the one cached answer
    assert (gateway.exchanges("hit"), gateway.exchanges("exchanged")) == (3, 3)


async def test_concurrent_requests_share_one_exchange(gateway: Gateway) -> None:
    authorizer = gateway.authorizer()
    forwarded(await check(authorizer, gateway.token))  # the answer cached first, so the exchanges run together
    tokens = {forwarded(r) for r in await asyncio.gather(*(check(authorizer, gateway.token, **ORDERS)
                                                           for _ in range(20)))}
    assert len(tokens) == 1 and gateway.dev_as.exchanges == 1
    assert gateway.exchanges("joined") == 19


async def test_a_refused_exchange_fails_closed_and_the_refusal_is_kept_for_the_negative_ttl(gateway: Gateway) -> None:
    authorizer = gateway.authorizer()
    for _ in range(3):  # the token holds read and write: admin would widen it (the dev AS says invalid_scope)
        denied(await check(authorizer, gateway.token, exchange_audience="orders.example.com",
                           exchange_scope="admin"), 502)
    assert (gateway.exchanges("refused"), gateway.exchanges("refusal_hit")) == (1, 2)
    assert gateway.metrics.registry.get_sample_value("phantom_authz_checks_total", {
        "outcome": "deny", "status": "502", "reason": "token_exchange_failed"}) == 3
    forwarded(await check(authorizer, gateway.token, **ORDERS))  # the answer and other routes are unaffected


async def test_an_as_that_cannot_exchange_fails_closed_with_503_and_is_asked_again(gateway: Gateway) -> None:
    authorizer = gateway.authorizer()
    forwarded(await check(authorizer, gateway.token))  # the answer is cached: only the exchange needs the AS
    await gateway.runner.cleanup()
    for attempt in (1, 2):
        response = await check(authorizer, gateway.token, **ORDERS)
        denied(response, 503)
        assert {h.header.key: h.header.value for h in response.denied_response.headers}["retry-after"] == "5"
        assert gateway.exchanges("unavailable") == attempt
    forwarded(await check(authorizer, gateway.token))  # the route without exchange still has its answer


async def test_an_exchanged_token_is_kept_by_the_cache_ttl_rule(gateway: Gateway) -> None:
    authorizer = gateway.authorizer(gateway.config(cache={"max_ttl_seconds": 60, "expiry_skew_seconds": 5}))
    now = [time.time()]
    authorizer.exchange = ExchangeStage(authorizer.config.cache, gateway.metrics, (), clock=lambda: now[0])
    first = forwarded(await check(authorizer, gateway.token, **ORDERS))
    now[0] += 59
    assert forwarded(await check(authorizer, gateway.token, **ORDERS)) == first
    now[0] += 2  # past max_ttl_seconds (the token itself lives 300 s): exchanged again
    forwarded(await check(authorizer, gateway.token, **ORDERS))
    assert gateway.dev_as.exchanges == 2


async def test_a_token_near_its_end_is_kept_no_longer_than_its_exp_less_the_skew(gateway: Gateway) -> None:
    gateway.dev_as.config = DevASConfig(port=0, clients=CLIENTS, token_ttl=30)  # exchanged tokens live 30 s
    authorizer = gateway.authorizer(gateway.config(cache={"max_ttl_seconds": 300, "expiry_skew_seconds": 5}))
    now = [time.time()]
    authorizer.exchange = ExchangeStage(authorizer.config.cache, gateway.metrics, (), clock=lambda: now[0])
    forwarded(await check(authorizer, gateway.token, **ORDERS))
    now[0] += 23
    forwarded(await check(authorizer, gateway.token, **ORDERS))
    assert gateway.dev_as.exchanges == 1
    now[0] += 3  # 26 s: within 5 s of the exchanged token's exp
    forwarded(await check(authorizer, gateway.token, **ORDERS))
    assert gateway.dev_as.exchanges == 2


async def test_evicting_the_answer_drops_its_exchanged_tokens(gateway: Gateway) -> None:
    authorizer = gateway.authorizer()
    first = forwarded(await check(authorizer, gateway.token, **ORDERS))
    assert gateway.cache is not None
    assert await gateway.cache.evict_token(gateway.token) == 1
    assert forwarded(await check(authorizer, gateway.token, **ORDERS)) != first
    assert (gateway.dev_as.exchanges, gateway.dev_as.introspections) == (2, 2)
    gateway.dev_as.tokens[gateway.token].revoked = True
    assert await gateway.cache.evict_token(gateway.token) == 1
    denied(await check(authorizer, gateway.token, **ORDERS), 401)  # revoked: introspection says so first
    assert gateway.dev_as.exchanges == 2


@pytest.mark.parametrize("exchange", [{"subject_token": "jwt"}, {"requested_token_type": "access_token"},
                                      {"token_endpoint": None}])
async def test_the_subject_and_requested_token_kinds_and_a_discovered_endpoint(
        gateway: Gateway, exchange: dict[str, Any]) -> None:
    server = {"metadata_url": gateway.dev_as.base_url + METADATA_PATH, "allow_insecure_http": True}
    config = gateway.config({k: v for k, v in exchange.items() if v is not None}, **server)
    exchanged = claims(forwarded(await check(gateway.authorizer(config), gateway.token, **ORDERS)))
    assert exchanged["aud"] == "orders.example.com" and gateway.dev_as.exchanges == 1


async def test_a_claims_only_answer_is_exchanged_and_its_claims_header_not_sent(gateway: Gateway) -> None:
    config = gateway.config(dialect="rfc7662", claims_forwarding="header")
    authorizer = gateway.authorizer(config)
    response = await check(authorizer, gateway.token, **ORDERS)
    assert claims(forwarded(response))["aud"] == "orders.example.com"
    assert "x-token-claims" in response.ok_response.headers_to_remove  # a client's copy; we send none
    assert [o.header.key for o in response.ok_response.headers] == ["authorization"]


@pytest.mark.parametrize(("extensions", "why"), [
    ({"exchange_scope": "read"}, "set exchange_audience too"),
    ({"exchange_audience": "two audiences"}, "is not one audience"),
    ({"exchange_audience": "orders", "exchange_scope": 'bad"scope'}, "not a scope token"),
    ({"exchange_audience": "orders", "as": "plain"}, "does not exchange tokens"),
])
async def test_bad_exchange_settings_fail_the_route_closed(gateway: Gateway, tmp_path: Path,
                                                           extensions: dict[str, str], why: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    config = gateway.config()
    plain = config.authorization_servers["dev"].model_copy(update={"name": "plain", "token_exchange": None})
    config = config.model_copy(update={"authorization_servers": {**config.authorization_servers, "plain": plain}})
    denied(await check(gateway.authorizer(config), gateway.token, **extensions), 500)
    assert why in caplog.text
    assert gateway.dev_as.exchanges == 0


def _load(tmp_path: Path, routes: dict[str, Any], exchange: bool = True) -> Callable[[], Config]:
    server = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
              "issuer": "https://as.example", **({"token_exchange": {}} if exchange else {})}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"main": server}, "routes": routes}))
    return lambda: load_config(path, {"S": "s"})


@pytest.mark.parametrize(("routes", "exchange", "message"), [
    ({"exchange_audience": "orders"}, False, "authorization_servers.main.token_exchange: is required: routes asks"),
    ({"rules": [{"name": "o", "exchange_audience": "orders"}]}, False, "routes.rules[0] (o) asks for tokens"),
    ({"exchange_scope": "read"}, True, "routes.exchange_scope: narrows a token exchange"),
    ({"rules": [{"name": "o", "exchange_scope": "read"}]}, True, "routes.rules[0] (o).exchange_scope: narrows"),
    ({"rules": [{"name": "h", "disabled": True, "exchange_audience": "x"}]}, True,
     "needs no token, so exchange_audience would"),
    ({"exchange_audience": "two words"}, True, "must be one audience"),
])
def test_the_configuration_refuses_an_exchange_it_cannot_make(tmp_path: Path, routes: dict[str, Any],
                                                              exchange: bool, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        _load(tmp_path, routes, exchange)()


def test_a_disabled_rule_ignores_the_default_exchange_and_rules_inherit_it(tmp_path: Path) -> None:
    config = _load(tmp_path, {"exchange_audience": "orders", "exchange_scope": "read", "default": "defaults",
                              "rules": [{"name": "health", "match": {"paths": ["/health"]}, "disabled": True},
                                        {"name": "any", "match": {"paths": ["/any/**"]}, "exchange_scope": "-"}]})()
    authorizer = Authorizer(config, {})
    settings = {rule: authorizer.routes.resolve(RequestInfo("GET", path, "h", {}, (), {}))[0]
                for rule, path in (("health", "/health"), ("any", "/any/x"), ("defaults", "/x"))}
    assert (settings["defaults"].exchange_audience, settings["defaults"].exchange_scope) == ("orders", ("read",))
    assert (settings["any"].exchange_audience, settings["any"].exchange_scope) == ("orders", None)
    assert settings["health"].disabled


@pytest.mark.parametrize(("exchange", "server", "message"), [
    ({"subject_token": "jwt"}, {"dialect": "rfc9701"}, "jwt: dialect 'rfc9701' returns no JWT"),
    ({}, {"issuer": None, "dialect": "rfc7662"}, "issuer: is required to verify the JWTs of token exchange"),
    ({"requested_token_type": "access_token"}, {"issuer": None, "dialect": "rfc7662"},
     "token_exchange.token_endpoint: is required without issuer"),
    ({}, {"issuer": "http://as.example"}, "token_exchange.token_endpoint: is found in the AS metadata, which needs"),
])
def test_an_authorization_server_section_that_cannot_work_is_refused(
        tmp_path: Path, exchange: dict[str, Any], server: dict[str, Any], message: str) -> None:
    entry = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
             "issuer": "https://as.example", "jwks_uri": "https://as.example/jwks", "token_exchange": exchange,
             **server}
    path = tmp_path / "as.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"main": {k: v for k, v in entry.items()
                                                                        if v is not None}}}))
    with pytest.raises(ConfigError, match=message):
        load_config(path, {"S": "s"})


async def test_a_reload_keeps_the_exchanged_token_with_the_new_configurations_headers(gateway: Gateway) -> None:
    """A reload builds a new pipeline over the same cache (``authz.app``): the token exchanged before it is still
    forwarded (no second exchange), with what the new configuration removes (here a header it now names), not what
    the old one did."""
    config = gateway.config()
    cache = IntrospectionCache(config.cache, gateway.metrics)
    authorities: dict[str, AuthorityLike] = {
        name: cache.wrap(a) for name, a in build_authorities(config, gateway.session).items()}
    before = await check(Authorizer(config, authorities, metrics=gateway.metrics), gateway.token, **ORDERS)
    assert "x-spoofed-user" not in before.ok_response.headers_to_remove
    reloaded = config.model_copy(update={"headers_to_remove": ("x-spoofed-user",)})
    after = await check(Authorizer(reloaded, authorities, metrics=gateway.metrics), gateway.token, **ORDERS)
    assert forwarded(after) == forwarded(before)
    assert "x-spoofed-user" in after.ok_response.headers_to_remove
    assert (gateway.dev_as.exchanges, gateway.dev_as.introspections) == (1, 1)
