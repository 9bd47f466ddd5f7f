"""TLS keys of the configuration: ``server.tls`` and an AS's ``ca_file`` / client certificate. Every bad file is one
line naming its key, at load (the listener's rotation logs the same lines: test_listener_tls.py)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from authz.config import ConfigError, load_config
from tests.pki import Authority, self_signed

CA = Authority("config test CA")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    server_cert, server_key = CA.issue("authz", dns=("authz.test",)).write(directory, "server")
    other_cert, other_key = CA.issue("other").write(directory, "other")
    client_cert, client_key = self_signed("gateway").write(directory, "client")
    expired = CA.issue("old", lifetime=-datetime.timedelta(minutes=1))
    expired_cert, expired_key = expired.write(directory, "expired")
    encrypted = directory / "encrypted.key"
    encrypted.write_bytes(CA.issue("x").key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    (directory / "empty.pem").write_text("\n")
    (directory / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    return {"ca": CA.write(directory / "ca.pem"), "server_cert": server_cert, "server_key": server_key,
            "other_key": other_key, "other_cert": other_cert, "client_cert": client_cert, "client_key": client_key,
            "expired_cert": expired_cert, "expired_key": expired_key, "encrypted": encrypted,
            "empty": directory / "empty.pem", "junk": directory / "junk.pem", "missing": directory / "missing.pem"}


def _as(**extra: Any) -> dict[str, Any]:
    return {"introspection_endpoint": "https://as.example/introspect", "client_id": "gateway",
            "client_secret_env": "GW_SECRET", "issuer": "https://as.example", **extra}


def _load(tmp_path: Path, tls: dict[str, Any] | None = None, **as_extra: Any) -> Any:
    doc: dict[str, Any] = {"authorization_servers": {"corp": _as(**as_extra)}}
    if tls is not None:
        doc["server"] = {"tls": tls}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({k: _strings(v) for k, v in doc.items()}))
    return load_config(path, {"GW_SECRET": "s3cret"})


def _strings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items() if v is not None}
    return str(value) if isinstance(value, Path) else value


def _error(tmp_path: Path, tls: dict[str, Any] | None = None, **as_extra: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, tls, **as_extra)
    assert "\n" not in str(info.value)
    return str(info.value)


def _listener(files: dict[str, Path], **changes: Any) -> dict[str, Any]:
    return {"cert_file": files["server_cert"], "key_file": files["server_key"], **changes}


def test_listener_tls_loads_with_mutual_tls_and_allowed_sans(tmp_path: Path, files: dict[str, Path]) -> None:
    config = _load(tmp_path, _listener(files, client_ca_file=files["ca"],
                                       allowed_client_sans=["spiffe://test/ns/edge/sa/*", "envoy.test"]))
    tls = config.server.tls
    assert tls.cert_file == str(files["server_cert"]) and tls.client_ca_file == str(files["ca"])
    assert tls.allowed_client_sans == ("spiffe://test/ns/edge/sa/*", "envoy.test")
    assert tls.reload_interval_seconds == 5.0
    assert _load(tmp_path).server.tls is None


def test_listener_file_names_are_relative_to_the_config_file(tmp_path: Path, files: dict[str, Path]) -> None:
    config = _load(files["ca"].parent, {"cert_file": "server.pem", "key_file": "server.key"})
    assert config.server.tls.key_file == str(files["server_key"])


@pytest.mark.parametrize(("changes", "expected"), [
    ({"key_file": "other_key"}, "server.tls.key_file: does not match the certificate in cert_file"),
    ({"cert_file": "junk"}, "server.tls.cert_file: {junk} holds no PEM certificate that parses"),
    ({"cert_file": "empty"}, "server.tls.cert_file: {empty} is empty"),
    ({"cert_file": "missing"}, "server.tls.cert_file: cannot read {missing}: No such file or directory"),
    ({"key_file": "ca"}, "server.tls.key_file: {ca} is not an unencrypted PEM private key"),
    ({"key_file": "encrypted"}, "server.tls.key_file: {encrypted} is not an unencrypted PEM private key"),
    ({"cert_file": "expired_cert", "key_file": "expired_key"}, "server.tls.cert_file: the certificate in "
                                                                "{expired_cert} expired on "),
    ({"client_ca_file": "empty"}, "server.tls.client_ca_file: {empty} is empty"),
    ({"client_ca_file": "junk"}, "server.tls.client_ca_file: {junk} holds no PEM certificate that parses"),
])
def test_listener_files_that_cannot_serve_are_refused_naming_the_key(
    tmp_path: Path, files: dict[str, Path], changes: dict[str, str], expected: str
) -> None:
    message = _error(tmp_path, _listener(files, **{key: files[name] for key, name in changes.items()}))
    assert message.startswith(expected.format(**{k: str(v) for k, v in files.items()})), message


@pytest.mark.parametrize(("changes", "expected"), [
    ({"allowed_client_sans": ["envoy.test"]}, "server.tls.allowed_client_sans: needs client_ca_file"),
    ({"allowed_client_sans": ["*"]}, "server.tls.allowed_client_sans: '*' is not a SAN pattern"),
    ({"allowed_client_sans": ["a b"]}, "server.tls.allowed_client_sans: 'a b' is not a valid SAN"),
    ({"reload_interval_seconds": 0}, "server.tls.reload_interval_seconds: must be > 0, got 0"),
    ({"require_client_certificate": True}, "server.tls.require_client_certificate: unknown key"),
])
def test_listener_settings_that_make_no_sense_are_refused(
    tmp_path: Path, files: dict[str, Path], changes: dict[str, Any], expected: str
) -> None:
    assert _error(tmp_path, _listener(files, **changes)).startswith(expected)


def test_as_ca_bundle_and_client_certificate_load(tmp_path: Path, files: dict[str, Path]) -> None:
    server = _load(tmp_path, ca_file=files["ca"], client_cert_file=files["client_cert"],
                   client_key_file=files["client_key"]).default_as
    assert server.ca_file == str(files["ca"])
    assert server.client_key_pem.reveal().encode() == files["client_key"].read_bytes()
    assert "BEGIN" not in repr(server)  # the key is a Secret, masked


@pytest.mark.parametrize("method", ["tls_client_auth", "self_signed_tls_client_auth"])
def test_as_rfc8705_methods_need_the_certificate_and_no_secret(
    tmp_path: Path, files: dict[str, Path], method: str
) -> None:
    server = _load(tmp_path, client_auth_method=method, client_secret_env=None, client_cert_file=files["client_cert"],
                   client_key_file=files["client_key"]).default_as
    assert server.client_secret is None and server.client_auth_method == method
    assert _error(tmp_path, client_auth_method=method, client_secret_env=None) == (
        f"authorization_servers.corp.client_cert_file: is required with client_auth_method: {method} (RFC 8705: "
        "the client certificate is the credential)")
    assert _error(tmp_path, client_auth_method=method, client_cert_file=files["client_cert"],
                  client_key_file=files["client_key"]) == (
        f"authorization_servers.corp.client_secret_env: is not used with client_auth_method: {method}")


@pytest.mark.parametrize(("extra", "expected"), [
    ({"ca_file": "empty"}, "authorization_servers.corp.ca_file: {empty} is empty"),
    ({"ca_file": "junk"}, "authorization_servers.corp.ca_file: {junk} holds no PEM certificate that parses"),
    ({"ca_file": "missing"}, "authorization_servers.corp.ca_file: cannot read {missing}"),
    ({"client_cert_file": "client_cert", "client_key_file": "other_key"},
     "authorization_servers.corp.client_key_file: does not match the certificate in client_cert_file"),
    ({"client_cert_file": "client_cert"}, "authorization_servers.corp.client_key_file: is required with "
                                          "client_cert_file"),
    ({"client_key_file": "client_key"}, "authorization_servers.corp.client_cert_file: is required with "
                                        "client_key_file"),
])
def test_as_tls_files_that_cannot_work_are_refused_naming_the_key(
    tmp_path: Path, files: dict[str, Path], extra: dict[str, str], expected: str
) -> None:
    as_extra: dict[str, Any] = {key: files[name] for key, name in extra.items()}
    message = _error(tmp_path, None, **as_extra)
    assert message.startswith(expected.format(**{k: str(v) for k, v in files.items()})), message


def test_as_ca_file_with_verification_off_is_refused(tmp_path: Path, files: dict[str, Path]) -> None:
    assert _error(tmp_path, ca_file=files["ca"], verify_tls=False) == (
        "authorization_servers.corp.ca_file: is not used with verify_tls: false (nothing is verified)")
