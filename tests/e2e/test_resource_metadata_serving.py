"""README "Protected-resource metadata", serving the documents, through real Envoy in both ext_authz modes: ``GET`` and
``HEAD`` on the identifier's host (without case, ``:443`` optional) get the document with ``content-type:
application/json`` and ``cache-control: max-age=300``; and in HTTP mode a check for the well-known path (the route
not sent to ``server.http.listen``) gets a 403, a denial like any other (``cache-control: no-store``, the JSON
``forbidden`` body, not the document), and a log line saying how to route it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import EXT_AUTHZ, PER_ROUTE_TYPE, Stack, config_mode, routes, wait_until
from tests.log_lines import parse_json_lines

HOST = "api.example.com"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
MISROUTED = "x-misrouted"  # HTTP mode: a request with this header takes a route that checks the well-known path
ROUTES = {"required_scopes": "read", "resource": "https://api.example.com/"}


def _metadata_routes(config: dict[str, Any]) -> None:
    """gRPC mode: the well-known path is checked like any request (the service answers it in the check). HTTP mode:
    the README's route to the service's HTTP listener, ext_authz off there; before it, one that checks the path."""
    match: dict[str, Any] = {"prefix": WELL_KNOWN}
    if config_mode(config) == "grpc":
        routes(config).insert(0, {"match": match, "route": {"cluster": "echo"}})
        return
    misrouted = {"match": {**match, "headers": [{"name": MISROUTED, "present_match": True}]},
                 "route": {"cluster": "echo"}}
    served = {"match": match, "route": {"cluster": "phantom_authz_http"},
              "typed_per_filter_config": {EXT_AUTHZ: {"@type": PER_ROUTE_TYPE, "disabled": True}}}
    routes(config)[0:0] = [misrouted, served]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp(f"metadata-serving-{mode}"), mode)
    try:
        yield stack.full(routes=ROUTES, mutate=_metadata_routes)
    finally:
        stack.stop()


@pytest.mark.parametrize("host", [HOST, "API.Example.COM", "api.example.com:443"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_on_the_identifiers_host_get_the_document(served: Stack, host: str, method: str) -> None:
    resp = served.get(WELL_KNOWN, headers={"Host": host}, method=method)
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "application/json", resp
    assert resp.headers["cache-control"] == "max-age=300", resp
    if method == "GET":
        assert resp.json()["resource"] == "https://api.example.com/", resp
    else:
        assert resp.body == b"", resp


@pytest.mark.http_only("HTTP mode only: in gRPC mode the check itself is how the document is served")
def test_a_check_for_the_well_known_path_is_a_plain_403_and_says_how_to_route_it(served: Stack) -> None:
    resp = served.get(WELL_KNOWN, headers={"Host": HOST, MISROUTED: "1"})
    assert resp.status == 403, resp
    assert resp.headers["cache-control"] == "no-store", resp  # a denial: never kept by a cache for five minutes
    assert resp.headers["content-type"] == "application/json", resp
    assert resp.json()["error"] == "forbidden", resp
    assert "resource" not in resp.json(), resp
    assert served.authz is not None

    def advice() -> list[dict[str, Any]]:
        lines = parse_json_lines(served.authz.log_path.read_text(errors="replace"))  # type: ignore[union-attr]
        return [line for line in lines if "server.http.listen" in str(line.get("message", ""))]

    assert wait_until(advice, "a log line saying how to route the well-known path")
