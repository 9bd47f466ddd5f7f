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

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AuthorizationServerConfig",
    "Config",
    "ConfigError",
    "CredentialConfig",
    "RouteDefaults",
    "Secret",
    "ServerConfig",
    "load_config",
]

ENV_PREFIX = "AUTHZ__"
_VERBATIM = frozenset({"client_secret"})  # override values taken as-is, not read as YAML
DIALECTS = ("phantom",)
CLIENT_AUTH_METHODS = ("client_secret_basic",)
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


class ConfigError(ValueError):
    """A configuration problem; ``str()`` is one line naming the key and why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}" if key else why)
        self.key = key


class Secret:
    """A secret string whose ``repr``/``str`` never shows the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:9001"
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"


@dataclass(frozen=True, slots=True)
class CredentialConfig:
    max_token_length: int = 4096


@dataclass(frozen=True, slots=True)
class RouteDefaults:
    required_scopes: tuple[str, ...] = ()
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class AuthorizationServerConfig:
    name: str
    introspection_endpoint: str
    client_id: str
    client_secret: Secret = field(repr=True)
    dialect: str = "phantom"
    client_auth_method: str = "client_secret_basic"
    timeout_seconds: float = 2.0
    max_response_bytes: int = 64 * 1024
    retry_after_seconds: int = 5
    verify_tls: bool = True


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
    clock_skew_seconds: float = 30.0

    @property
    def default_as(self) -> AuthorizationServerConfig:
        return self.authorization_servers[self.default_authorization_server]


class _Section:
    """Reads typed values out of one mapping, naming the dotted key in every error; rejects leftovers."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path, "must be a mapping")
        self._data = dict(data)
        self._path = path

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return name in self._data

    def raw(self, name: str, default: Any = None) -> Any:
        return self._data.pop(name, default)

    def str_(self, name: str, default: str | None = None) -> str:
        value = self._data.pop(name, default)
        if value is None:
            raise ConfigError(self.key(name), "is required")
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), "must be a non-empty string")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0, integer: bool = False) -> float:
        value = self._data.pop(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(self.key(name), f"must be a finite number, got {value!r}")
        if integer and not float(value).is_integer():
            raise ConfigError(self.key(name), "must be a whole number")
        if value <= minimum:
            raise ConfigError(self.key(name), f"must be > {minimum:g}, got {value}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._data.pop(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), "must be true or false")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str_(name, default)
        if value not in choices:
            raise ConfigError(self.key(name), f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def strings(self, name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        value = self._data.pop(name, [])
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), "must be a list of strings")
        for item in value:
            if not pattern.match(item):
                raise ConfigError(self.key(name), f"{item!r} is not a valid {what}")
        return tuple(value)

    def section(self, name: str) -> _Section:
        return _Section(self._data.pop(name, None), self.key(name))

    def done(self) -> None:
        if self._data:
            unknown = sorted(self._data)[0]
            raise ConfigError(self.key(unknown), "unknown key")


def _listen_address(value: str, key: str) -> str:
    if value.startswith("unix:"):
        if len(value) <= len("unix:"):
            raise ConfigError(key, "unix socket address needs a path")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"must be HOST:PORT or unix:PATH, got {value!r}")
    return value


def _secret(sec: _Section, environ: Mapping[str, str], from_file: bool) -> Secret:
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
        path = Path(sec.str_("client_secret_file"))
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(sec.key("client_secret_file"), f"cannot read {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(sec.key("client_secret_file"), f"{path} is empty")
        return Secret(value)
    if sec.has("client_secret_env"):
        name = sec.str_("client_secret_env")
        value = environ.get(name, "")
        if not value:
            raise ConfigError(sec.key("client_secret_env"), f"environment variable {name} is not set or empty")
        return Secret(value)
    raise ConfigError(sec.key("client_secret"), "is required (set client_secret_file or client_secret_env)")


def _authorization_server(name: str, data: Any, path: str, environ: Mapping[str, str], inline: bool) -> (
    AuthorizationServerConfig
):
    sec = _Section(data, f"{path}.{name}")
    endpoint = sec.str_("introspection_endpoint")
    if not re.match(r"^https?://[^/\s]+", endpoint):
        raise ConfigError(sec.key("introspection_endpoint"), f"must be an http(s) URL, got {endpoint!r}")
    result = AuthorizationServerConfig(
        name=name,
        introspection_endpoint=endpoint,
        client_id=sec.str_("client_id"),
        client_secret=_secret(sec, environ, inline),
        dialect=sec.choice("dialect", "phantom", DIALECTS),
        client_auth_method=sec.choice("client_auth_method", "client_secret_basic", CLIENT_AUTH_METHODS),
        timeout_seconds=sec.number("timeout_seconds", 2.0),
        max_response_bytes=int(sec.number("max_response_bytes", 64 * 1024, minimum=255, integer=True)),
        retry_after_seconds=int(sec.number("retry_after_seconds", 5, integer=True)),
        verify_tls=sec.boolean("verify_tls", True),
    )
    sec.done()
    return result


def _parse(data: Any, environ: Mapping[str, str], inline_secrets: Mapping[str, bool]) -> Config:
    top = _Section(data, "")
    srv = top.section("server")
    server = ServerConfig(
        listen=_listen_address(srv.str_("listen", "127.0.0.1:9001"), srv.key("listen")),
        shutdown_grace_seconds=srv.number("shutdown_grace_seconds", 10.0),
        log_level=srv.choice("log_level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    srv.done()
    cred = top.section("credential")
    credential = CredentialConfig(
        max_token_length=int(cred.number("max_token_length", 4096, minimum=15, integer=True))
    )
    cred.done()
    rts = top.section("routes")
    routes = RouteDefaults(
        required_scopes=rts.strings("required_scopes", _SCOPE_TOKEN, "scope"),
        disabled=rts.boolean("disabled", False),
    )
    rts.done()
    servers_raw = top.raw("authorization_servers")
    if not isinstance(servers_raw, Mapping) or not servers_raw:
        raise ConfigError("authorization_servers", "must map at least one name to an authorization server")
    servers = {
        str(name): _authorization_server(
            str(name), value, "authorization_servers", environ, inline_secrets.get(str(name), False)
        )
        for name, value in servers_raw.items()
    }
    default_as = top.str_("default_authorization_server", next(iter(servers)))
    if default_as not in servers:
        raise ConfigError("default_authorization_server", f"{default_as!r} is not in authorization_servers")
    config = Config(
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
        clock_skew_seconds=top.number("clock_skew_seconds", 30.0, minimum=-1e-9),
    )
    if '"' in config.realm or "\\" in config.realm:
        raise ConfigError("realm", "must not contain quotes or backslashes")
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
