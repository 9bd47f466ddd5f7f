"""``cache.redis``: where the shared L2 tier lives (one topology), how we talk to it (TLS) and as whom (an ACL user).

One of three topologies, named by which key is set:

- ``url``: one Redis (``redis://HOST:PORT/DB``, ``rediss://`` for TLS, ``unix:///path.sock``);
- ``sentinel``: ``addresses`` of the Sentinels and the ``service_name`` they monitor; the primary is asked of them on
  every new connection, so a failover needs no restart;
- ``cluster``: ``nodes``, some of a Redis Cluster's nodes (the rest are discovered).

TLS: a ``rediss://`` url, or a ``tls`` section with ``sentinel`` / ``cluster`` (``tls:`` alone: the system's CAs);
``tls.ca_file`` (a PEM bundle), ``tls.cert_file`` + ``tls.key_file`` (a client certificate). Every file is read
and checked at load: an empty bundle, a certificate that does not parse or does not match its key is an error.

Credentials never sit in the file: ``username`` (an ACL user; the ``default`` user when absent) with a password from
``password_file`` or ``password_env``; a url holding a user, a password or query parameters is refused. A
Sentinel that asks for a password of its own takes ``sentinel.username`` / ``sentinel.password_file`` / ``_env``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from authz.config.tls import read_ca_bundle, read_certificate_pair
from authz.config.types import ConfigError, Model, Number, Secret, Section, Text, Words, with_secret

__all__ = ["RedisClusterConfig", "RedisConfig", "RedisSentinelConfig", "RedisTlsConfig"]

_SCHEMES = ("redis", "rediss", "unix")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})\Z")
def _host_port(address: str) -> tuple[str, int]:
    match = _HOST_PORT.match(address)
    assert match is not None  # validated by Addresses
    return match.group(1).strip("[]"), int(match.group(2))


def _some_addresses(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("must list at least one HOST:PORT address")
    for address in value:
        if not 0 < _host_port(address)[1] <= 65535:
            raise ValueError(f"{address!r} has no valid port")
    return value


Addresses = Annotated[tuple[str, ...], Words(_HOST_PORT, "HOST:PORT address"), AfterValidator(_some_addresses)]


class _Credentials(Model):
    """An ACL user and its password, read from a file or a named variable; never inline."""

    username: Annotated[str, Text()] | None = None
    password_file: Annotated[str, Text()] | None = Field(default=None, repr=False)
    password_env: Annotated[str, Text()] | None = Field(default=None, repr=False)
    password: SkipJsonSchema[Secret | None] = None  # read from password_file / password_env by load_config

    @model_validator(mode="before")
    @classmethod
    def _read_password(cls, data: Any, info: ValidationInfo) -> Any:
        return with_secret(data, info, "password", "password_file", "password_env")

    @model_validator(mode="after")
    def _user_has_password(self) -> Self:
        if self.username is not None and self.password is None:
            raise ConfigError("password_file", f"is required with username {self.username!r} (set password_file or "
                                               "password_env)")
        return self


class RedisSentinelConfig(_Credentials):
    """The Sentinels to ask for the primary of ``service_name``; ``username``/``password_*``: the Sentinels' own."""

    addresses: Addresses
    service_name: Annotated[str, Text()]
    db: Annotated[int, Number(ge=0, integer=True)] = 0

    @property
    def hosts(self) -> list[tuple[str, int]]:
        return [_host_port(a) for a in self.addresses]


class RedisClusterConfig(Model):
    """Some nodes of a Redis Cluster: the client learns the others, and the slots, from them."""

    nodes: Addresses

    @property
    def hosts(self) -> list[tuple[str, int]]:
        return [_host_port(a) for a in self.nodes]


class RedisTlsConfig(Model):
    """TLS to every Redis connection (and to the Sentinels). The server's certificate is always verified."""

    ca_file: Annotated[str, Text()] | None = None  # PEM bundle; default: the system's CAs
    cert_file: Annotated[str, Text()] | None = None  # a client certificate (Redis tls-auth-clients), with key_file
    key_file: Annotated[str, Text()] | None = None
    check_hostname: StrictBool = True  # the certificate must name the host (or IP) we connect to

    @model_validator(mode="after")
    def _files_load(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("key_file" if self.key_file is None else "cert_file",
                              f"is required with {'cert_file' if self.key_file is None else 'key_file'}")
        if self.ca_file is not None:
            read_ca_bundle(self.ca_file, "ca_file")
        if self.cert_file is not None:
            read_certificate_pair(self.cert_file, self.key_file, "cert_file", "key_file")
        return self


class RedisConfig(_Credentials, Section):
    """The shared L2 tier; off unless one of ``url``, ``sentinel``, ``cluster`` is set."""

    # e.g. redis://127.0.0.1:6379/0 — no credentials, no query: those have keys of their own
    url: Annotated[str, Text(re.compile(r"^(redis|rediss|unix)://"), "must be a redis://, rediss:// or unix:// URL",
                             quote=False)] | None = None
    sentinel: RedisSentinelConfig | None = None
    cluster: RedisClusterConfig | None = None
    tls: RedisTlsConfig | None = None  # with sentinel or cluster: TLS on (``tls:`` alone: the system's CAs)
    timeout_seconds: Annotated[float, Number(gt=0)] = 0.05
    key_prefix: Annotated[str, Text()] = "phantom-authz"
    # an eviction call waits for (answers UNAVAILABLE until it reaches) every sidecar subscribed within this long; a
    # sidecar cut off from Redis longer keeps answers no longer than this (authz.cache.eviction_feed)
    eviction_lease_seconds: Annotated[float, Number(ge=3)] = 10.0

    @property
    def enabled(self) -> bool:
        return self.topology is not None

    @property
    def topology(self) -> str | None:
        """``standalone``, ``sentinel``, ``cluster``, or None (no L2)."""
        if self.url is not None:
            return "standalone"
        return "sentinel" if self.sentinel is not None else "cluster" if self.cluster is not None else None

    @property
    def uses_tls(self) -> bool:
        return self.tls is not None or (self.url or "").startswith("rediss://")

    @field_validator("tls", mode="before")
    @classmethod
    def _empty_tls_is_on(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not hold a user or password (set cache.redis.username and password_file or "
                             "password_env)")
        if parts.query:
            raise ValueError("must not carry query parameters (TLS and credentials have keys of their own)")
        return value

    @model_validator(mode="after")
    def _one_topology(self) -> Self:
        given = [name for name in ("url", "sentinel", "cluster") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ConfigError(given[1], f"cannot be combined with {given[0]}: set one of url, sentinel, cluster")
        if not given:
            for name in ("tls", "username", "password"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, "applies only with url, sentinel or cluster set")
            return self
        if self.url is not None and self.tls is not None and not self.url.startswith("rediss://"):
            raise ConfigError("tls", "applies only to a rediss:// url (redis:// and unix:// are plain)")
        return self
