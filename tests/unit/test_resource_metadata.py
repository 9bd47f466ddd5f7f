"""RFC 9728 protected-resource metadata (``authz.resource_metadata``): metadata URLs, what the configuration refuses,
the documents made from the routes' settings, the challenges that name them (only where they cover the route), and
the answers through the pipeline."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.claims import ClaimsChecker
from authz.config import Config, ConfigError, load_config
from authz.errors import InvalidToken
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from authz.resource_metadata import WELL_KNOWN, is_metadata_path, metadata_url
from authz.transport.http_response import http_answer

MAIN = "https://as.example"
PARTNER = "https://partner.example"


def _server(issuer: str | None) -> dict[str, Any]:
    server = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
              "dialect": "rfc7662"}
    return server if issuer is None else {**server, "issuer": issuer}


def _config(tmp_path: Path, routes: dict[str, Any], **top: Any) -> Config:
    doc = {"authorization_servers": {"main": _server(MAIN), "partner": _server(PARTNER), "bare": _server(None)},
           "default_authorization_server": "main", "routes": routes, **top}
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, {"S": "secret"})


def _error(tmp_path: Path, routes: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, routes)
    return str(info.value)


class _Authority:
    """An AS whose every token is active with scope ``read``."""

    def __init__(self, issuer: str) -> None:
        self._checker = ClaimsChecker(issuer, (), 30.0)
        self._issuer = issuer

    async def answer(self, token: str) -> Answer:
        if token == "inactive-token":
            raise InvalidToken("not active")
        return Answer(Introspection(active=True, claims={"iss": self._issuer, "sub": "a", "scope": "read",
                                                          "exp": time.time() + 600}))

    def identity(self, answer: Answer) -> Identity:
        return self._checker.identity_of(answer)


def _authorizer(config: Config) -> Authorizer:
    return Authorizer(config, {"main": _Authority(MAIN), "partner": _Authority(PARTNER), "bare": _Authority(MAIN)})


def _request(path: str, token: str | None = None, host: str = "api.example.com", method: str = "GET",
             extensions: dict[str, str] | None = None) -> RequestInfo:
    return RequestInfo(method, path, host, {}, () if token is None else (f"Bearer {token}",), extensions or {},
                       peer_certificate="")  # gRPC mode, no client certificate (None: a transport carrying none)


async def _decide(authorizer: Authorizer, request: RequestInfo) -> CheckResponse:
    return await authorizer.decide(lambda: request, lambda: request.path)


def _challenge(response: CheckResponse) -> str:
    return {o.header.key: o.header.value for o in response.denied_response.headers}["www-authenticate"]


def _document(response: CheckResponse) -> dict[str, Any]:
    assert response.denied_response.status.code == 200, response
    doc: dict[str, Any] = json.loads(response.denied_response.body)
    return doc


RULES = {
    "required_scopes": "read",
    "default": "defaults",
    "resource": "https://api.example.com",
    "rules": [
        {"name": "records", "match": {"paths": ["/records/**"]}, "resource": "https://api.example.com/records/",
         "resource_documentation": "https://docs.example.com/records", "required_scopes": ["read", "records"]},
        {"name": "partner-records", "match": {"paths": ["/records/partner/**"]}, "as": "partner",
         "resource": "https://api.example.com/records/", "mtls_bound": "allowed"},
        {"name": "health", "match": {"paths": ["/health"]}, "disabled": True, "as": "bare"},
    ],
}


# --- metadata URLs (RFC 9728 §3.1) ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("resource", "url"), [
    ("https://api.example.com", "https://api.example.com" + WELL_KNOWN),
    ("https://api.example.com/", "https://api.example.com" + WELL_KNOWN),
    ("https://api.example.com/records", "https://api.example.com" + WELL_KNOWN + "/records"),
    ("https://api.example.com:8443/a/b/", "https://api.example.com:8443" + WELL_KNOWN + "/a/b"),
])
def test_metadata_url_puts_the_well_known_string_between_host_and_path(resource: str, url: str) -> None:
    assert metadata_url(resource) == url


def test_the_http_listener_never_takes_a_check_call_for_a_metadata_request() -> None:
    assert is_metadata_path(WELL_KNOWN + "/records?x=1", "/phantom-authz")
    assert not is_metadata_path("/phantom-authz" + WELL_KNOWN, "/phantom-authz")
    assert not is_metadata_path(WELL_KNOWN, "/.well-known")  # a prefix that catches it: always a check
    assert not is_metadata_path(WELL_KNOWN + "s", "/phantom-authz")


# --- what the configuration refuses -----------------------------------------------------------------------------------

@pytest.mark.parametrize("resource", ["http://api.example.com", "https://api.example.com/?q=1",
                                      "https://api.example.com/#f", "https://user@api.example.com",
                                      "https://api.example.com/a/../b", "https://api.example.com//a",
                                      "api.example.com"])
def test_a_resource_must_be_an_https_url_without_query_fragment_or_odd_path(tmp_path: Path, resource: str) -> None:
    assert "routes.resource" in _error(tmp_path, {"resource": resource})


def test_documentation_needs_its_resource_and_one_resource_one_documentation(tmp_path: Path) -> None:
    assert "routes.resource_documentation" in _error(tmp_path, {"resource_documentation": "https://docs.example"})
    rule = {"name": "r", "match": {"paths": ["/r"]}, "resource_documentation": "https://docs.example"}
    assert "rules[0] (r).resource_documentation" in _error(tmp_path, {"rules": [rule]})
    two = [{"name": f"r{i}", "match": {"paths": [f"/r{i}"]}, "resource": "https://api.example.com/r",
            "resource_documentation": f"https://docs.example/{i}"} for i in range(2)]
    assert "rules[1] (r1).resource_documentation" in _error(tmp_path, {"rules": two})


def test_the_as_of_a_route_naming_a_resource_needs_an_issuer(tmp_path: Path) -> None:
    rule = {"name": "r", "match": {"paths": ["/r"]}, "as": "bare", "resource": "https://api.example.com/r"}
    message = _error(tmp_path, {"rules": [rule]})
    assert message.startswith("authorization_servers.bare.issuer: is required")
    _config(tmp_path, {"rules": [{**rule, "disabled": True}]})  # a route without tokens lists no AS


# --- the documents ----------------------------------------------------------------------------------------------------

async def test_documents_are_made_from_every_route_naming_the_resource(tmp_path: Path) -> None:
    authorizer = _authorizer(_config(tmp_path, RULES))
    records = _document(await _decide(authorizer, _request(WELL_KNOWN + "/records")))
    assert records == {"resource": "https://api.example.com/records/", "authorization_servers": [MAIN, PARTNER],
                       "scopes_supported": ["read", "records"], "bearer_methods_supported": ["header"],
                       "resource_documentation": "https://docs.example.com/records",
                       "tls_client_certificate_bound_access_tokens": True}
    defaults = _document(await _decide(authorizer, _request(WELL_KNOWN, host="API.Example.com:443")))
    assert defaults == {"resource": "https://api.example.com", "authorization_servers": [MAIN],
                        "scopes_supported": ["read"], "bearer_methods_supported": ["header"]}


@pytest.mark.parametrize("host", ["api.example.com.", "API.example.com.:443"])
async def test_a_host_reads_as_route_rules_read_it(tmp_path: Path, host: str) -> None:
    """The document's host compares as route rules compare hosts (``authz.route_rules.patterns.request_host``): no
    case, no final dot (before a port too), no default https port."""
    document = _document(await _decide(_authorizer(_config(tmp_path, RULES)), _request(WELL_KNOWN, host=host)))
    assert document["resource"] == "https://api.example.com"


async def test_with_default_deny_the_defaults_publish_nothing_of_their_own(tmp_path: Path) -> None:
    rule = {"name": "r", "match": {"paths": ["/r"]}, "resource": "https://api.example.com/r"}
    authorizer = _authorizer(_config(tmp_path, {"resource": "https://api.example.com", "rules": [rule]}))
    assert (await _decide(authorizer, _request(WELL_KNOWN))).denied_response.status.code == 404
    assert _document(await _decide(authorizer, _request(WELL_KNOWN + "/r")))["resource"] == rule["resource"]


async def test_without_resources_the_well_known_path_is_a_request_like_any_other(tmp_path: Path) -> None:
    authorizer = _authorizer(_config(tmp_path, {"required_scopes": "read"}))
    assert authorizer.resources is None
    assert (await authorizer.check(_request(WELL_KNOWN, "token"))).headers_to_remove == ("authorization",)


async def test_other_hosts_paths_and_methods(tmp_path: Path) -> None:
    authorizer = _authorizer(_config(tmp_path, RULES))
    for request in (_request(WELL_KNOWN, host="api.example.com:8443"), _request(WELL_KNOWN + "/nothing"),
                    _request(WELL_KNOWN + "/records/")):
        assert (await _decide(authorizer, request)).denied_response.status.code == 404
    post = await _decide(authorizer, _request(WELL_KNOWN, method="POST"))
    assert post.denied_response.status.code == 405
    assert _document(await _decide(authorizer, _request(WELL_KNOWN + "?fresh=1", method="HEAD")))
    # a path that only starts like the well-known one is an ordinary request (401 here: no token)
    assert (await _decide(authorizer, _request(WELL_KNOWN + "s"))).denied_response.status.code == 401


# --- the challenges ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "token", "resource"), [
    ("/orders", None, "https://api.example.com"),
    ("/orders", "inactive-token", "https://api.example.com"),
    ("/records/x", None, "https://api.example.com/records/"),
    ("/records/partner/x", "inactive-token", "https://api.example.com/records/"),
])
async def test_each_401_names_its_routes_document(tmp_path: Path, path: str, token: str | None,
                                                  resource: str) -> None:
    response = await _decide(_authorizer(_config(tmp_path, RULES)), _request(path, token))
    assert response.denied_response.status.code == 401
    assert f'resource_metadata="{metadata_url(resource)}"' in _challenge(response)


async def test_no_other_status_names_metadata(tmp_path: Path) -> None:
    authorizer = _authorizer(_config(tmp_path, RULES))
    forbidden = await _decide(authorizer, _request("/records/x", "token"))  # scope records missing
    assert forbidden.denied_response.status.code == 403 and "resource_metadata" not in _challenge(forbidden)
    malformed = await _decide(authorizer, _request("/orders", "two tokens"))
    assert malformed.denied_response.status.code == 400 and "resource_metadata" not in _challenge(malformed)


@pytest.mark.parametrize("extensions", [{"as": "bare"}, {"required_scopes": "read admin"}],
                         ids=["another-as", "other-scopes"])
async def test_a_route_its_document_does_not_cover_names_none(tmp_path: Path, extensions: dict[str, str]) -> None:
    """context_extensions may send a route elsewhere than its rule: the challenge must not point at an AS or scopes
    the route does not take."""
    config = _config(tmp_path, {**RULES, "rules": RULES["rules"][:1]},
                     authorization_servers={"main": _server(MAIN), "bare": _server("https://elsewhere.example")})
    response = await _decide(Authorizer(config, {"main": _Authority(MAIN), "bare": _Authority(MAIN)}),
                             _request("/orders", extensions=extensions))
    assert response.denied_response.status.code == 401
    assert "resource_metadata" not in _challenge(response)


async def test_dpop_routes_publish_their_algorithms_and_whether_dpop_is_required(tmp_path: Path) -> None:
    rule = {"name": "r", "match": {"paths": ["/r"]}, "resource": "https://api.example.com/r", "dpop": "required"}
    config = _config(tmp_path, {"rules": [rule, {**rule, "name": "s", "match": {"paths": ["/s"]}, "dpop": "allowed"}]},
                     dpop={"algorithms": ["ES256", "EdDSA"]})
    document = _document(await _decide(_authorizer(config), _request(WELL_KNOWN + "/r")))
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert "dpop_bound_access_tokens_required" not in document  # route s also takes Bearer tokens
    only = _config(tmp_path, {"rules": [rule]}, dpop={"algorithms": ["ES256"]})
    assert _document(await _decide(_authorizer(only), _request(WELL_KNOWN + "/r")))[
        "dpop_bound_access_tokens_required"] is True


async def test_every_challenge_of_a_dpop_route_names_the_metadata(tmp_path: Path) -> None:
    rule = {"name": "r", "match": {"paths": ["/r"]}, "resource": "https://api.example.com/r", "dpop": "allowed"}
    response = await _decide(_authorizer(_config(tmp_path, {"rules": [rule]})), _request("/r"))
    challenge = _challenge(response)
    url = metadata_url("https://api.example.com/r")
    assert challenge.startswith(f'Bearer realm="api", resource_metadata="{url}"')
    assert f'DPoP realm="api", resource_metadata="{url}"' in challenge


async def test_in_http_mode_a_check_is_never_answered_with_the_document(tmp_path: Path) -> None:
    """A 200 to Envoy's HTTP-mode check is an allow: a check for the well-known path (Envoy not routing it to the
    listener) gets 403 from the HTTP transport instead."""
    response = await _decide(_authorizer(_config(tmp_path, RULES)), _request(WELL_KNOWN))
    assert response.denied_response.status.code == 200  # what gRPC mode sends, as a denial
    status, _, _ = http_answer(response)
    assert status == 403
