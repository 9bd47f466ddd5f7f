"""Typed, validated configuration, declared as frozen pydantic models: one YAML file plus ``AUTHZ__``-prefixed
environment overrides (``loader``), one model per section (``server``, ``authorization_servers``, ``cache``,
``policy``, ``routes``, ``tracing``; the whole in ``models``), built from the value types in ``types``.

Every default is written once, on its model's field; choices are ``Literal``s; secrets are ``Secret`` (masked in
``repr``); cross-field rules are model validators. Every error names the key it is about
(``authorization_servers.curity.timeout_seconds: must be > 0, got -1``), and unknown keys are errors. Secrets never
sit inline in the file (``authorization_servers``' docstring says where they come from). ``config_schema()`` is the
file's JSON Schema (``authz config-schema``).
"""

from authz.config.authorization_servers import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    AuthorizationServerConfig,
    PrivateKeyJwtConfig,
)
from authz.config.cache import CacheConfig, RedisConfig
from authz.config.dpop import DpopConfig, DpopNonceConfig
from authz.config.loader import ENV_PREFIX, config_schema, load_config
from authz.config.models import Config
from authz.config.policy import DEFAULT_MASK, PolicyConfig, RemoteOpaConfig
from authz.config.routes import HeaderCondition, RouteRule, RoutesConfig, RuleMatch
from authz.config.server import (
    DEFAULT_MAX_RECEIVE_BYTES,
    CredentialConfig,
    HttpTransportConfig,
    ServerConfig,
)
from authz.config.tls import ListenerTlsConfig
from authz.config.tracing import TracingConfig
from authz.config.types import ConfigError, Secret

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "DEFAULT_MASK",
    "DEFAULT_MAX_RECEIVE_BYTES",
    "ENV_PREFIX",
    "AuthorizationServerConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "CredentialConfig",
    "DpopConfig",
    "DpopNonceConfig",
    "HeaderCondition",
    "HttpTransportConfig",
    "ListenerTlsConfig",
    "PolicyConfig",
    "PrivateKeyJwtConfig",
    "RedisConfig",
    "RemoteOpaConfig",
    "RouteRule",
    "RoutesConfig",
    "RuleMatch",
    "Secret",
    "ServerConfig",
    "TracingConfig",
    "config_schema",
    "load_config",
]
