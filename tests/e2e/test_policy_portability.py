"""Policies written in the style of OPA's Envoy tutorial and primer (tests/policies/envoy_style) run unchanged
behind phantom-authz through real Envoy: they read ``input.attributes.request.http``, ``parsed_path``,
``parsed_query``, ``parsed_body``, decode the JWT from the Authorization header with ``io.jwt.decode`` (phantom-authz
puts ``Bearer <JWT>`` there in place of the opaque token), and answer with ``allowed``/``headers``/``http_status``/
``body`` objects. In both of Envoy's ext_authz modes: in HTTP mode the headers a policy adds reach the upstream and
the client only when the route's ``authorization_response`` lists them (``add_route``'s header arguments)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.harness import ROOT, Stack, add_route, http_request

STYLE = ROOT / "tests" / "policies" / "envoy_style"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"portability-{mode}")
    s = Stack(workdir, mode)
    policies = workdir / "policies"
    shutil.copytree(STYLE, policies)
    try:
        s.start_dev_as()
        jwks = http_request("GET", s.as_port, "/oauth/v2/oauth-anonymous/jwks").json()
        (policies / "envoy").mkdir()
        (policies / "envoy" / "data.json").write_text(json.dumps({"jwks": jwks}))  # -> data.envoy.jwks
        s.start_echo()
        s.start_authz(policy={"paths": [str(policies)], "watch_interval_seconds": 0})

        def mutate(config: dict[str, Any]) -> None:
            add_route("/people", {"policy": "envoy/authz/allow"})(config)
            # primer.rego's allow adds headers for the upstream and, via response_headers_to_add, the client
            add_route("/api/v1/", {"policy": "envoy/primer/result"}, upstream_headers=(
                "x-ext-auth-allow", "x-validated-by"), client_headers_on_success=("x-policy",))(config)
            add_route("/users/", {"policy": "envoy/verify/allow"})(config)
            add_route("/uploads", {"policy": "envoy/upload/allow"})(config)
        s.start_envoy(mutate=mutate)
        yield s
    finally:
        s.stop()


def test_tutorial_policy_decodes_the_forwarded_jwt(stack: Stack) -> None:
    assert stack.get("/people/alice", stack.token("read")).status == 200
    assert stack.get("/people/alice", stack.token("write")).status == 403
    assert stack.get("/people", stack.token("read"), method="POST", body="{}").status == 403
    admin = stack.token("read", subject="admin-user")
    assert stack.get("/people", admin, method="POST", body="{}").status == 200


def test_primer_policy_object_result_shapes_the_request_and_the_denial(stack: Stack) -> None:
    token = stack.token("read")
    resp = stack.get("/api/v1/products", token, headers={"X-Internal-Debug": "1"})
    assert resp.status == 200, resp
    upstream = {k.lower(): v for k, v in resp.json()["headers"].items()}
    assert upstream["x-ext-auth-allow"] == "yes" and upstream["x-validated-by"] == "primer"
    assert "x-internal-debug" not in upstream
    assert resp.headers["x-policy"] == "primer"  # response_headers_to_add reaches the client
    denied = stack.get("/api/v1/secrets", token)
    assert denied.status == 418
    assert denied.body == b"Unauthorized Request"
    assert denied.headers["x-ext-auth-allow"] == "no"


def test_primer_policy_reads_parsed_body_and_query(stack: Stack) -> None:
    token = stack.token("read")
    ok = stack.get("/api/v1/orders?channel=web", token, method="POST",
                   headers={"Content-Type": "application/json"}, body=json.dumps({"quantity": 3}))
    assert ok.status == 200, ok
    too_many = stack.get("/api/v1/orders?channel=web", token, method="POST",
                         headers={"Content-Type": "application/json"}, body=json.dumps({"quantity": 30}))
    assert too_many.status == 418
    wrong_channel = stack.get("/api/v1/orders?channel=app", token, method="POST",
                              headers={"Content-Type": "application/json"}, body=json.dumps({"quantity": 3}))
    assert wrong_channel.status == 418


def _upload(stack: Stack, kind: str, content: str, signature: str, close: bool = True) -> Any:
    fields = [("kind", "", kind), ("file", '; filename="cat.png"', content), ("signature", "", signature)]
    body = "".join(f'--xyz\r\nContent-Disposition: form-data; name="{n}"{extra}\r\n\r\n{v}\r\n'
                   for n, extra, v in fields) + ("--xyz--\r\n" if close else "")
    return stack.get("/uploads", stack.token("read"), method="POST", body=body,
                     headers={"Content-Type": "multipart/form-data; boundary=xyz"})


def test_upload_policy_reads_a_multipart_body_and_checks_its_hmac(stack: Stack) -> None:
    """Issue 16 item 6: ``parsed_body`` of a multipart body (it was ``null``) and ``crypto.hmac.*`` (regorus lacks
    them) through real Envoy; a malformed multipart body is a 400 before the policy."""
    content = "GIF89a fake image"
    signature = hmac.new(b"demo-upload-key", content.encode(), hashlib.sha256).hexdigest()
    assert _upload(stack, "image", content, signature).status == 200
    assert _upload(stack, "script", content, signature).status == 403
    assert _upload(stack, "image", content + "!", signature).status == 403
    assert _upload(stack, "image", content, signature, close=False).status == 400


def test_decode_verify_with_a_jwks_from_data(stack: Stack) -> None:
    alice = stack.token("read", subject="alice")
    assert stack.get("/users/alice", alice).status == 200
    assert stack.get("/users/bob", alice).status == 403


def test_forged_jwt_fails_decode_verify_in_policy(tmp_path: Path) -> None:
    """The same policy, evaluated directly: a JWT signed by another key is not valid for decode_verify."""
    import asyncio

    from cryptography.hazmat.primitives.asymmetric import rsa

    from authz.policy.embedded import EmbeddedEngine

    policies = tmp_path / "p"
    shutil.copytree(STYLE, policies)
    real = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(real.public_key(), as_dict=True)
    (policies / "envoy").mkdir()
    (policies / "envoy" / "data.json").write_text(json.dumps({"jwks": {"keys": [{**public, "kid": "k"}]}}))
    engine = EmbeddedEngine((str(policies),), 1.0)

    def decide(key: Any) -> Any:
        token = jwt.encode({"sub": "alice", "aud": "api.example.com"}, key, algorithm="RS256", headers={"kid": "k"})
        policy_input = {"attributes": {"request": {"http": {"headers": {"authorization": f"Bearer {token}"}}}},
                        "parsed_path": ["users", "alice"]}
        return asyncio.run(engine.evaluate("envoy/verify/allow", policy_input)).result

    assert decide(real) is True
    assert decide(other) is False
