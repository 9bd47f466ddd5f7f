"""A credential written where the configuration expects a URL, or a secret written where its variable's name goes,
never reaches an error message, ``authz validate-config``'s output or a log line.

A URL with ``user:password@`` in it works (aiohttp turns it into Basic auth) and then shows in the lines that name the
URL: the JWKS's "loaded N signing keys from <url>", OTel's exporter warnings, the AS's error messages. So such a URL
is refused at load, naming the key and not the URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, load_config

PASSWORD = "pw-SECRET-7d1c0b"
USERINFO = f"https://gateway:{PASSWORD}@as.example"
SECRET = "secret-value-5e4d3c"


def _server(**extra: Any) -> dict[str, Any]:
    return {"introspection_endpoint": "https://as.example/oauth/introspect", "client_id": "gateway",
            "client_secret_env": "GW_SECRET", "issuer": "https://as.example", **extra}


def _refused(tmp_path: Path, doc: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"GW_SECRET": "gw-secret-value", **(environ or {})})
    return str(info.value)


URL_KEYS = {
    "introspection_endpoint": {"authorization_servers": {"as1": _server(introspection_endpoint=f"{USERINFO}/i")}},
    "jwks_uri": {"authorization_servers": {"as1": _server(jwks_uri=f"{USERINFO}/jwks")}},
    "metadata_url": {"authorization_servers": {"as1": _server(metadata_url=f"{USERINFO}/.well-known/x")}},
    "token_endpoint": {"authorization_servers": {"as1": _server(token_exchange={"token_endpoint": f"{USERINFO}/t"})}},
    "policy.remote.url": {"authorization_servers": {"as1": _server()},
                          "policy": {"engine": "remote", "remote": {"url": f"http://opa:{PASSWORD}@127.0.0.1:8181"}}},
    "tracing.endpoint": {"authorization_servers": {"as1": _server()},
                         "tracing": {"exporter": "otlp_http", "endpoint": f"{USERINFO}/v1/traces"}},
}


@pytest.mark.parametrize("doc", URL_KEYS.values(), ids=URL_KEYS.keys())
def test_a_url_carrying_a_password_is_refused_without_showing_it(tmp_path: Path, doc: dict[str, Any]) -> None:
    message = _refused(tmp_path, doc)
    assert PASSWORD not in message
    assert "user:password@" in message


def test_validate_config_does_not_print_a_url_password(tmp_path: Path) -> None:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(URL_KEYS["jwks_uri"]), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "authz", "validate-config", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, env={"GW_SECRET": "x", "PATH": "/usr/bin"},
                          check=False)
    assert done.returncode != 0
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("key", ["client_secret_env"])
def test_a_secret_written_where_its_variable_name_goes_is_not_echoed(tmp_path: Path, key: str) -> None:
    server = _server()
    server[key] = SECRET  # the secret itself, not the name of the variable holding it
    message = _refused(tmp_path, {"authorization_servers": {"as1": server}})
    assert SECRET not in message
    assert key in message


def test_an_unset_variable_with_a_plain_name_is_named(tmp_path: Path) -> None:
    server = _server(client_secret_env="GATEWAY_SECRET")
    assert "GATEWAY_SECRET" in _refused(tmp_path, {"authorization_servers": {"as1": server}})


def test_a_dpop_nonce_secret_written_where_its_variable_name_goes_is_not_echoed(tmp_path: Path) -> None:
    doc = {"authorization_servers": {"as1": _server()}, "dpop": {"nonce": {"secret_env": SECRET}}}
    assert SECRET not in _refused(tmp_path, doc)
