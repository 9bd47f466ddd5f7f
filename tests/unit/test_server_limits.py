"""Issue 12 item 9: ``server.max_receive_bytes``, the largest CheckRequest gRPC accepts, is configurable and never
smaller than what Envoy may send (its largest header block, 8 MiB, plus a body); the default holds it with room."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from authz.config import DEFAULT_MAX_RECEIVE_BYTES, ConfigError, load_config

MIB = 1024 * 1024


def _load(tmp_path: Path, server: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    doc = {"server": server,
           "authorization_servers": {"corp": {"introspection_endpoint": "https://as.example/introspect",
                                              "client_id": "gw", "client_secret_env": "SECRET",
                                              "issuer": "https://as.example", "jwks_uri": "https://as.example/jwks"}}}
    path = tmp_path / "authz.yaml"
    path.write_text(json.dumps(doc))
    return load_config(path, {"SECRET": "s", **(environ or {})})


def test_item09_default_receive_limit_is_over_grpcs_4_mib_and_envoys_largest_header_block(tmp_path: Path) -> None:
    limit = _load(tmp_path, {}).server.max_receive_bytes
    assert limit == DEFAULT_MAX_RECEIVE_BYTES
    assert limit >= 8 * MIB + 1 * MIB + 64 * 1024  # Envoy's header cap + the HTTP transport's body limit + framing
    assert limit > 4 * MIB


@pytest.mark.parametrize("value", [4 * MIB, 8 * MIB, 0, -1, 2**31], ids=["grpc-default", "8MiB", "zero", "neg", "2G"])
def test_item09_receive_limit_below_what_envoy_may_send_is_refused_at_start(tmp_path: Path, value: int) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, {"max_receive_bytes": value})
    assert "server.max_receive_bytes" in str(info.value)


def test_item09_receive_limit_grows_with_the_http_transports_body_limit(tmp_path: Path) -> None:
    assert _load(tmp_path, {"max_receive_bytes": 10 * MIB}).server.max_receive_bytes == 10 * MIB
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, {"max_receive_bytes": 10 * MIB, "http": {"max_body_bytes": 4 * MIB}})
    assert "server.http.max_body_bytes" in str(info.value)


def test_receive_limit_from_the_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, {}, {"AUTHZ__SERVER__MAX_RECEIVE_BYTES": str(64 * MIB)})
    assert config.server.max_receive_bytes == 64 * MIB
