"""A DPoP proof is accepted once (RFC 9449 §11.1), whichever worker process of the sidecar receives it. Each worker
(``server.workers`` > 1, one port shared with SO_REUSEPORT) kept its own jti table when no ``cache.redis`` shares
them, so a captured proof was accepted again by every other worker within its window: a replay let through. Without
a shared store such a sidecar refuses to check DPoP proofs at all: a route configured for DPoP is a configuration
error naming the key, and a proof on a route that asks for DPoP by Envoy's per-route settings is a 500, never
a second allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, load_config
from authz.config.dpop import DpopConfig
from authz.config.redis import RedisConfig
from authz.dpop.replay import ReplayCache
from authz.errors import InvalidDpopProof, RouteMisconfigured

GW = {"introspection_endpoint": "https://as.example/oauth/introspect", "client_id": "gateway",
      "client_secret_env": "GW_SECRET", "issuer": "https://as.example"}


def _load(tmp_path: Path, **top: Any) -> Any:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"curity": GW}, **top}), encoding="utf-8")
    return load_config(path, {"GW_SECRET": "s3cr3t-value-9f8e7d"})


async def test_two_workers_without_a_shared_store_accept_no_proof() -> None:
    """Two worker processes' tables, as each worker builds its own: the proof the first accepted, the second would
    have accepted again."""
    first, second = (ReplayCache.for_config(DpopConfig(), None, workers=2) for _ in range(2))
    for table in (first, second):
        with pytest.raises(RouteMisconfigured, match=r"cache\.redis"):
            await table.first_use("proof-key", 65.0)


async def test_one_worker_keeps_its_own_table() -> None:
    table = ReplayCache.for_config(DpopConfig(), None, workers=1)
    await table.first_use("proof-key", 65.0)
    with pytest.raises(InvalidDpopProof):
        await table.first_use("proof-key", 65.0)


def test_several_workers_share_the_table_through_redis() -> None:
    redis = RedisConfig(url="redis://127.0.0.1:1/0")
    table = ReplayCache.for_config(DpopConfig(), redis, workers=4)
    assert table.shared is not None
    table_without = ReplayCache.for_config(DpopConfig(), RedisConfig(), workers=4)
    assert table_without.shared is None


@pytest.mark.parametrize("routes", [{"dpop": "allowed"}, {"dpop": "required"},
                                    {"rules": [{"name": "r", "match": {"paths": ["/api/**"]}, "dpop": "allowed"}]}])
def test_a_dpop_route_on_several_workers_needs_cache_redis(tmp_path: Path, routes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, server={"workers": 2}, routes=routes)
    assert "cache.redis" in str(info.value) and "dpop" in str(info.value)
    _load(tmp_path, server={"workers": 1}, routes=routes)  # one worker: one table
    _load(tmp_path, server={"workers": 2}, routes={"dpop": "off"})
