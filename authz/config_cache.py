"""The ``cache:`` section: the introspection cache's bounds, TTL rule inputs and the optional Redis tier."""

from __future__ import annotations

from dataclasses import dataclass

from authz.config_section import ConfigError, Section

__all__ = ["CacheConfig", "parse_cache"]


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The introspection cache (DESIGN.md "Cache rule")."""

    enabled: bool = True
    max_ttl_seconds: float = 300.0
    max_entries: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    expiry_skew_seconds: float = 5.0  # an entry expires this long before the token's exp
    negative_ttl_seconds: float = 5.0
    negative_max_entries: int = 100_000
    stale_if_error_seconds: float = 60.0  # 0 disables stale-if-error
    redis_url: str | None = None  # shared L2 tier, e.g. redis://127.0.0.1:6379/0
    redis_timeout_seconds: float = 0.05
    redis_key_prefix: str = "phantom-authz"


def parse_cache(sec: Section) -> CacheConfig:
    max_entries = int(sec.number("max_entries", 100_000, minimum=-1, integer=True))
    redis = sec.section("redis")
    result = CacheConfig(
        enabled=sec.boolean("enabled", True),
        max_ttl_seconds=sec.number("max_ttl_seconds", 300.0),
        max_entries=max_entries,
        max_bytes=int(sec.number("max_bytes", 256 * 1024 * 1024, integer=True)),
        expiry_skew_seconds=sec.number("expiry_skew_seconds", 5.0, minimum=-1e-9),
        negative_ttl_seconds=sec.number("negative_ttl_seconds", 5.0, minimum=-1e-9),
        negative_max_entries=int(sec.number("negative_max_entries", 100_000, minimum=-1, integer=True)),
        stale_if_error_seconds=sec.number("stale_if_error_seconds", 60.0, minimum=-1e-9),
        redis_url=redis.str_("url") if redis.has("url") else None,
        redis_timeout_seconds=redis.number("timeout_seconds", 0.05),
        redis_key_prefix=redis.str_("key_prefix", "phantom-authz"),
    )
    if result.redis_url is not None and not result.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(redis.key("url"), "must be a redis://, rediss:// or unix:// URL")
    redis.done()
    sec.done()
    return result
