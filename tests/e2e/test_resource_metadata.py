"""RFC 9728 protected-resource metadata through real Envoy, both ext_authz modes: the documents the service publishes
at the well-known path (gRPC mode: as the check's answer; HTTP mode: Envoy routes the path to ``server.http.listen``
with ext_authz off on that route), and the ``resource_metadata`` every 401 challenge names, which leads a client to
the document of the route it called, listing the AS that route accepts.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import EXT_AUTHZ, PER_ROUTE_TYPE, Response, Stack, add_route, config_mode, routes

HOST = "api.example.com"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
ROUTES = {
    "required_scopes": "read",
    "default": "defaults",
    "resource": "https://api.example.com/",
    "resource_documentation": "https://docs.example.com/api",
    "rules": [{"name": "records", "match": {"paths": ["/records/**"]}, "required_scopes": ["read", "approve"],
               "resource": "https://api.example.com/records"}],
}


def _metadata_route(config: dict[str, Any]) -> None:
    """The well-known path gets a route of its own: gRPC mode checks it (the service answers it in the check); HTTP
    mode sends it to the service's HTTP listener as an upstream, ext_authz off there (a 200 to a check is an allow)."""
    match = {"prefix": WELL_KNOWN}
    if config_mode(config) == "http":
        routes(config).insert(0, {"match": match, "route": {"cluster": "phantom_authz_http"},
                                  "typed_per_filter_config": {EXT_AUTHZ: {"@type": PER_ROUTE_TYPE, "disabled": True}}})
    else:
        routes(config).insert(0, {"match": match, "route": {"cluster": "echo"}})


@pytest.fixture(scope="module")
def rs_stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp(f"resource-metadata-{mode}"), mode)

    def mutate(config: dict[str, Any]) -> None:
        _metadata_route(config)
        add_route("/records/", {})(config)  # the route rule decides its settings

    try:
        yield stack.full(routes=ROUTES, mutate=mutate)
    finally:
        stack.stop()


def _get(stack: Stack, path: str, token: str | None = None, method: str = "GET") -> Response:
    return stack.get(path, token, headers={"Host": HOST}, method=method)


def _issuer(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.as_port}/oauth/v2/oauth-anonymous"


def _resource_metadata(resp: Response) -> str:
    found = re.search(r'resource_metadata="([^"]+)"', resp.headers["www-authenticate"])
    assert found is not None, resp
    return found.group(1)


def test_the_defaults_document(rs_stack: Stack) -> None:
    resp = _get(rs_stack, WELL_KNOWN)
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"resource": "https://api.example.com/", "authorization_servers": [_issuer(rs_stack)],
                           "scopes_supported": ["read"], "bearer_methods_supported": ["header"],
                           "resource_documentation": "https://docs.example.com/api"}


def test_a_rule_document_at_the_path_suffixed_url(rs_stack: Stack) -> None:
    resp = _get(rs_stack, WELL_KNOWN + "/records")
    assert resp.status == 200, resp
    assert resp.json() == {"resource": "https://api.example.com/records",
                           "authorization_servers": [_issuer(rs_stack)], "scopes_supported": ["read", "approve"],
                           "bearer_methods_supported": ["header"]}


@pytest.mark.parametrize(("path", "resource"), [("/httpbin/get", "https://api.example.com/"),
                                                ("/records/alice/profile", "https://api.example.com/records")])
def test_each_401_names_the_document_of_its_route_which_names_it_back(rs_stack: Stack, path: str,
                                                                      resource: str) -> None:
    for token in (None, "not-a-token-the-as-knows"):
        resp = _get(rs_stack, path, token)
        assert resp.status == 401, resp
        url = _resource_metadata(resp)
        assert resp.headers["www-authenticate"].startswith('Bearer realm="api", resource_metadata="')
        parsed = urllib.parse.urlsplit(url)
        assert (parsed.scheme, parsed.netloc) == ("https", HOST)
        document = _get(rs_stack, parsed.path).json()  # what a client does next (the test's Envoy speaks http)
        assert document["resource"] == resource
        assert _issuer(rs_stack) in document["authorization_servers"]


def test_a_403_names_no_metadata(rs_stack: Stack) -> None:
    resp = _get(rs_stack, "/records/alice/profile", rs_stack.token("read"))
    assert resp.status == 403 and "resource_metadata" not in resp.headers["www-authenticate"], resp


def test_unknown_resources_and_hosts_are_404_and_other_methods_405(rs_stack: Stack) -> None:
    assert _get(rs_stack, WELL_KNOWN + "/nothing-here").status == 404
    assert rs_stack.get(WELL_KNOWN, headers={"Host": "other.example.com"}).status == 404
    resp = _get(rs_stack, WELL_KNOWN, method="POST")
    assert resp.status == 405 and resp.headers["allow"] == "GET, HEAD", resp


def test_the_metadata_never_lets_a_request_through_to_the_upstream(rs_stack: Stack) -> None:
    """The echo upstream would answer with the request it saw: the well-known path never reaches it."""
    for path in (WELL_KNOWN, WELL_KNOWN + "/records", WELL_KNOWN + "/nothing-here"):
        assert "headers" not in _get(rs_stack, path).json()
