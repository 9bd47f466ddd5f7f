"""RFC 8705 certificate-bound access tokens through real Envoy: clients connect with their own certificates (made in
the test), the dev AS binds a token to one of them (``cnf.x5t#S256``), and Envoy's ext_authz filter sends the peer
certificate (``include_peer_certificate: true``). gRPC mode only: Envoy's HTTP ext_authz does not send the
certificate, and the configuration refuses ``mtls_bound`` with the HTTP transport (``tests/unit/test_cert_binding``).

Routes: ``/bound/`` (``mtls_bound: required``), ``/either/`` (``allowed``) and the quickstart's ``/httpbin/``
(``off``, the default).
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.harness import Response, Stack, add_route, basic, ext_authz_filter, http_request
from tests.mesh.envoy_parts import downstream_mtls
from tests.mesh.pki import MeshCA, Workload

pytestmark = pytest.mark.grpc_only("Envoy's HTTP ext_authz mode does not send the client certificate")


class Mtls:
    def __init__(self, stack: Stack, ca: MeshCA, clients: dict[str, Workload]) -> None:
        self.stack, self.ca, self.clients = stack, ca, clients

    def token(self, bound_to: str | None, scope: str = "read") -> str:
        form = {"grant_type": "client_credentials", "scope": scope}
        if bound_to is not None:  # dev-only: the certificate a real AS would read from the mTLS connection
            form["certificate"] = self.clients[bound_to].cert.read_text()
        resp = http_request("POST", self.stack.as_port, "/oauth/v2/oauth-token",
                            headers={"Authorization": basic("demo-client", "demo-secret"),
                                     "Content-Type": "application/x-www-form-urlencoded"},
                            body=urllib.parse.urlencode(form))
        assert resp.status == 200, resp
        return str(resp.json()["access_token"])

    def get(self, path: str, token: str, client: str | None) -> Response:
        """GET through Envoy's TLS listener, presenting ``client``'s certificate (None: none)."""
        if client is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca.cert))
            context.check_hostname = False  # the listener's name is a SPIFFE URI
        else:
            context = self.clients[client].client_context(self.ca.cert)
        conn = http.client.HTTPSConnection("127.0.0.1", self.stack.envoy_port, context=context, timeout=15)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Mtls]:
    directory = tmp_path_factory.mktemp("mtls-bound")
    ca = MeshCA(directory / "pki")
    listener = ca.issue("envoy", "edge", "envoy")
    clients = {name: ca.issue(name, "apps", name) for name in ("app", "other-app")}

    def mutate(config: dict[str, Any]) -> None:
        tls = downstream_mtls(listener, ca.cert, "spiffe://cluster.local/")
        # so a request without a certificate reaches the check (a SAN matcher would make Envoy demand one)
        tls["typed_config"]["require_client_certificate"] = False
        del tls["typed_config"]["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
        config["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = tls
        ext_authz_filter(config)["include_peer_certificate"] = True
        add_route("/either/", {"required_scopes": "read", "mtls_bound": "allowed"})(config)
        add_route("/bound/", {"required_scopes": "read", "mtls_bound": "required"})(config)

    stack = Stack(directory / "stack", mode)
    try:
        yield Mtls(stack.full(mutate=mutate), ca, clients)
    finally:
        stack.stop()


def _forwarded_claims(resp: Response) -> dict[str, Any]:
    scheme, _, forwarded = resp.json()["headers"]["Authorization"].partition(" ")
    assert scheme == "Bearer", resp
    claims: dict[str, Any] = jwt.decode(forwarded, options={"verify_signature": False})
    return claims


def _invalid_token(resp: Response) -> None:
    assert resp.status == 401, resp
    assert 'error="invalid_token"' in resp.headers["www-authenticate"], resp
    assert resp.json()["error"] == "invalid_token", resp


@pytest.mark.parametrize("path", ["/bound/get", "/either/get"])
def test_bound_token_with_its_certificate_reaches_the_upstream_as_a_jwt(mtls: Mtls, path: str) -> None:
    token = mtls.token(bound_to="app")
    resp = mtls.get(path, token, client="app")
    assert resp.status == 200, resp
    claims = _forwarded_claims(resp)
    assert claims["cnf"]["x5t#S256"] and token not in resp.body.decode()


@pytest.mark.parametrize("path", ["/bound/get", "/either/get"])
def test_bound_token_with_another_certificate_is_invalid_token_even_after_a_cached_allow(mtls: Mtls,
                                                                                          path: str) -> None:
    token = mtls.token(bound_to="app")
    assert mtls.get(path, token, client="app").status == 200  # the AS's answer is cached now
    _invalid_token(mtls.get(path, token, client="other-app"))
    _invalid_token(mtls.get(path, token, client=None))
    assert mtls.get(path, token, client="app").status == 200


def test_bound_token_on_a_route_that_is_off_is_invalid_token(mtls: Mtls) -> None:
    token = mtls.token(bound_to="app")
    _invalid_token(mtls.get("/httpbin/get", token, client="app"))


def test_plain_bearer_token_is_refused_where_binding_is_required_and_accepted_where_allowed(mtls: Mtls) -> None:
    token = mtls.token(bound_to=None)
    _invalid_token(mtls.get("/bound/get", token, client="app"))
    for client in ("app", None):
        assert mtls.get("/either/get", token, client=client).status == 200
        assert mtls.get("/httpbin/get", token, client=client).status == 200
