"""Typed, validated configuration: one YAML file plus ``AUTHZ__``-prefixed environment overrides.

Every error names the key it is about (``authorization_servers.curity.timeout_seconds: must be > 0``), and unknown
keys are errors. Secrets never sit inline in the file: a client secret comes from a file
(``client_secret_file``), a named environment variable (``client_secret_env``), or the override variable
``AUTHZ__AUTHORIZATION_SERVERS__<NAME>__CLIENT_SECRET``.

Environment overrides: ``AUTHZ__SERVER__LISTEN=unix:/run/authz.sock`` sets ``server.listen``; the value is read as a
YAML scalar or flow sequence (``AUTHZ__HEADERS_TO_REMOVE='[x-user-id, x-role]'``), except a ``client_secret``,
which is taken verbatim.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization

from authz.config_cache import CacheConfig, parse_cache
from authz.config_http import HttpTransportConfig, parse_http_transport
from authz.config_policy import PolicyConfig, parse_policy
from authz.config_section import ConfigError, Secret, Section, read_file, url
from authz.scopes import ScopeSyntaxError, required_scopes

__all__ = [
    "AuthorizationServerConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "CredentialConfig",
    "PolicyConfig",
    "PrivateKeyJwtConfig",
    "RouteDefaults",
    "Secret",
    "ServerConfig",
    "load_config",
]

ENV_PREFIX = "AUTHZ__"
_VERBATIM = frozenset({"client_secret"})  # override values taken as-is, not read as YAML
DIALECTS = ("phantom", "rfc7662", "rfc9701")
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
CLAIMS_FORWARDING = ("none", "header")
DEFAULT_MAX_RECEIVE_BYTES = 32 * 1024 * 1024
ENVOY_MAX_HEADER_BYTES = 8192 * 1024  # Envoy's cap on max_request_headers_kb: its largest possible header block
_GRPC_MAX_MESSAGE = 2**31 - 1
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:9001"
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    event_loop: str = "uvloop"  # uvloop (measured ~20% more Checks/s with grpc.aio here) or asyncio
    workers: int = 1  # processes sharing the port with SO_REUSEPORT (TCP only); each has its own L1 cache
    # the largest CheckRequest gRPC accepts; larger ones fail with RESOURCE_EXHAUSTED, which Envoy turns into
    # status_on_error (or, with failure_mode_allow: true, an allow), so it must exceed anything Envoy may send
    max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    # Envoy HTTP ext_authz mode, off by default; its address is server.http.listen (a section, not a flat http_listen)
    http: HttpTransportConfig = field(default_factory=HttpTransportConfig)


@dataclass(frozen=True, slots=True)
class CredentialConfig:
    max_token_length: int = 4096


@dataclass(frozen=True, slots=True)
class RouteDefaults:
    required_scopes: tuple[str, ...] = ()
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class PrivateKeyJwtConfig:
    """RFC 7523 client authentication: an assertion signed with our private key, fresh per request."""

    key_pem: Secret
    algorithm: str = "RS256"
    kid: str | None = None
    audience: str | None = None  # default: the AS issuer, else the introspection endpoint
    lifetime_seconds: int = 60


@dataclass(frozen=True, slots=True)
class AuthorizationServerConfig:
    name: str
    introspection_endpoint: str
    client_id: str
    client_secret: Secret | None = None
    dialect: str = "phantom"
    client_auth_method: str = "client_secret_basic"
    private_key_jwt: PrivateKeyJwtConfig | None = None
    timeout_seconds: float = 2.0
    max_response_bytes: int = 64 * 1024
    retry_after_seconds: int = 5
    verify_tls: bool = True
    allow_insecure_http: bool = False  # let key discovery use plain http (metadata, discovered jwks_uri): development
    # verification of what the AS returns
    issuer: str | None = None
    jwks_uri: str | None = None
    metadata_url: str | None = None  # default: RFC 8414 then OIDC discovery under the issuer
    audiences: tuple[str, ...] = ()  # the token's aud must hold one of these; empty = no aud check
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_seconds: float = 30.0
    jwks_cache_seconds: float = 300.0
    jwks_min_refresh_seconds: float = 5.0
    # rfc7662: name of a JSON field carrying a JWT (Keycloak ``jwt``, a Curity token-procedure field)
    jwt_field: str | None = None
    # when the AS gives claims but no JWT: forward nothing, or the claims as base64url JSON in a header
    claims_forwarding: str = "none"
    claims_header: str = "x-token-claims"

    @property
    def verifies_jwts(self) -> bool:
        return self.dialect in ("phantom", "rfc9701") or self.jwt_field is not None


@dataclass(frozen=True, slots=True)
class Config:
    authorization_servers: Mapping[str, AuthorizationServerConfig]
    default_authorization_server: str
    server: ServerConfig = ServerConfig()
    realm: str = "api"
    credential: CredentialConfig = CredentialConfig()
    routes: RouteDefaults = RouteDefaults()
    headers_to_remove: tuple[str, ...] = ()
    cors_preflight: str = "authenticate"
    cors_preflight_on_policy_routes: bool = False  # with cors_preflight: allow, also skip routes naming a policy
    clock_skew_seconds: float = 30.0
    cache: CacheConfig = field(default_factory=CacheConfig)
    admin_listen: str | None = "127.0.0.1:9002"  # the cache admin gRPC API; loopback or unix socket only
    metrics_listen: str | None = "127.0.0.1:9102"  # Prometheus /metrics
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @property
    def default_as(self) -> AuthorizationServerConfig:
        return self.authorization_servers[self.default_authorization_server]


def _listen_address(value: str, key: str) -> str:
    if value.startswith("unix:"):
        if len(value) <= len("unix:"):
            raise ConfigError(key, "unix socket address needs a path")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be HOST:PORT or unix:PATH, got {value!r}")
    return value


def _secret(sec: Section, environ: Mapping[str, str], from_file: bool) -> Secret:
    if sec.has("client_secret"):
        if from_file:
            raise ConfigError(
                sec.key("client_secret"),
                "must not be inline in the config file; use client_secret_file, client_secret_env "
                "or the AUTHZ__..._CLIENT_SECRET environment variable",
            )
        sec.raw("client_secret_file")  # the override variable wins over the file's secret source
        sec.raw("client_secret_env")
        return Secret(sec.str_("client_secret"))
    if sec.has("client_secret_file"):
        return Secret(read_file(sec, "client_secret_file"))
    if sec.has("client_secret_env"):
        name = sec.str_("client_secret_env")
        value = environ.get(name, "")
        if not value:
            raise ConfigError(sec.key("client_secret_env"), f"environment variable {name} is not set or empty")
        return Secret(value)
    raise ConfigError(sec.key("client_secret"), "is required (set client_secret_file or client_secret_env)")


def _private_key_jwt(sec: Section) -> PrivateKeyJwtConfig:
    sub = sec.section("private_key_jwt")
    pem = read_file(sub, "key_file")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(sub.key("key_file"), "is not an unencrypted PEM private key") from None
    result = PrivateKeyJwtConfig(
        key_pem=Secret(pem),
        algorithm=sub.choice("algorithm", "RS256", ASYMMETRIC_ALGORITHMS),
        kid=sub.raw("kid"),
        audience=sub.raw("audience"),
        lifetime_seconds=int(sub.number("lifetime_seconds", 60, integer=True)),
    )
    try:  # the key must be able to sign with the algorithm (an EC key cannot do RS256)
        jwt.encode({"probe": True}, key, algorithm=result.algorithm)  # type: ignore[arg-type]
    except (TypeError, ValueError, NotImplementedError, jwt.PyJWTError) as exc:
        raise ConfigError(sub.key("algorithm"), f"{result.algorithm} cannot sign with the key in key_file "
                                                f"({type(exc).__name__})") from None
    for name, value in (("kid", result.kid), ("audience", result.audience)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(sub.key(name), "must be a non-empty string")
    sub.done()
    return result


def _authorization_server(name: str, data: Any, path: str, environ: Mapping[str, str], inline: bool,
                          default_leeway: float) -> AuthorizationServerConfig:
    sec = Section(data, f"{path}.{name}")
    method = sec.choice("client_auth_method", "client_secret_basic", CLIENT_AUTH_METHODS)
    endpoint = url(sec, "introspection_endpoint", required=True)
    assert endpoint is not None
    result = AuthorizationServerConfig(
        name=name,
        introspection_endpoint=endpoint,
        client_id=sec.str_("client_id"),
        client_secret=_secret(sec, environ, inline) if method != "private_key_jwt" else None,
        private_key_jwt=_private_key_jwt(sec) if method == "private_key_jwt" else None,
        dialect=sec.choice("dialect", "phantom", DIALECTS),
        client_auth_method=method,
        timeout_seconds=sec.number("timeout_seconds", 2.0),
        max_response_bytes=int(sec.number("max_response_bytes", 64 * 1024, minimum=255, integer=True)),
        retry_after_seconds=int(sec.number("retry_after_seconds", 5, integer=True)),
        verify_tls=sec.boolean("verify_tls", True),
        allow_insecure_http=sec.boolean("allow_insecure_http", False),
        issuer=sec.str_("issuer") if sec.has("issuer") else None,
        jwks_uri=url(sec, "jwks_uri"),
        metadata_url=url(sec, "metadata_url"),
        audiences=sec.strings("audiences", re.compile(r"^\S+$"), "audience"),
        algorithms=sec.strings("algorithms", re.compile("^(" + "|".join(ASYMMETRIC_ALGORITHMS) + ")$"),
                               "asymmetric JWS algorithm (none and HS* are never accepted)") or DEFAULT_ALGORITHMS,
        leeway_seconds=sec.number("leeway_seconds", default_leeway, minimum=-1e-9),
        jwks_cache_seconds=sec.number("jwks_cache_seconds", 300.0),
        jwks_min_refresh_seconds=sec.number("jwks_min_refresh_seconds", 5.0, minimum=-1e-9),
        jwt_field=sec.str_("jwt_field") if sec.has("jwt_field") else None,
        claims_forwarding=sec.choice("claims_forwarding", "none", CLAIMS_FORWARDING),
        claims_header=sec.str_("claims_header", "x-token-claims").lower(),
    )
    if result.verifies_jwts and result.issuer is None:
        raise ConfigError(sec.key("issuer"), f"is required to verify the JWTs of dialect {result.dialect!r}")
    discovery_from = result.metadata_url or result.issuer
    if (result.verifies_jwts and result.jwks_uri is None and discovery_from is not None
            and not discovery_from.startswith("https://") and not result.allow_insecure_http):
        raise ConfigError(sec.key("metadata_url" if result.metadata_url else "issuer"),
                          "key discovery needs https (or set jwks_uri, or allow_insecure_http: true for development)")
    if result.jwt_field is not None and result.dialect != "rfc7662":
        raise ConfigError(sec.key("jwt_field"), "applies to the rfc7662 dialect only")
    if result.claims_header in ("authorization", "host", "cookie") or not _HEADER.match(result.claims_header):
        raise ConfigError(sec.key("claims_header"), f"{result.claims_header!r} cannot carry the claims")
    sec.done()
    return result


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _optional_listen(top: Section, name: str, default: str, local_only: bool) -> str | None:
    value = top.raw(name, default)
    if value in (None, "", False):
        return None
    if not isinstance(value, str):
        raise ConfigError(name, "must be HOST:PORT, unix:PATH, or empty to disable")
    address = _listen_address(value, name)
    host = address.rpartition(":")[0].strip("[]")
    if local_only and not address.startswith("unix:") and host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(name, f"must be a loopback address or a unix socket (operators only), got {value!r}")
    return address


def _required_scopes(sec: Section) -> tuple[str, ...]:
    """``routes.required_scopes``: a list of scope tokens or an SP-separated string, with the grammar of
    ``authz.scopes``; absent: none; empty: an error (``"-"`` says none explicitly)."""
    if not sec.has("required_scopes"):
        return ()
    value = sec.raw("required_scopes")
    if not isinstance(value, (str, list)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(sec.key("required_scopes"), "must be a list of scopes or a space-separated string")
    try:
        return required_scopes(value)
    except ScopeSyntaxError as exc:
        raise ConfigError(sec.key("required_scopes"), str(exc)) from None


def _check_max_receive_bytes(server: ServerConfig) -> None:
    """A CheckRequest can carry Envoy's largest header block plus a body: the receive limit must hold both."""
    floor = ENVOY_MAX_HEADER_BYTES + server.http.max_body_bytes + 64 * 1024
    if not floor <= server.max_receive_bytes <= _GRPC_MAX_MESSAGE:
        raise ConfigError("server.max_receive_bytes", f"must be between {floor} (Envoy's largest header block, 8 MiB, "
                                                      f"+ server.http.max_body_bytes + 64 KiB) and {_GRPC_MAX_MESSAGE}"
                                                      f", got {server.max_receive_bytes}")


def _parse(data: Any, environ: Mapping[str, str], inline_secrets: Mapping[str, bool]) -> Config:
    top = Section(data, "")
    srv = top.section("server")
    server = ServerConfig(
        listen=_listen_address(srv.str_("listen", "127.0.0.1:9001"), srv.key("listen")),
        shutdown_grace_seconds=srv.number("shutdown_grace_seconds", 10.0),
        log_level=srv.choice("log_level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        event_loop=srv.choice("event_loop", "uvloop" if _has_uvloop() else "asyncio", ("uvloop", "asyncio")),
        workers=int(srv.number("workers", 1, minimum=0, integer=True)),
        max_receive_bytes=int(srv.number("max_receive_bytes", DEFAULT_MAX_RECEIVE_BYTES, integer=True)),
        http=parse_http_transport(srv.section("http"), _listen_address),
    )
    if server.event_loop == "uvloop" and not _has_uvloop():
        raise ConfigError("server.event_loop", "uvloop is not installed (pip install uvloop, or use asyncio)")
    _check_max_receive_bytes(server)
    if server.workers > 1 and (server.listen.startswith("unix:") or (server.http.listen or "").startswith("unix:")):
        raise ConfigError("server.workers", "several workers share a TCP port (SO_REUSEPORT); not a unix socket")
    srv.done()
    cred = top.section("credential")
    credential = CredentialConfig(
        max_token_length=int(cred.number("max_token_length", 4096, minimum=15, integer=True))
    )
    cred.done()
    rts = top.section("routes")
    routes = RouteDefaults(
        required_scopes=_required_scopes(rts),
        disabled=rts.boolean("disabled", False),
    )
    rts.done()
    skew = top.number("clock_skew_seconds", 30.0, minimum=-1e-9)
    servers_raw = top.raw("authorization_servers")
    if not isinstance(servers_raw, Mapping) or not servers_raw:
        raise ConfigError("authorization_servers", "must map at least one name to an authorization server")
    servers = {
        str(name): _authorization_server(
            str(name), value, "authorization_servers", environ, inline_secrets.get(str(name), False), skew
        )
        for name, value in servers_raw.items()
    }
    default_as = top.str_("default_authorization_server", next(iter(servers)))
    if default_as not in servers:
        raise ConfigError("default_authorization_server", f"{default_as!r} is not in authorization_servers")
    config = Config(
        cache=parse_cache(top.section("cache")),
        admin_listen=_optional_listen(top, "admin_listen", "127.0.0.1:9002", local_only=True),
        metrics_listen=_optional_listen(top, "metrics_listen", "127.0.0.1:9102", local_only=False),
        policy=parse_policy(top.section("policy"), environ),
        authorization_servers=servers,
        default_authorization_server=default_as,
        server=server,
        realm=top.str_("realm", "api"),
        credential=credential,
        routes=routes,
        headers_to_remove=tuple(
            h.lower() for h in top.strings("headers_to_remove", re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"),
                                           "header name")
        ),
        cors_preflight=top.choice("cors_preflight", "authenticate", ("authenticate", "allow")),
        cors_preflight_on_policy_routes=top.boolean("cors_preflight_on_policy_routes", False),
        clock_skew_seconds=skew,
    )
    if '"' in config.realm or "\\" in config.realm:
        raise ConfigError("realm", "must not contain quotes or backslashes")
    if config.cors_preflight_on_policy_routes and config.cors_preflight != "allow":
        raise ConfigError("cors_preflight_on_policy_routes", "applies only with cors_preflight: allow")
    if "authorization" in config.headers_to_remove:
        raise ConfigError("headers_to_remove", "must not list authorization (it carries the JWT upstream)")
    top.done()
    return config


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise ConfigError(name, "malformed override variable name")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts), f"{name} overrides inside a value that is not a mapping")
            node = child
        if parts[-1] in _VERBATIM:
            node[parts[-1]] = environ[name]
            continue
        try:
            node[parts[-1]] = yaml.safe_load(environ[name]) if environ[name] else ""
        except yaml.YAMLError:
            raise ConfigError(".".join(parts), f"{name} is not a valid YAML value") from None


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration. Raises ``ConfigError`` (one line) on any problem."""
    env = os.environ if environ is None else environ
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError("", f"config file {path} is not valid YAML{where}") from None
        if not isinstance(data, dict):
            raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    servers = data.get("authorization_servers")
    inline = (
        {str(k): isinstance(v, Mapping) and "client_secret" in v for k, v in servers.items()}
        if isinstance(servers, Mapping)
        else {}
    )
    _apply_env(data, env)
    return _parse(data, env, inline)
