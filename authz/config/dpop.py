"""The ``dpop:`` section: RFC 9449 DPoP proofs checked at the gateway (``authz.dpop``).

Which routes take DPoP is a route setting, ``dpop`` (``routes.dpop`` for the default; a route rule, a
``context_extensions`` key or HTTP mode's ``;settings``): ``off`` (the default, today's behaviour: a DPoP-bound token
is refused), ``allowed`` (a Bearer token, or a DPoP-bound one with its proof), ``required`` (only a DPoP-bound token
with its proof). This section is one verifier for the whole service: a proof binds the client's key to one request,
whichever AS issued the token, so one allow-list (advertised in every ``algs=""`` challenge), one replay cache and one
nonce secret serve every route. (Not per AS: a route that switches its ``as`` would silently change what it accepts.)

The nonce secret, like every secret, never sits inline: ``nonce.secret_file`` or ``nonce.secret_env``. Every worker
and pod that shares it issues and accepts the same nonces (HMAC of the time window), with no shared state.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import Field, StrictBool, ValidationInfo, model_validator
from pydantic.json_schema import SkipJsonSchema

from authz.config.authorization_servers import ASYMMETRIC_ALGORITHMS, MAX_CLOCK_SKEW_SECONDS
from authz.config.types import ConfigError, Model, Number, Secret, Section, Text, Words, with_secret

__all__ = ["DEFAULT_DPOP_ALGORITHMS", "DPOP_MODES", "DpopConfig", "DpopMode", "DpopNonceConfig"]

DpopMode = Literal["off", "allowed", "required"]
DPOP_MODES: tuple[str, ...] = get_args(DpopMode)
DEFAULT_DPOP_ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
MIN_NONCE_SECRET = 32  # characters
_ALGORITHM = re.compile("^(" + "|".join(ASYMMETRIC_ALGORITHMS) + ")$")


class DpopNonceConfig(Model):
    """Server-provided nonces (RFC 9449 §8-9): a proof must carry one we issued within the last two lifetimes."""

    secret_file: Annotated[str, Text()] | None = Field(default=None, repr=False)
    secret_env: Annotated[str, Text()] | None = Field(default=None, repr=False)
    secret: SkipJsonSchema[Secret | None] = None  # read from secret_file / secret_env by load_config
    lifetime_seconds: Annotated[float, Number(gt=0)] = 300.0  # a nonce is issued for this long, accepted twice as long

    @model_validator(mode="before")
    @classmethod
    def _read_secret(cls, data: Any, info: ValidationInfo) -> Any:
        return with_secret(data, info, "secret", "secret_file", "secret_env")

    @model_validator(mode="after")
    def _strong_secret(self) -> Self:
        if self.secret is None:
            raise ConfigError("secret_file", "is required (set secret_file or secret_env: the key every worker and "
                                             "pod derives nonces from)")
        if len(self.secret.reveal()) < MIN_NONCE_SECRET:
            raise ConfigError("secret_file" if self.secret_file else "secret_env",
                              f"the secret must be at least {MIN_NONCE_SECRET} characters")
        return self


class DpopConfig(Section):
    """How DPoP proofs are checked, and what the upstream receives for a DPoP-bound token."""

    # proof algorithms accepted (asymmetric only) and advertised in challenges' algs=""
    algorithms: Annotated[tuple[str, ...], Words(_ALGORITHM, "asymmetric JWS algorithm (none and HS* are never "
                                                             "accepted)", lambda v: v or DEFAULT_DPOP_ALGORITHMS)] = \
        DEFAULT_DPOP_ALGORITHMS
    max_age_seconds: Annotated[float, Number(gt=0)] = 60.0  # a proof's iat may be this old
    # ... and this far in the future (clock skew)
    leeway_seconds: Annotated[float, Number(ge=0, le=MAX_CLOCK_SKEW_SECONDS)] = 5.0
    max_proof_bytes: Annotated[int, Number(gt=255, integer=True)] = 4096  # a longer DPoP header is refused unread
    # jti values remembered (for max_age + leeway each); full of live ones: 503 until some expire
    replay_cache_entries: Annotated[int, Number(gt=0, integer=True)] = 100_000
    # with cache.redis, jti values are shared through Redis (SET NX); Redis unreachable: deny (503) or local only
    replay_on_redis_error: Literal["deny", "local"] = "deny"
    nonce: DpopNonceConfig | None = None  # server-provided nonces; None: off
    # htu's scheme: Envoy's :scheme (gRPC) / x-forwarded-proto (HTTP mode), or a fixed one (TLS ends before Envoy)
    scheme: Literal["request", "https", "http"] = "request"
    forward: Literal["bearer", "dpop"] = "bearer"  # the JWT goes upstream as `Bearer <JWT>` or `DPoP <JWT>`
    forward_proof: StrictBool = False  # keep the client's DPoP header on the upstream request
