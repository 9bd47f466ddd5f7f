"""The whole configuration (``Config``): top-level keys and the sections, with the rules that join them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import Field, StrictBool, field_validator, model_validator

from authz.config.authorization_servers import (
    DEFAULT_CLOCK_SKEW_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    AuthorizationServerConfig,
)
from authz.config.cache import CacheConfig
from authz.config.dpop import DpopConfig
from authz.config.policy import PolicyConfig
from authz.config.routes import RoutesConfig, rule_key
from authz.config.server import CredentialConfig, ServerConfig
from authz.config.tracing import TracingConfig
from authz.config.types import HEADER_NAME, ConfigError, Listen, Model, Number, Text, Words

__all__ = ["Config"]

NO_SERVERS = "must map at least one name to an authorization server"
_NO_CERTIFICATE = ("checks the client certificate, which Envoy's HTTP ext_authz does not send; with server.http.listen "
                   "set, leave it off (certificate-bound tokens need the gRPC transport)")


def _header_names(names: tuple[str, ...]) -> tuple[str, ...]:
    lowered = tuple(h.lower() for h in names)
    if "authorization" in lowered:
        raise ValueError("must not list authorization (it carries the JWT upstream)")
    return lowered


class Config(Model):
    server: ServerConfig = ServerConfig()
    realm: Annotated[str, Text(re.compile(r'^[^"\\]*$'), "must not contain quotes or backslashes")] = "api"
    credential: CredentialConfig = CredentialConfig()
    dpop: DpopConfig = DpopConfig()  # RFC 9449 DPoP proofs (routes take them with their dpop setting)
    routes: RoutesConfig = RoutesConfig()
    # client-sent headers removed before the request goes upstream (so upstreams cannot be spoofed)
    headers_to_remove: Annotated[tuple[str, ...], Words(HEADER_NAME, "header name", _header_names)] = ()
    cors_preflight: Literal["authenticate", "allow"] = "authenticate"
    cors_preflight_on_policy_routes: StrictBool = False  # with cors_preflight: allow, also skip routes naming a policy
    # the default leeway_seconds of every authorization server
    clock_skew_seconds: Annotated[float, Number(ge=0, le=MAX_CLOCK_SKEW_SECONDS)] = DEFAULT_CLOCK_SKEW_SECONDS
    authorization_servers: Mapping[str, AuthorizationServerConfig]
    # set by _name_the_servers when absent (a factory: the schema shows no default)
    default_authorization_server: Annotated[str, Text()] = Field(
        default_factory=str, description="default: the first of authorization_servers")
    cache: CacheConfig = CacheConfig()
    # the cache admin gRPC API; loopback or unix socket only; empty: off
    admin_listen: Annotated[str | None, Listen(optional=True, loopback=True)] = "127.0.0.1:9002"
    metrics_listen: Annotated[str | None, Listen(optional=True)] = "127.0.0.1:9102"  # Prometheus /metrics; empty: off
    policy: PolicyConfig = PolicyConfig()
    tracing: TracingConfig = TracingConfig()  # OpenTelemetry spans (the otel extra); off by default

    @property
    def default_as(self) -> AuthorizationServerConfig:
        return self.authorization_servers[self.default_authorization_server]

    @model_validator(mode="before")
    @classmethod
    def _name_the_servers(cls, data: Any) -> Any:
        """Each server learns its name and its default leeway (``clock_skew_seconds``); the first is the default."""
        if not isinstance(data, Mapping):
            return data
        servers = data.get("authorization_servers")
        if not isinstance(servers, Mapping) or not servers:
            return data
        skew = data.get("clock_skew_seconds", DEFAULT_CLOCK_SKEW_SECONDS)
        named: dict[str, Any] = {}
        for name, entry in servers.items():
            if entry is None or isinstance(entry, Mapping):
                entry = dict(entry or {})
                if "name" in entry:
                    raise ConfigError(f"authorization_servers.{name}.name", "unknown key")
                entry = {"name": str(name), "leeway_seconds": skew, **entry}
            named[str(name)] = entry
        return {"default_authorization_server": next(iter(named)), **data, "authorization_servers": named}

    @field_validator("authorization_servers", mode="before")
    @classmethod
    def _some_servers(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or not value:
            raise ValueError(NO_SERVERS)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_authorization_server not in self.authorization_servers:
            raise ConfigError("default_authorization_server",
                              f"{self.default_authorization_server!r} is not in authorization_servers")
        if self.cors_preflight_on_policy_routes and self.cors_preflight != "allow":
            raise ConfigError("cors_preflight_on_policy_routes", "applies only with cors_preflight: allow")
        self._check_rules()
        self._check_resources()
        self._check_exchanges()
        self._check_dpop_workers()
        return self

    def _check_dpop_workers(self) -> None:
        """Several workers each hold a table of used DPoP proofs; without cache.redis sharing them, a proof would be
        accepted once per worker (authz.dpop.replay)."""
        if self.server.workers == 1 or self.cache.redis.enabled:
            return
        routes = self.routes
        modes: list[tuple[str, str | None]] = [("routes.dpop", routes.dpop)]
        modes += [("routes." + rule_key(routes, index, "dpop"), rule.dpop) for index, rule in enumerate(routes.rules)]
        for key, mode in modes:
            if mode not in (None, "off"):
                raise ConfigError(key, f"{mode} needs cache.redis with server.workers > 1: each worker keeps its own "
                                       "table of used DPoP proofs, so a proof would be accepted once per worker")

    def _check_exchanges(self) -> None:
        """A route asking for RFC 8693 token exchange names its audience and introspects with an AS that exchanges
        (a disabled route has no token to exchange: what it would inherit does not apply)."""
        routes = self.routes
        effective = [("routes", routes.exchange_audience, routes.exchange_scope, self.default_authorization_server,
                      routes.disabled)]
        for index, rule in enumerate(routes.rules):
            effective.append(("routes." + rule_key(routes, index), rule.exchange_audience or routes.exchange_audience,
                              routes.exchange_scope if rule.exchange_scope is None else rule.exchange_scope,
                              rule.authorization_server or self.default_authorization_server,
                              routes.disabled if rule.disabled is None else rule.disabled))
        for key, audience, scope, server, disabled in effective:
            if disabled:
                continue
            if audience is None and scope:
                raise ConfigError(f"{key}.exchange_scope", "narrows a token exchange: set exchange_audience too")
            if audience is not None and self.authorization_servers[server].token_exchange is None:
                raise ConfigError(f"authorization_servers.{server}.token_exchange",
                                  f"is required: {key} asks for tokens exchanged for audience {audience}")

    def _check_resources(self) -> None:
        """RFC 9728 metadata lists the ``issuer`` of each AS a route naming a resource introspects with."""
        routes = self.routes
        carriers = [("routes", routes.resource, self.default_authorization_server, routes.disabled)]
        carriers += [("routes." + rule_key(routes, index), rule.resource or routes.resource,
                      rule.authorization_server or self.default_authorization_server,
                      routes.disabled if rule.disabled is None else rule.disabled)
                     for index, rule in enumerate(routes.rules)]
        for key, resource, server, disabled in carriers:
            if resource is not None and not disabled and self.authorization_servers[server].issuer is None:
                raise ConfigError(f"authorization_servers.{server}.issuer",
                                  f"is required: {key} names resource {resource}, whose RFC 9728 metadata lists it")

    def _check_rules(self) -> None:
        """What a rule names exists; principal conditions only where the transport carries principals."""
        for index, rule in enumerate(self.routes.rules):
            server = rule.authorization_server
            if server is not None and server not in self.authorization_servers:
                raise ConfigError("routes." + rule_key(self.routes, index, "as"),
                                  f"no authorization server named {server!r}")
            if rule.policy is not None and not self.policy.enabled:
                raise ConfigError("routes." + rule_key(self.routes, index, "policy"),
                                  f"names {rule.policy!r} but no policy engine is configured (policy.paths or "
                                  "policy.remote)")
            if rule.match.principals and self.server.http.enabled:
                raise ConfigError("routes." + rule_key(self.routes, index, "match"),
                                  "matches on principals, which Envoy's HTTP ext_authz does not send; with "
                                  "server.http.listen set, match on hosts, paths, methods and headers only")
            if rule.mtls_bound not in (None, "off") and self.server.http.enabled:
                raise ConfigError("routes." + rule_key(self.routes, index, "mtls_bound"), _NO_CERTIFICATE)
        if self.routes.mtls_bound != "off" and self.server.http.enabled:
            raise ConfigError("routes.mtls_bound", _NO_CERTIFICATE)
