"""``authorization_servers.<name>``: where to introspect, how to authenticate there, how to verify the answer.

Secrets never sit inline in the file: a client secret comes from a file (``client_secret_file``), a named environment
variable (``client_secret_env``), or the override variable ``AUTHZ__AUTHORIZATION_SERVERS__<NAME>__CLIENT_SECRET``
(which wins over the file's source, unread). ``private_key_jwt.key_file`` is read and checked against its algorithm.
RFC 8705's ``tls_client_auth`` and ``self_signed_tls_client_auth`` need no secret: the client certificate
(``client_cert_file`` + ``client_key_file``, checked to belong together) is the credential; ``ca_file`` replaces the
system's trusted CAs for every call to the AS (introspection, metadata, JWKS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, get_args

import jwt
from cryptography.hazmat.primitives import serialization
from pydantic import ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from authz.config.tls import read_ca_bundle, read_certificate_pair
from authz.config.token_exchange import TokenExchangeConfig
from authz.config.types import (
    ConfigError,
    HttpUrl,
    Model,
    Number,
    Secret,
    Text,
    Words,
    loading,
    read_file,
    secret_from,
)

__all__ = ["ASYMMETRIC_ALGORITHMS", "DEFAULT_ALGORITHMS", "DEFAULT_CLOCK_SKEW_SECONDS", "MAX_CLOCK_SKEW_SECONDS",
           "AuthorizationServerConfig", "PrivateKeyJwtConfig"]

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
ASYMMETRIC_ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
DEFAULT_CLOCK_SKEW_SECONDS = 30.0  # clock_skew_seconds, the default of every server's leeway_seconds
# the most any leeway may be: clocks further apart than this are an outage to fix, not skew to accept (a leeway of
# an hour would accept tokens an hour past their exp whenever an AS or a cached JWT says so)
MAX_CLOCK_SKEW_SECONDS = 300.0
MISSING_SECRET = "is required (set client_secret_file or client_secret_env)"
TLS_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")  # RFC 8705: the client certificate authenticates
_SECRETLESS = ("private_key_jwt", *TLS_METHODS)
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")
_ALGORITHM = re.compile("^(" + "|".join(ASYMMETRIC_ALGORITHMS) + ")$")


class PrivateKeyJwtConfig(Model):
    """RFC 7523 client authentication: an assertion signed with our private key, fresh per request."""

    model_config = ConfigDict(json_schema_extra={"required": ["key_file"]})

    key_file: Annotated[str, Text()] | None = Field(None, repr=False)  # an unencrypted PEM private key
    key_pem: SkipJsonSchema[Secret]  # what key_file holds, read by load_config
    algorithm: Algorithm = "RS256"
    kid: Annotated[str, Text()] | None = None
    audience: Annotated[str, Text()] | None = None  # default: the AS issuer, else the introspection endpoint
    lifetime_seconds: Annotated[int, Number(gt=0, integer=True)] = 60

    @model_validator(mode="before")
    @classmethod
    def _read_key_file(cls, data: Any, info: ValidationInfo) -> Any:
        if loading(info) is None or not isinstance(data, Mapping):
            return data
        if "key_pem" in data:
            raise ConfigError("key_pem", "unknown key")
        pem = read_file(data.get("key_file"), "key_file")
        try:
            key = serialization.load_pem_private_key(pem.reveal().encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError("key_file", "is not an unencrypted PEM private key") from None
        algorithm = data.get("algorithm", cls.model_fields["algorithm"].default)
        if algorithm in ASYMMETRIC_ALGORITHMS:  # the key must be able to sign with it (an EC key cannot do RS256)
            try:
                jwt.encode({"probe": True}, key, algorithm=algorithm)  # type: ignore[arg-type]
            except (TypeError, ValueError, NotImplementedError, jwt.PyJWTError) as exc:
                raise ConfigError("algorithm", f"{algorithm} cannot sign with the key in key_file "
                                               f"({type(exc).__name__})") from None
        return {**data, "key_pem": pem}


class AuthorizationServerConfig(Model):
    name: SkipJsonSchema[str]  # the key under authorization_servers
    introspection_endpoint: Annotated[str, HttpUrl]
    client_id: Annotated[str, Text()]
    # only from AUTHZ__AUTHORIZATION_SERVERS__<NAME>__CLIENT_SECRET; else read from client_secret_file or _env
    client_secret: SkipJsonSchema[Secret | None] = None
    client_secret_file: Annotated[str, Text()] | None = Field(None, repr=False)
    client_secret_env: Annotated[str, Text()] | None = Field(None, repr=False)
    dialect: Literal["phantom", "rfc7662", "rfc9701"] = "phantom"
    client_auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
                                "self_signed_tls_client_auth"] = "client_secret_basic"
    private_key_jwt: PrivateKeyJwtConfig | None = None
    timeout_seconds: Annotated[float, Number(gt=0)] = 2.0
    max_response_bytes: Annotated[int, Number(gt=255, integer=True)] = 64 * 1024
    retry_after_seconds: Annotated[int, Number(gt=0, integer=True)] = 5
    verify_tls: StrictBool = True
    ca_file: Annotated[str, Text()] | None = None  # PEM CA bundle trusted for this AS instead of the system's
    # a client certificate presented on every TLS connection to this AS (RFC 8705 methods need one)
    client_cert_file: Annotated[str, Text()] | None = None
    client_key_file: Annotated[str, Text()] | None = Field(None, repr=False)
    client_key_pem: SkipJsonSchema[Secret | None] = None  # what client_key_file holds, read at load
    # how often ca_file, client_cert_file and client_key_file are read for a rotation (as server.tls's files)
    tls_reload_interval_seconds: Annotated[float, Number(gt=0)] = 5.0
    allow_insecure_http: StrictBool = False  # let key discovery use plain http (metadata, discovered jwks_uri): dev
    # verification of what the AS returns
    issuer: Annotated[str, Text()] | None = None
    jwks_uri: Annotated[str, HttpUrl] | None = None
    metadata_url: Annotated[str, HttpUrl] | None = None  # default: RFC 8414 then OIDC discovery under the issuer
    # the token's aud must hold one of these; empty = no aud check
    audiences: Annotated[tuple[str, ...], Words(re.compile(r"^\S+$"), "audience")] = ()
    algorithms: Annotated[tuple[str, ...], Words(_ALGORITHM, "asymmetric JWS algorithm (none and HS* are never "
                                                             "accepted)", lambda v: v or DEFAULT_ALGORITHMS)] = \
        DEFAULT_ALGORITHMS
    # for exp/nbf (default: clock_skew_seconds)
    leeway_seconds: Annotated[float, Number(ge=0, le=MAX_CLOCK_SKEW_SECONDS)] = DEFAULT_CLOCK_SKEW_SECONDS
    jwks_cache_seconds: Annotated[float, Number(gt=0)] = 300.0
    jwks_min_refresh_seconds: Annotated[float, Number(ge=0)] = 5.0
    # rfc7662: name of a JSON field carrying a JWT (Keycloak ``jwt``, a Curity token-procedure field)
    jwt_field: Annotated[str, Text()] | None = None
    # when the AS gives claims but no JWT: forward nothing, or the claims as base64url JSON in a header
    claims_forwarding: Literal["none", "header"] = "none"
    claims_header: Annotated[str, Text(lower=True)] = "x-token-claims"
    # RFC 8693: this AS exchanges tokens for routes asking for an exchange_audience (authz.token_exchange)
    token_exchange: TokenExchangeConfig | None = None

    @property
    def verifies_jwts(self) -> bool:
        """JWTs from this AS are verified with its keys: introspection's, or those token exchange asks for."""
        exchanged_jwts = self.token_exchange is not None and self.token_exchange.requested_token_type == "jwt"
        return self.dialect in ("phantom", "rfc9701") or self.jwt_field is not None or exchanged_jwts

    @property
    def returns_jwt(self) -> bool:
        """Every active introspection answer carries a JWT to forward (phantom; rfc7662 with jwt_field)."""
        return self.dialect == "phantom" or (self.dialect == "rfc7662" and self.jwt_field is not None)

    @model_validator(mode="before")
    @classmethod
    def _client_secret(cls, data: Any, info: ValidationInfo) -> Any:
        """Reads the secret from its source; refuses one inline in the file."""
        context = loading(info)
        if context is None or not isinstance(data, Mapping) or data.get("client_auth_method") in _SECRETLESS:
            return data
        if "client_secret" in data:  # the override variable wins over the file's secret source, left unread
            if data.get("name") in context.inline_secrets:
                raise ConfigError("client_secret", "must not be inline in the config file; use client_secret_file, "
                                                   "client_secret_env or the AUTHZ__..._CLIENT_SECRET environment "
                                                   "variable")
            return data
        secret = secret_from(data, "client_secret_file", "client_secret_env", context.environ)
        if secret is None:
            raise ConfigError("client_secret", MISSING_SECRET)
        return {**data, "client_secret": secret}

    @model_validator(mode="before")
    @classmethod
    def _tls_files(cls, data: Any) -> Any:
        """The CA bundle parses; the client certificate and key parse, belong together and are read once."""
        if not isinstance(data, Mapping):
            return data
        if "client_key_pem" in data:
            raise ConfigError("client_key_pem", "unknown key")
        if data.get("ca_file") is not None:
            read_ca_bundle(data["ca_file"], "ca_file")
        cert, key = data.get("client_cert_file"), data.get("client_key_file")
        if cert is None and key is None:
            return data
        if cert is None or key is None:
            raise ConfigError("client_key_file" if key is None else "client_cert_file",
                              "is required with " + ("client_cert_file" if key is None else "client_key_file"))
        pair = read_certificate_pair(cert, key, "client_cert_file", "client_key_file")
        return {**data, "client_key_pem": Secret(pair.key_pem.decode("ascii", "replace"))}

    @field_validator("claims_header")
    @classmethod
    def _can_carry_claims(cls, value: str) -> str:
        if value in ("authorization", "host", "cookie") or not _HEADER.match(value):
            raise ValueError(f"{value!r} cannot carry the claims")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        method = self.client_auth_method
        private_key = method == "private_key_jwt"
        if private_key and self.private_key_jwt is None:
            raise ConfigError("private_key_jwt.key_file", "is required")
        if not private_key and self.private_key_jwt is not None:
            raise ConfigError("private_key_jwt", "applies only with client_auth_method: private_key_jwt")
        if method in TLS_METHODS and self.client_cert_file is None:
            raise ConfigError("client_cert_file", f"is required with client_auth_method: {method} (RFC 8705: the "
                                                  "client certificate is the credential)")
        for name in ("client_secret", "client_secret_file", "client_secret_env"):
            if method in _SECRETLESS and getattr(self, name) is not None:
                raise ConfigError(name, f"is not used with client_auth_method: {method}")
        if method not in _SECRETLESS and self.client_secret is None:
            raise ConfigError("client_secret", MISSING_SECRET)
        if self.ca_file is not None and not self.verify_tls:
            raise ConfigError("ca_file", "is not used with verify_tls: false (nothing is verified)")
        if self.verifies_jwts and self.issuer is None:
            whose = "token exchange" if self.dialect == "rfc7662" and self.jwt_field is None else \
                f"dialect {self.dialect!r}"
            raise ConfigError("issuer", f"is required to verify the JWTs of {whose}")
        discovery_from = self.metadata_url or self.issuer
        if (self.verifies_jwts and self.jwks_uri is None and discovery_from is not None
                and not discovery_from.startswith("https://") and not self.allow_insecure_http):
            raise ConfigError("metadata_url" if self.metadata_url else "issuer", "key discovery needs https (or set "
                              "jwks_uri, or allow_insecure_http: true for development)")
        if self.jwt_field is not None and self.dialect != "rfc7662":
            raise ConfigError("jwt_field", "applies to the rfc7662 dialect only")
        self._check_token_exchange()
        return self

    def _check_token_exchange(self) -> None:
        exchange = self.token_exchange
        if exchange is None:
            return
        if exchange.subject_token == "jwt" and not self.returns_jwt:
            raise ConfigError("token_exchange.subject_token", f"jwt: dialect {self.dialect!r} returns no JWT to "
                              "exchange (phantom, or rfc7662 with jwt_field, does)")
        if exchange.token_endpoint is not None:
            return
        discovery_from = self.metadata_url or self.issuer
        if self.issuer is None or discovery_from is None:
            raise ConfigError("token_exchange.token_endpoint", "is required without issuer (else it is read from the "
                              "AS metadata, whose issuer must be ours)")
        if not discovery_from.startswith("https://") and not self.allow_insecure_http:
            raise ConfigError("token_exchange.token_endpoint", "is found in the AS metadata, which needs https (or "
                              "set token_endpoint, or allow_insecure_http: true for development)")
