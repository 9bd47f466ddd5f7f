"""DPoP through the pipeline (``Authorizer.decide`` -> the CheckResponse Envoy gets): each route mode, each bad input
of issue 16 as a 401 with the right challenge and a metric by reason, the binding to ``cnf.jkt``, nonces and what the
upstream receives. The AS is a fake authority; proofs are real (tests/dpop_client.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.claims import ClaimsChecker
from authz.config import ConfigError, load_config
from authz.errors import InvalidToken
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection, RequestInfo
from authz.pipeline import Authorizer
from tests.dpop_client import DpopClient

TOKEN = "opaque-token-1234567890"
ISSUER = "https://as.example"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
URL = "https://api.example/orders"
ALGS = 'algs="ES256 ES384 PS256 RS256 EdDSA"'
CLIENT = DpopClient("ES256")
SECRET = "n" * 40


class FakeAuthority:
    def __init__(self, claims: dict[str, Any], jwt_: str | None = JWT) -> None:
        self.introspection = Introspection(active=True, jwt=jwt_, claims=claims)
        self.calls = 0
        self._checker = ClaimsChecker(ISSUER, (), 30.0)
        self._answer = Answer(self.introspection)  # one cached answer, as the cache hands it back on every hit

    async def answer(self, token: str) -> Answer:
        self.calls += 1
        return self._answer

    def identity(self, answer: Answer) -> Identity:
        return self._checker.identity_of(answer)


def claims(jkt: str | None = CLIENT.thumbprint, **more: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "scope": "read", "exp": time.time() + 600, **more}
    if jkt is not None:
        base.update(cnf={"jkt": jkt}, token_type="DPoP")
    return base


class Rig:
    def __init__(self, tmp_path: Path, route: dict[str, Any] | None = None, dpop: dict[str, Any] | None = None,
                 answer: FakeAuthority | None = None, environ: dict[str, str] | None = None) -> None:
        doc = {"authorization_servers": {"main": {"introspection_endpoint": "https://as.example/i", "client_id": "gw",
                                                  "client_secret_env": "S", "issuer": ISSUER}},
               "routes": {"required_scopes": "read", "dpop": "allowed", **(route or {})}, "dpop": dpop or {}}
        path = tmp_path / "authz.yaml"
        path.write_text(yaml.safe_dump(doc))
        self.metrics = Metrics()
        self.authority = answer or FakeAuthority(claims())
        self.authorizer = Authorizer(load_config(path, {"S": "s", **(environ or {})}), {"main": self.authority},
                                     metrics=self.metrics)

    async def check(self, authorization: str | None = f"DPoP {TOKEN}", proof: str | None = None,
                    method: str = "GET", path: str = "/orders?page=2", **extra: Any) -> CheckResponse:
        headers = {"dpop": proof} if proof is not None else {}
        request = RequestInfo(method=method, path=path, host="api.example", headers=headers,
                              authorization=(authorization,) if authorization else (), context_extensions={},
                              scheme="https", **extra)
        return await self.authorizer.decide(lambda: request, lambda: "test")

    def counted(self, reason: str, status: str = "401") -> float:
        value = self.metrics.registry.get_sample_value("phantom_authz_checks_total",
                                                       {"outcome": "deny", "status": status, "reason": reason})
        return value or 0.0


def denial(response: CheckResponse) -> tuple[int, dict[str, str]]:
    assert response.HasField("denied_response"), response
    denied = response.denied_response
    return denied.status.code, {h.header.key: h.header.value for h in denied.headers}


def upstream(response: CheckResponse) -> tuple[dict[str, str], list[str]]:
    assert response.status.code == 0, response.denied_response
    ok = response.ok_response
    return {h.header.key: h.header.value for h in ok.headers}, list(ok.headers_to_remove)


async def test_a_dpop_bound_token_with_its_proof_is_allowed_and_the_proof_stays_here(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    headers, removed = upstream(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert headers["authorization"] == f"Bearer {JWT}"  # the default: dpop.forward: bearer
    assert "dpop" in removed  # the proof is for us (dpop.forward_proof: false)


async def test_forward_as_dpop_and_keep_the_proof(tmp_path: Path) -> None:
    rig = Rig(tmp_path, dpop={"forward": "dpop", "forward_proof": True})
    headers, removed = upstream(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert headers["authorization"] == f"DPoP {JWT}" and "dpop" not in removed


async def test_claims_only_answer_removes_the_opaque_token_and_the_proof(tmp_path: Path) -> None:
    rig = Rig(tmp_path, answer=FakeAuthority(claims(), jwt_=None))
    headers, removed = upstream(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert "authorization" not in headers and {"authorization", "dpop"} <= set(removed)


async def test_a_bearer_token_still_passes_on_an_allowed_route(tmp_path: Path) -> None:
    rig = Rig(tmp_path, answer=FakeAuthority(claims(jkt=None)))
    headers, removed = upstream(await rig.check(f"Bearer {TOKEN}"))
    assert headers["authorization"] == f"Bearer {JWT}" and "dpop" not in removed


# --- issue 16's bad inputs, each a 401 with the right error, counted by reason, never an allow ------------------

BAD_PROOFS = {
    "dpop_expired": lambda: CLIENT.proof("GET", URL, TOKEN, claims={"iat": int(time.time()) - 120}),
    "dpop_future": lambda: CLIENT.proof("GET", URL, TOKEN, claims={"iat": int(time.time()) + 120}),
    "dpop_htu": lambda: CLIENT.proof("GET", "https://api.example/admin", TOKEN),
    "dpop_htm": lambda: CLIENT.proof("DELETE", URL, TOKEN),
    "dpop_private_key": lambda: CLIENT.proof("GET", URL, TOKEN, header={"jwk": CLIENT.private_jwk()}),
    "dpop_alg": lambda: jwt.encode({"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time())}, None,
                                   algorithm="none", headers={"typ": "dpop+jwt", "jwk": CLIENT.public_jwk()}),
    "dpop_oversized": lambda: CLIENT.proof("GET", URL, TOKEN, claims={"pad": "x" * 5000}),
    "dpop_ath": lambda: CLIENT.proof("GET", URL, "someone-elses-token"),
}


@pytest.mark.parametrize("reason", sorted(BAD_PROOFS))
async def test_bad_proof_is_a_401_invalid_dpop_proof_before_any_as_call(tmp_path: Path, reason: str) -> None:
    rig = Rig(tmp_path)
    status, headers = denial(await rig.check(proof=BAD_PROOFS[reason]()))
    assert status == 401
    assert headers["www-authenticate"] == (
        'Bearer realm="api", DPoP realm="api", error="invalid_dpop_proof", '
        f'error_description="the DPoP proof is missing or invalid", {ALGS}')
    assert rig.counted(reason) == 1
    assert rig.authority.calls == 0  # a bad proof costs no introspection


async def test_replayed_proof(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    proof = CLIENT.proof("GET", URL, TOKEN)
    assert (await rig.check(proof=proof)).status.code == 0
    status, headers = denial(await rig.check(proof=proof))
    assert status == 401 and 'DPoP realm="api", error="invalid_dpop_proof"' in headers["www-authenticate"]
    assert rig.counted("dpop_replay") == 1
    assert (await rig.check(proof=CLIENT.proof("GET", URL, TOKEN))).status.code == 0  # a fresh one passes


async def test_proof_by_another_key_than_the_bound_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    thief = DpopClient("ES256")
    status, headers = denial(await rig.check(proof=thief.proof("GET", URL, TOKEN)))
    assert status == 401
    assert headers["www-authenticate"].startswith('Bearer realm="api", DPoP realm="api", error="invalid_token"')
    assert rig.counted("dpop_key_mismatch") == 1


@pytest.mark.parametrize("mode", ["off", "allowed", "required"])
async def test_bearer_presentation_of_a_dpop_bound_token_is_refused_in_every_mode(tmp_path: Path, mode: str) -> None:
    rig = Rig(tmp_path, route={"dpop": mode})
    status, headers = denial(await rig.check(f"Bearer {TOKEN}"))
    assert status == 401
    challenge = headers["www-authenticate"]
    if mode == "off":  # DPoP is not offered: today's answer
        assert challenge.startswith('Bearer realm="api", error="invalid_token"') and "DPoP" not in challenge
        assert rig.counted("dpop_bound_token_as_bearer") == 1
    elif mode == "allowed":
        assert challenge.startswith('Bearer realm="api", error="invalid_token"')
        assert challenge.endswith(f'DPoP realm="api", {ALGS}')
        assert rig.counted("dpop_bound_token_as_bearer") == 1
    else:  # a Bearer credential is no credential here: never introspected
        assert challenge == f'DPoP realm="api", {ALGS}' and rig.authority.calls == 0


async def test_off_route_keeps_todays_answers(tmp_path: Path) -> None:
    rig = Rig(tmp_path, route={"dpop": "off"})
    status, headers = denial(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert (status, headers["www-authenticate"]) == (401, 'Bearer realm="api"')  # DPoP is not a credential here


async def test_dpop_credential_without_a_proof(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    status, headers = denial(await rig.check())
    assert status == 401 and 'error="invalid_dpop_proof"' in headers["www-authenticate"]
    assert rig.counted("dpop_missing") == 1 and rig.authority.calls == 0


async def test_several_proofs_are_malformed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    proof = CLIENT.proof("GET", URL, TOKEN)
    status, _ = denial(await rig.check(proof=f"{proof},{proof}"))
    assert status == 401 and rig.counted("dpop_malformed") == 1


async def test_unbound_token_presented_with_dpop(tmp_path: Path) -> None:
    rig = Rig(tmp_path, answer=FakeAuthority(claims(jkt=None)))
    status, headers = denial(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert status == 401 and 'DPoP realm="api", error="invalid_token"' in headers["www-authenticate"]
    assert rig.counted("dpop_unbound_token") == 1


async def test_insufficient_scope_is_said_on_the_dpop_challenge(tmp_path: Path) -> None:
    rig = Rig(tmp_path, route={"required_scopes": "admin"})
    status, headers = denial(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert status == 403
    assert headers["www-authenticate"] == (
        'Bearer realm="api", DPoP realm="api", error="insufficient_scope", '
        f'error_description="the access token lacks a required scope", scope="admin", {ALGS}')


async def test_required_route_without_credential_offers_dpop_only(tmp_path: Path) -> None:
    rig = Rig(tmp_path, route={"dpop": "required"})
    status, headers = denial(await rig.check(None))
    assert (status, headers["www-authenticate"]) == (401, f'DPoP realm="api", {ALGS}')


# --- nonces --------------------------------------------------------------------------------------------------------

async def test_nonce_required_then_accepted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, dpop={"nonce": {"secret_env": "NONCE"}}, environ={"NONCE": SECRET})
    status, headers = denial(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN)))
    assert status == 401 and 'DPoP realm="api", error="use_dpop_nonce"' in headers["www-authenticate"]
    nonce = headers["dpop-nonce"]
    assert rig.counted("dpop_nonce_required") == 1
    assert (await rig.check(proof=CLIENT.proof("GET", URL, TOKEN, nonce=nonce))).status.code == 0
    status, headers = denial(await rig.check(proof=CLIENT.proof("GET", URL, TOKEN, nonce="A" * 32)))
    assert status == 401 and headers["dpop-nonce"] == nonce and rig.counted("dpop_nonce_stale") == 1


# --- where the request's URI comes from -------------------------------------------------------------------------------

async def test_http_mode_without_a_scheme_fails_closed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    request = RequestInfo(method="GET", path="/orders", host="api.example", headers={"dpop": "x.y.z"},
                          authorization=(f"DPoP {TOKEN}",), context_extensions={})
    status, _ = denial(await rig.authorizer.decide(lambda: request, lambda: "test"))
    assert status == 500 and rig.counted("route_misconfigured", "500") == 1


async def test_a_fixed_scheme_overrides_envoys(tmp_path: Path) -> None:
    """TLS ends before Envoy: Envoy says http, the client used https."""
    rig = Rig(tmp_path, dpop={"scheme": "https"})
    proof = CLIENT.proof("GET", URL, TOKEN)
    request = RequestInfo(method="GET", path="/orders", host="api.example", headers={"dpop": proof},
                          authorization=(f"DPoP {TOKEN}",), context_extensions={}, scheme="http")
    assert (await rig.authorizer.decide(lambda: request, lambda: "test")).status.code == 0


# --- configuration and route settings ---------------------------------------------------------------------------------

async def test_route_setting_from_context_extensions(tmp_path: Path) -> None:
    rig = Rig(tmp_path, route={"dpop": "off"})
    request = RequestInfo(method="GET", path="/orders", host="api.example",
                          headers={"dpop": CLIENT.proof("GET", URL, TOKEN)}, authorization=(f"DPoP {TOKEN}",),
                          context_extensions={"dpop": "required"}, scheme="https")
    assert (await rig.authorizer.decide(lambda: request, lambda: "test")).status.code == 0
    bad = RequestInfo(method="GET", path="/orders", host="api.example", headers={}, authorization=(),
                      context_extensions={"dpop": "sometimes"}, scheme="https")
    status, _ = denial(await rig.authorizer.decide(lambda: bad, lambda: "test"))
    assert status == 500


@pytest.mark.parametrize(("dpop", "environ", "message"), [
    ({"algorithms": ["HS256"]}, {}, "dpop.algorithms: 'HS256' is not a valid asymmetric JWS algorithm"),
    ({"algorithms": "ES256 none"}, {}, "dpop.algorithms: 'none' is not a valid asymmetric JWS algorithm"),
    ({"nonce": {}}, {}, "dpop.nonce.secret_file: is required"),
    ({"nonce": {"secret": SECRET}}, {}, "dpop.nonce.secret: must not be inline"),
    ({"nonce": {"secret_env": "NONCE"}}, {"NONCE": "short"}, "dpop.nonce.secret_env: the secret must be at least 32"),
    ({"max_age_seconds": 0}, {}, "dpop.max_age_seconds: must be > 0"),
    ({"leeway_seconds": 600}, {}, "dpop.leeway_seconds: must be <= 300"),
    ({"forward": "mac"}, {}, "dpop.forward:"),
    ({"replay_on_redis_error": "allow"}, {}, "dpop.replay_on_redis_error:"),
])
def test_config_errors_name_the_key(tmp_path: Path, dpop: dict[str, Any], environ: dict[str, str],
                                    message: str) -> None:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"main": {
        "introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S"}},
        "dpop": dpop}))
    with pytest.raises(ConfigError) as info:
        load_config(path, {"S": "s", **environ})
    assert str(info.value).startswith(message), str(info.value)


def test_route_rule_dpop_setting_is_typed(tmp_path: Path) -> None:
    path = tmp_path / "authz.yaml"
    server = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S"}
    path.write_text(yaml.safe_dump({"authorization_servers": {"main": server}, "routes": {"rules": [
        {"name": "api", "match": {"paths": ["/api/**"]}, "dpop": "required"},
        {"name": "open", "match": {"paths": ["/open/**"]}, "disabled": True, "dpop": "allowed"}]}}))
    with pytest.raises(ConfigError) as info:
        load_config(path, {"S": "s"})
    assert "routes.rules[1] (open).dpop: a disabled rule needs no token" in str(info.value)


def test_dpop_type_without_jkt_is_still_no_access_token() -> None:
    checker = ClaimsChecker(ISSUER, (), 30.0)
    with pytest.raises(InvalidToken):
        checker.identity({"iss": ISSUER, "token_type": "DPoP"}, None)
    assert checker.identity(claims(), None).jkt == CLIENT.thumbprint
