"""Through real Envoy, with the shipped envoy.yaml / envoy-http.yaml (both modes): each route forwards into its own
part of the upstream's paths. A route that rewrote its prefix to ``/`` made every upstream path reachable through
it, so the route without authorization (``/public/``) reached what the others guard: ``/public/records/bob/profile``
arrived upstream as ``/records/bob/profile`` with no token, and a read token reached the admin route's upstream
paths through ``/httpbin/``."""

from __future__ import annotations

import yaml

from devtools.envoy_config import HTTP_TEMPLATE, TEMPLATE
from tests.harness import Stack, routes


def _prefixes() -> list[str]:
    found = [[r["match"]["prefix"] for r in routes(yaml.safe_load(t.read_text()))] for t in (TEMPLATE, HTTP_TEMPLATE)]
    assert found[0] == found[1] and found[0]
    return found[0]


def test_every_route_forwards_the_path_as_the_client_sent_it(stack: Stack) -> None:
    token = stack.token("read admin")  # the dev AS's subject is demo-client: its own record for /records/
    for prefix in _prefixes():
        path = f"{prefix}demo-client/profile"
        resp = stack.get(path, token)
        assert resp.status == 200, (path, resp)
        assert resp.json()["path"] == path, "the upstream path names the route that checked it"


def test_the_route_without_authorization_reaches_no_guarded_upstream_path(stack: Stack) -> None:
    for guarded in ("/records/bob/profile", "/admin/get", "/get"):
        resp = stack.get(f"/public{guarded}")
        assert resp.status == 200, resp
        assert resp.json()["path"].startswith("/public/"), (guarded, resp.json()["path"])


def test_a_read_token_reaches_no_admin_upstream_path_through_another_route(stack: Stack) -> None:
    token = stack.token("read")
    assert stack.get("/admin/get", token).status == 403
    for path in ("/httpbin/get", "/httpbin/admin/get"):
        resp = stack.get(path, token)
        assert resp.status == 200 and resp.json()["path"] == path, (path, resp)
