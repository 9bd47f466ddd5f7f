"""Configuration of dialects, client authentication and verification: every bad value is refused at start with
one line naming its dotted key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authz.config import DEFAULT_ALGORITHMS, Config, ConfigError, load_config

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = "https://as.example/oauth"
KEY = "authorization_servers.corp"


def _pem(key: Any, password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def _server(**extra: Any) -> dict[str, Any]:
    server: dict[str, Any] = {
        "introspection_endpoint": "https://as.example/oauth/introspect",
        "client_id": "gateway",
        "client_secret_env": "GW_SECRET",
        "issuer": ISSUER,
    }
    server.update(extra)
    return {k: v for k, v in server.items() if v is not None}


def _load(tmp_path: Path, server: dict[str, Any], env: dict[str, str] | None = None, **top: Any) -> Config:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"corp": server}, **top}), encoding="utf-8")
    return load_config(path, {"GW_SECRET": "s3cret", **(env or {})})


def _error(tmp_path: Path, server: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, server, **top)
    message = str(info.value)
    assert "\n" not in message
    return message


def _key_file(tmp_path: Path, data: bytes, name: str = "client.pem") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _pkjwt(tmp_path: Path, key: Any = RSA_KEY, **settings: Any) -> dict[str, Any]:
    """A private_key_jwt server entry, without any client secret source."""
    return _server(client_secret_env=None, client_auth_method="private_key_jwt",
                   private_key_jwt={"key_file": _key_file(tmp_path, _pem(key)), **settings})


def test_defaults_for_verification(tmp_path: Path) -> None:
    server = _load(tmp_path, _server()).default_as
    assert server.dialect == "phantom"
    assert server.issuer == ISSUER
    assert server.jwks_uri is None
    assert server.metadata_url is None
    assert server.audiences == ()
    assert server.algorithms == DEFAULT_ALGORITHMS
    assert "HS256" not in server.algorithms
    assert server.leeway_seconds == 30.0
    assert server.jwks_cache_seconds == 300.0
    assert server.jwks_min_refresh_seconds == 5.0
    assert server.jwt_field is None
    assert server.claims_forwarding == "none"
    assert server.claims_header == "x-token-claims"
    assert server.client_auth_method == "client_secret_basic"
    assert server.private_key_jwt is None


def test_a_leeway_longer_than_five_minutes_is_refused(tmp_path: Path) -> None:
    """Clocks further apart are an outage to fix; a leeway of an hour would accept tokens an hour past their exp."""
    assert _load(tmp_path, _server(leeway_seconds=300)).default_as.leeway_seconds == 300.0
    assert _error(tmp_path, _server(leeway_seconds=3600)) == f"{KEY}.leeway_seconds: must be <= 300, got 3600"
    with pytest.raises(ConfigError, match=r"^clock_skew_seconds: must be <= 300, got 301"):
        _load(tmp_path, _server(), clock_skew_seconds=301)


def test_leeway_defaults_to_clock_skew_seconds(tmp_path: Path) -> None:
    assert _load(tmp_path, _server(), clock_skew_seconds=7).default_as.leeway_seconds == 7.0
    assert _load(tmp_path, _server(leeway_seconds=0), clock_skew_seconds=7).default_as.leeway_seconds == 0.0


def test_reads_every_verification_key(tmp_path: Path) -> None:
    server = _load(tmp_path, _server(
        dialect="rfc7662", jwks_uri="https://as.example/jwks", metadata_url="https://as.example/meta",
        audiences=["api", "urn:billing"], algorithms=["ES256", "PS384"], leeway_seconds=2,
        jwks_cache_seconds=60, jwks_min_refresh_seconds=0, jwt_field="jwt", claims_forwarding="header",
        claims_header="X-Claims",
    )).default_as
    assert server.dialect == "rfc7662"
    assert server.jwks_uri == "https://as.example/jwks"
    assert server.metadata_url == "https://as.example/meta"
    assert server.audiences == ("api", "urn:billing")
    assert server.algorithms == ("ES256", "PS384")
    assert server.leeway_seconds == 2.0
    assert server.jwks_cache_seconds == 60.0
    assert server.jwks_min_refresh_seconds == 0.0
    assert server.jwt_field == "jwt"
    assert server.claims_forwarding == "header"
    assert server.claims_header == "x-claims"


def test_audiences_may_be_a_space_separated_string(tmp_path: Path) -> None:
    assert _load(tmp_path, _server(audiences="api web")).default_as.audiences == ("api", "web")


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["RS256", "HS512"], "RS256 none", ["rs256"], ["XYZ"],
                                        "HS384"],
                         ids=["hs256", "none", "mixed", "string-none", "lower-case", "unknown", "string-hs"])
def test_rejects_symmetric_none_or_unknown_algorithms(tmp_path: Path, algorithms: Any) -> None:
    message = _error(tmp_path, _server(algorithms=algorithms))
    assert message.startswith(f"{KEY}.algorithms:")


@pytest.mark.parametrize(("key", "value"), [
    ("dialect", "curity"), ("dialect", "RFC7662"), ("client_auth_method", "client_secret_jwt"),
    ("client_auth_method", "mtls"), ("claims_forwarding", "jwt"), ("claims_forwarding", True),
    ("jwks_uri", "ftp://as.example/jwks"), ("jwks_uri", "/jwks"), ("metadata_url", "as.example/meta"),
    ("issuer", ""), ("issuer", 42), ("audiences", ["a b"]), ("audiences", 5), ("leeway_seconds", -1),
    ("leeway_seconds", 301), ("jwks_cache_seconds", 0), ("jwks_min_refresh_seconds", -0.5), ("jwt_field", ""),
])
def test_rejects_bad_values_naming_the_key(tmp_path: Path, key: str, value: Any) -> None:
    assert _error(tmp_path, _server(**{key: value})).startswith(f"{KEY}.{key}:")


@pytest.mark.parametrize("header", ["authorization", "Authorization", "host", "cookie", "x claims", "x-ä"])
def test_rejects_claims_header_that_cannot_carry_claims(tmp_path: Path, header: str) -> None:
    server = _server(dialect="rfc7662", claims_forwarding="header", claims_header=header)
    assert _error(tmp_path, server).startswith(f"{KEY}.claims_header:")


@pytest.mark.parametrize("dialect", ["phantom", "rfc9701"])
def test_issuer_is_required_for_jwt_dialects(tmp_path: Path, dialect: str) -> None:
    message = _error(tmp_path, _server(dialect=dialect, issuer=None))
    assert message.startswith(f"{KEY}.issuer:")
    assert dialect in message


def test_issuer_is_required_for_rfc7662_with_a_jwt_field(tmp_path: Path) -> None:
    assert _error(tmp_path, _server(dialect="rfc7662", jwt_field="jwt", issuer=None)).startswith(f"{KEY}.issuer:")


def test_issuer_is_optional_for_plain_rfc7662(tmp_path: Path) -> None:
    server = _load(tmp_path, _server(dialect="rfc7662", issuer=None)).default_as
    assert server.issuer is None
    assert server.dialect == "rfc7662"


def test_issuer_can_come_from_the_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, _server(issuer=None), {"AUTHZ__AUTHORIZATION_SERVERS__CORP__ISSUER": ISSUER})
    assert config.default_as.issuer == ISSUER


@pytest.mark.parametrize("dialect", ["phantom", "rfc9701"])
def test_jwt_field_is_only_for_rfc7662(tmp_path: Path, dialect: str) -> None:
    assert _error(tmp_path, _server(dialect=dialect, jwt_field="jwt")).startswith(f"{KEY}.jwt_field:")


def test_private_key_jwt_needs_no_client_secret(tmp_path: Path) -> None:
    server = _load(tmp_path, _pkjwt(tmp_path), env={}).default_as
    assert server.client_auth_method == "private_key_jwt"
    assert server.client_secret is None
    assert server.private_key_jwt is not None
    assert "PRIVATE KEY" in server.private_key_jwt.key_pem.reveal()
    assert server.private_key_jwt.algorithm == "RS256"
    assert server.private_key_jwt.kid is None
    assert server.private_key_jwt.audience is None
    assert server.private_key_jwt.lifetime_seconds == 60
    assert "PRIVATE KEY" not in repr(server)


def test_reads_private_key_jwt_settings(tmp_path: Path) -> None:
    server = _load(tmp_path, _pkjwt(tmp_path, EC_KEY, algorithm="ES256", kid="gw-2024",
                                    audience="https://as.example/token", lifetime_seconds=30)).default_as
    settings = server.private_key_jwt
    assert settings is not None
    assert (settings.algorithm, settings.kid, settings.audience, settings.lifetime_seconds) == (
        "ES256", "gw-2024", "https://as.example/token", 30)


def test_private_key_jwt_needs_its_section(tmp_path: Path) -> None:
    server = _server(client_secret_env=None, client_auth_method="private_key_jwt")
    assert _error(tmp_path, server).startswith(f"{KEY}.private_key_jwt.key_file:")


def test_private_key_jwt_key_file_must_exist(tmp_path: Path) -> None:
    server = _pkjwt(tmp_path)
    server["private_key_jwt"]["key_file"] = str(tmp_path / "absent.pem")
    message = _error(tmp_path, server)
    assert message.startswith(f"{KEY}.private_key_jwt.key_file:")
    assert "absent.pem" in message


@pytest.mark.parametrize("data", [
    _pem(RSA_KEY, password=b"hunter2"),
    b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    b"just some text",
    RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    b"\n \n",
], ids=["encrypted", "garbage-pem", "text", "public-key", "empty"])
def test_private_key_jwt_key_file_must_be_an_unencrypted_private_key(tmp_path: Path, data: bytes) -> None:
    server = _pkjwt(tmp_path)
    server["private_key_jwt"]["key_file"] = _key_file(tmp_path, data, "bad.pem")
    message = _error(tmp_path, server)
    assert message.startswith(f"{KEY}.private_key_jwt.key_file:")
    assert "hunter2" not in message


@pytest.mark.parametrize(("key", "value"), [
    ("algorithm", "HS256"), ("algorithm", "none"), ("kid", ""), ("kid", 5), ("audience", ""),
    ("lifetime_seconds", 0), ("lifetime_seconds", 1.5), ("lifetime_seconds", "60"), ("keyfile", "x"),
])
def test_rejects_bad_private_key_jwt_settings_naming_the_key(tmp_path: Path, key: str, value: Any) -> None:
    assert _error(tmp_path, _pkjwt(tmp_path, **{key: value})).startswith(f"{KEY}.private_key_jwt.{key}:")


def test_private_key_jwt_section_without_the_method_is_refused(tmp_path: Path) -> None:
    server = _server(private_key_jwt={"key_file": _key_file(tmp_path, _pem(RSA_KEY))})
    assert _error(tmp_path, server).startswith(f"{KEY}.private_key_jwt:")


@pytest.mark.parametrize(("key", "algorithm"), [(EC_KEY, "RS256"), (RSA_KEY, "ES256")], ids=["ec-rs256", "rsa-es256"])
def test_private_key_jwt_key_must_fit_the_algorithm(tmp_path: Path, key: Any, algorithm: str) -> None:
    message = _error(tmp_path, _pkjwt(tmp_path, key, algorithm=algorithm))
    assert message.startswith(f"{KEY}.private_key_jwt.")
