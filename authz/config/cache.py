"""The ``cache:`` section: the introspection cache's bounds, TTL rule inputs (DESIGN.md "Cache rule") and the
optional shared Redis tier (``cache.redis``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import StrictBool

from authz.config.redis import RedisConfig
from authz.config.types import Number, Section

__all__ = ["CacheConfig", "RedisConfig"]


class CacheConfig(Section):
    """The introspection cache (DESIGN.md "Cache rule")."""

    enabled: StrictBool = True
    max_ttl_seconds: Annotated[float, Number(gt=0)] = 300.0
    max_entries: Annotated[int, Number(ge=0, integer=True)] = 100_000
    max_bytes: Annotated[int, Number(gt=0, integer=True)] = 256 * 1024 * 1024
    expiry_skew_seconds: Annotated[float, Number(ge=0)] = 5.0  # an entry expires this long before the token's exp
    negative_ttl_seconds: Annotated[float, Number(ge=0)] = 5.0
    negative_max_entries: Annotated[int, Number(ge=0, integer=True)] = 100_000
    stale_if_error_seconds: Annotated[float, Number(ge=0)] = 60.0  # 0 disables stale-if-error
    redis: RedisConfig = RedisConfig()  # the shared L2 tier (authz.config.redis); off unless a topology is set
