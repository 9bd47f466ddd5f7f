"""load_config: one YAML file plus AUTHZ__ overrides; every error names its dotted key; secrets never leak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, Secret, load_config

SECRET = "s3cr3t-value-9f8e7d"
OVERRIDE = "AUTHZ__AUTHORIZATION_SERVERS__CURITY__CLIENT_SECRET"


def _server(**extra: Any) -> dict[str, Any]:
    server: dict[str, Any] = {
        "introspection_endpoint": "https://as.example/oauth/introspect",
        "client_id": "gateway",
        "client_secret_env": "GW_SECRET",
        "issuer": "https://as.example",  # required: the phantom dialect's JWTs are verified
    }
    server.update(extra)
    return server


def _doc(**top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"authorization_servers": {"curity": _server()}}
    doc.update(top)
    return doc


def _write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "authz.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


def _load(tmp_path: Path, doc: Any, **env: str) -> Any:
    return load_config(_write(tmp_path, doc), {"GW_SECRET": SECRET, **env})


def _error(tmp_path: Path, doc: Any, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, doc, **env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_loads_minimal_config_with_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc())
    server = config.default_as
    assert config.default_authorization_server == "curity"
    assert server.name == "curity"
    assert server.introspection_endpoint == "https://as.example/oauth/introspect"
    assert server.client_id == "gateway"
    assert server.client_secret == Secret(SECRET)
    assert server.client_secret.reveal() == SECRET
    assert server.dialect == "phantom"
    assert server.client_auth_method == "client_secret_basic"
    assert server.timeout_seconds == 2.0
    assert server.max_response_bytes == 64 * 1024
    assert server.retry_after_seconds == 5
    assert server.verify_tls is True
    assert server.issuer == "https://as.example"
    assert config.server.listen == "127.0.0.1:9001"
    assert config.server.log_level == "INFO"
    assert config.realm == "api"
    assert config.credential.max_token_length == 4096
    assert config.routes.required_scopes == ()
    assert config.routes.disabled is False
    assert config.headers_to_remove == ()
    assert config.cors_preflight == "authenticate"
    assert config.clock_skew_seconds == 30.0


def test_reads_secret_from_file_and_strips_it(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(f"  {SECRET}\n\n", encoding="utf-8")
    server = _server(client_secret_file=str(secret_file))
    del server["client_secret_env"]
    config = load_config(_write(tmp_path, {"authorization_servers": {"curity": server}}), {})
    assert config.default_as.client_secret.reveal() == SECRET


def test_rejects_unreadable_secret_file_naming_the_key(tmp_path: Path) -> None:
    server = _server(client_secret_file=str(tmp_path / "nope.txt"))
    del server["client_secret_env"]
    message = _error(tmp_path, {"authorization_servers": {"curity": server}})
    assert message.startswith("authorization_servers.curity.client_secret_file:")


def test_rejects_empty_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("\n  \n", encoding="utf-8")
    server = _server(client_secret_file=str(secret_file))
    del server["client_secret_env"]
    message = _error(tmp_path, {"authorization_servers": {"curity": server}})
    assert message.startswith("authorization_servers.curity.client_secret_file:")


def test_rejects_inline_secret_in_the_file_naming_the_key(tmp_path: Path) -> None:
    server = _server(client_secret=SECRET)
    del server["client_secret_env"]
    message = _error(tmp_path, {"authorization_servers": {"curity": server}})
    assert message.startswith("authorization_servers.curity.client_secret:")
    assert SECRET not in message


def test_rejects_missing_secret(tmp_path: Path) -> None:
    server = _server()
    del server["client_secret_env"]
    message = _error(tmp_path, {"authorization_servers": {"curity": server}})
    assert message.startswith("authorization_servers.curity.client_secret:")


def test_rejects_secret_env_variable_that_is_not_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, _doc()), {})
    assert str(info.value).startswith("authorization_servers.curity.client_secret_env:")
    assert "GW_SECRET" in str(info.value)


def test_overrides_listen_address_from_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(), AUTHZ__SERVER__LISTEN="0.0.0.0:9191")
    assert config.server.listen == "0.0.0.0:9191"


def test_overrides_unix_listen_address_from_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(), AUTHZ__SERVER__LISTEN="unix:/run/authz.sock")
    assert config.server.listen == "unix:/run/authz.sock"


def test_overrides_header_list_from_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(headers_to_remove=["x-other"]), AUTHZ__HEADERS_TO_REMOVE="[x-user-id, X-Role]")
    assert config.headers_to_remove == ("x-user-id", "x-role")


def test_overrides_nested_number_from_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(), AUTHZ__AUTHORIZATION_SERVERS__CURITY__TIMEOUT_SECONDS="0.5")
    assert config.default_as.timeout_seconds == 0.5


def test_allows_secret_from_override_variable(tmp_path: Path) -> None:
    server = _server()
    del server["client_secret_env"]
    config = load_config(_write(tmp_path, {"authorization_servers": {"curity": server}}), {OVERRIDE: SECRET})
    assert config.default_as.client_secret.reveal() == SECRET


def test_override_variable_replaces_secret_source_from_file(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(), **{OVERRIDE: "from-override"})
    assert config.default_as.client_secret.reveal() == "from-override"


@pytest.mark.parametrize("secret", ["123456", "s3cr3t #1", "'quoted'"], ids=["digits", "hash", "quotes"])
def test_override_secret_is_taken_verbatim(tmp_path: Path, secret: str) -> None:
    server = _server()
    del server["client_secret_env"]
    config = load_config(_write(tmp_path, {"authorization_servers": {"curity": server}}), {OVERRIDE: secret})
    assert config.default_as.client_secret.reveal() == secret


def test_ignores_environment_variables_without_the_prefix(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(), SERVER__LISTEN="garbage", AUTHZ_SERVER__LISTEN="garbage")
    assert config.server.listen == "127.0.0.1:9001"


def test_rejects_unknown_top_level_key(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(relm="api")).startswith("relm: unknown key")


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        (_doc(server={"listn": "127.0.0.1:1"}), "server.listn"),
        (_doc(routes={"required_scope": ["read"]}), "routes.required_scope"),
        (_doc(credential={"max_length": 100}), "credential.max_length"),
        ({"authorization_servers": {"curity": _server(timeout=3)}}, "authorization_servers.curity.timeout"),
    ],
)
def test_rejects_unknown_nested_key_naming_its_dotted_path(tmp_path: Path, doc: dict[str, Any], key: str) -> None:
    assert _error(tmp_path, doc).startswith(f"{key}: unknown key")


def test_rejects_unknown_key_from_environment(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(), AUTHZ__SERVER__PORT="1").startswith("server.port: unknown key")


@pytest.mark.parametrize("value", ["fast", -1, 0, True, [1]])
def test_rejects_bad_timeout_naming_the_key(tmp_path: Path, value: Any) -> None:
    doc = {"authorization_servers": {"curity": _server(timeout_seconds=value)}}
    assert _error(tmp_path, doc).startswith("authorization_servers.curity.timeout_seconds:")


def test_rejects_bad_number_from_environment(tmp_path: Path) -> None:
    message = _error(tmp_path, _doc(), AUTHZ__CLOCK_SKEW_SECONDS="lots")
    assert message.startswith("clock_skew_seconds:")


def test_allows_zero_clock_skew(tmp_path: Path) -> None:
    assert _load(tmp_path, _doc(clock_skew_seconds=0)).clock_skew_seconds == 0.0


@pytest.mark.parametrize("listen", ["localhost", ":9001", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "unix:"])
def test_rejects_bad_listen_address(tmp_path: Path, listen: str) -> None:
    assert _error(tmp_path, _doc(server={"listen": listen})).startswith("server.listen:")


@pytest.mark.parametrize("listen", ["unix:/tmp/authz.sock", "[::1]:9001", "authz.internal:0"])
def test_accepts_good_listen_address(tmp_path: Path, listen: str) -> None:
    assert _load(tmp_path, _doc(server={"listen": listen})).server.listen == listen


def test_rejects_unknown_dialect(tmp_path: Path) -> None:
    doc = {"authorization_servers": {"curity": _server(dialect="rfc7662-json")}}
    message = _error(tmp_path, doc)
    assert message.startswith("authorization_servers.curity.dialect:")
    assert "rfc7662-json" in message


def test_rejects_non_http_introspection_endpoint(tmp_path: Path) -> None:
    doc = {"authorization_servers": {"curity": _server(introspection_endpoint="ftp://as.example/x")}}
    assert _error(tmp_path, doc).startswith("authorization_servers.curity.introspection_endpoint:")


def test_rejects_unknown_default_authorization_server(tmp_path: Path) -> None:
    message = _error(tmp_path, _doc(default_authorization_server="okta"))
    assert message.startswith("default_authorization_server:")
    assert "okta" in message


def test_chooses_named_default_authorization_server(tmp_path: Path) -> None:
    doc = {
        "authorization_servers": {"a": _server(), "b": _server(client_id="b-client")},
        "default_authorization_server": "b",
    }
    config = _load(tmp_path, doc)
    assert config.default_as.client_id == "b-client"
    assert set(config.authorization_servers) == {"a", "b"}


def test_rejects_config_without_authorization_servers(tmp_path: Path) -> None:
    assert _error(tmp_path, {"realm": "api"}).startswith("authorization_servers:")


@pytest.mark.parametrize("headers", [["x-user-id", "authorization"], ["Authorization"], "x-a authorization"])
def test_rejects_authorization_in_headers_to_remove(tmp_path: Path, headers: Any) -> None:
    assert _error(tmp_path, _doc(headers_to_remove=headers)).startswith("headers_to_remove:")


def test_rejects_invalid_header_name_in_headers_to_remove(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(headers_to_remove=["x user"])).startswith("headers_to_remove:")


def test_rejects_invalid_scope_in_route_defaults(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(routes={"required_scopes": ['read"']})).startswith("routes.required_scopes:")


def test_reads_route_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc(routes={"required_scopes": "read write", "disabled": True}))
    assert config.routes.required_scopes == ("read", "write")
    assert config.routes.disabled is True


def test_rejects_realm_with_quote(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(realm='a"b')).startswith("realm:")


def test_rejects_bad_cors_preflight_choice(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(cors_preflight="yes")).startswith("cors_preflight:")


def test_rejects_invalid_yaml_with_line_number(tmp_path: Path) -> None:
    message = _error(tmp_path, "authorization_servers:\n  curity: [unclosed\n")
    assert "not valid YAML at line " in message


def test_rejects_non_mapping_top_level(tmp_path: Path) -> None:
    assert "mapping" in _error(tmp_path, "- a\n- b\n")


def test_rejects_non_mapping_section(tmp_path: Path) -> None:
    assert _error(tmp_path, _doc(server="127.0.0.1:1")).startswith("server: must be a mapping")


def test_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml", {"GW_SECRET": SECRET})
    assert "absent.yaml" in str(info.value)


def test_repr_never_shows_the_secret(tmp_path: Path) -> None:
    config = _load(tmp_path, _doc())
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in repr(config.default_as)
    assert SECRET not in str(config.default_as.client_secret)
    assert SECRET not in f"{config.default_as.client_secret}"


def test_policy_decision_cache_size_defaults_and_bounds(tmp_path: Path) -> None:
    rego = tmp_path / "p.rego"
    rego.write_text("package p\n", encoding="utf-8")
    assert _load(tmp_path, _doc(policy={"paths": [str(rego)]})).policy.decision_cache_size == 10_000
    off = _load(tmp_path, _doc(policy={"paths": [str(rego)], "decision_cache_size": 0}))
    assert off.policy.decision_cache_size == 0
    for bad in (-1, 2.5, "many"):
        assert "policy.decision_cache_size" in _error(tmp_path, _doc(policy={"paths": [str(rego)],
                                                                             "decision_cache_size": bad}))


# --- issue 12 items 1 and 10: route defaults follow the scope grammar; an empty value is an error ----------------

@pytest.mark.parametrize("scopes", ["read\u00a0admin", "read\tadmin", "read\x0badmin", "read\x1fadmin",
                                    "read\u2003admin", "read\u2028admin", ["read\u00a0admin"], ["read admin"]],
                         ids=["nbsp", "tab", "vt", "us", "emsp", "lsep", "list-nbsp", "list-sp"])
def test_item01_route_default_scopes_follow_the_rfc_grammar(tmp_path: Path, scopes: Any) -> None:
    assert _error(tmp_path, _doc(routes={"required_scopes": scopes})).startswith("routes.required_scopes:")


@pytest.mark.parametrize("scopes", ["", "  ", [], [""]], ids=["empty", "spaces", "empty-list", "list-of-empty"])
def test_item10_empty_route_default_scopes_are_an_error(tmp_path: Path, scopes: Any) -> None:
    message = _error(tmp_path, _doc(routes={"required_scopes": scopes}))
    assert message.startswith("routes.required_scopes:")


@pytest.mark.parametrize("scopes", ["-", ["-"]])
def test_item10_dash_route_default_means_no_scope(tmp_path: Path, scopes: Any) -> None:
    assert _load(tmp_path, _doc(routes={"required_scopes": scopes})).routes.required_scopes == ()
    assert _load(tmp_path, _doc()).routes.required_scopes == ()  # absent: the service needs a token, no scope


def test_item10_empty_route_default_from_the_environment_is_an_error(tmp_path: Path) -> None:
    message = _error(tmp_path, _doc(), AUTHZ__ROUTES__REQUIRED_SCOPES="")
    assert message.startswith("routes.required_scopes:")


def test_shipped_config_names_no_scope_explicitly() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "authz.yaml"
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["routes"]["required_scopes"] == "-"
    assert load_config(path, {"DEV_AS_GATEWAY_SECRET": "x"}).routes.required_scopes == ()


# --- issue 12 item 7: preflights skip no policy route unless configured ---------------------------------------

def test_item07_cors_preflight_on_policy_routes_is_off_and_needs_allow(tmp_path: Path) -> None:
    assert _load(tmp_path, _doc(cors_preflight="allow")).cors_preflight_on_policy_routes is False
    on = _load(tmp_path, _doc(cors_preflight="allow", cors_preflight_on_policy_routes=True))
    assert on.cors_preflight_on_policy_routes is True
    message = _error(tmp_path, _doc(cors_preflight_on_policy_routes=True))
    assert message.startswith("cors_preflight_on_policy_routes:")

