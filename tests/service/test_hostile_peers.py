"""Hostile peers (issue 12, "make the classes impossible"): whatever a hostile or broken authorization server
answers, whatever a Redis writer puts under the keys the service reads, whatever CheckRequest a peer that is not
Envoy sends, the outcome is a denial (or an L2 miss), never an allow.

Real parts: the real phantom-authz server in process (``Stack.start_authz(in_process=True)``), Check over real
gRPC, a real aiohttp AS on 127.0.0.1 whose answer per token the test sets (``tests/hostile_as.py``), a real
redis-server. Each test has a positive control (the one well-formed input allows), so none of them can pass by
denying everything.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc
import pytest
import redis as redis_client
from envoy.config.core.v3.base_pb2 import HeaderValue
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.cache.entries import cache_key
from authz.cache.sealing import ValueKey
from authz.config import AuthorizationServerConfig, load_config
from authz.introspection.authority import configuration_hash
from authz.models import Introspection
from tests.harness import GATEWAY_SECRET, Stack, http_request, wait_until
from tests.hostile_as import (
    AUDIENCE,
    CLIENT_ID,
    DIALECTS,
    ISSUER,
    KID,
    MEDIA_TYPE,
    OTHER_KEY,
    Answer,
    Draft,
    HostileAS,
    render,
    sign,
    sign_alg_none,
    sign_hs256_with_public_key,
    token_claims,
    valid_answer,
)
from tests.redis_server import RedisServer, redis_available
from tests.service.test_grpc_service import check_request

SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False, database=None)
NAMES = tuple(DIALECTS)


class Checker:
    """One kept-open gRPC channel to the service (a new channel per call costs more than the check)."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = external_auth_pb2_grpc.AuthorizationStub(self._channel)

    def __call__(self, request: CheckRequest) -> CheckResponse:
        return self._stub.Check(request, timeout=15)

    def close(self) -> None:
        self._channel.close()


def fresh_token() -> str:
    return "hostile-" + secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def hostile_as() -> Iterator[HostileAS]:
    server = HostileAS().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def as_stack(tmp_path_factory: pytest.TempPathFactory, hostile_as: HostileAS) -> Iterator[tuple[Stack, Checker]]:
    s = Stack(tmp_path_factory.mktemp("hostile-as"))
    checker: Checker | None = None
    try:
        s.start_authz(authorization_servers=hostile_as.authorization_servers(),
                      default_authorization_server="phantom", in_process=True)
        checker = Checker(f"127.0.0.1:{s.authz_port}")
        yield s, checker
    finally:
        if checker is not None:
            checker.close()
        s.stop()


# --- 1. hostile AS: every answer shape ----------------------------------------------------------------------------

NOW = int(time.time())
WHITESPACE = ("\u00a0", "\t", "\x0b", "\x0c", "\x1f", "\u2003", "\u2028", "\n", "\r", "\u3000")
JWT_DIALECTS = ("phantom", "rfc7662_jwt", "rfc9701")  # names whose answer is (or carries) a JWT we verify
JSON_DIALECTS = ("rfc7662", "rfc7662_jwt", "rfc9701")  # names whose answer is (or carries) an RFC 7662 document
STATUSES = (201, 202, 203, 204, 205, 206, 207, 226, 300, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 406,
            409, 410, 413, 415, 418, 422, 429, 451, 500, 501, 502, 503, 504, 507, 599)
CONTENT_TYPES = ("text/html", "text/plain", "application/octet-stream", None, "application/x-www-form-urlencoded",
                 "multipart/form-data", "application/jwt", "application/json", "application/token-introspection+jwt",
                 "application/xml", "text/json", "application/jwk-set+json", "image/png", "")


@dataclass(frozen=True)
class Fault:
    """One way an answer can be wrong: an edit of the draft (``pre``) or of the rendered answer (``post``)."""

    name: str
    names: tuple[str, ...]  # the dialects it applies to
    params: st.SearchStrategy[Any]  # its parameter (the first explicit value is the parametrized test's)
    pre: Callable[[Draft, Any], None] | None = None
    post: Callable[[Answer, Any], Answer] | None = None


def _claim(name: str) -> Callable[[Draft, Any], None]:
    def edit(draft: Draft, value: Any) -> None:
        if value is _DROP:
            draft.claims.pop(name, None)
        else:
            draft.claims[name] = value
    return edit


_DROP = object()


def _signer(make: Callable[[dict[str, Any], str | None, Any], str]) -> Callable[[Draft, Any], None]:
    def edit(draft: Draft, param: Any) -> None:
        draft.signer = lambda claims, typ: make(claims, typ, param)
    return edit


def _doc(edit_doc: Callable[[dict[str, Any], Any], Any]) -> Callable[[Draft, Any], None]:
    def edit(draft: Draft, param: Any) -> None:
        draft.doc_edit = lambda doc: edit_doc(doc, param)
    return edit


def _envelope(name: str) -> Callable[[Draft, Any], None]:
    def edit(draft: Draft, value: Any) -> None:
        draft.envelope[name] = value
    return edit


def _set_active(doc: dict[str, Any], value: Any) -> dict[str, Any]:
    doc = dict(doc)
    if value is _DROP:
        del doc["active"]
    else:
        doc["active"] = value
    return doc


def _nest(doc: dict[str, Any], how: str) -> Any:
    return {"active_wrapper": {"active": doc}, "list": [doc], "string": json.dumps(doc), "active_object":
            {**doc, "active": {"active": True}}, "data": {"data": doc}, "introspection": {"token_introspection": doc},
            "null": None}[how]


def _tamper_signature(token: str, index: int) -> str:
    head, payload, sig = token.split(".")
    if not sig:
        return token + "AAAA"
    i = index % len(sig)
    return f"{head}.{payload}.{sig[:i]}{'A' if sig[i] != 'A' else 'B'}{sig[i + 1:]}"


def _swap_payload(token: str, claims: dict[str, Any]) -> str:
    head, _, sig = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{payload}.{sig}"


def _with_body(body: Callable[[Answer, Any], bytes]) -> Callable[[Answer, Any], Answer]:
    return lambda answer, param: replace(answer, body=body(answer, param))


def _redirect(answer: Answer, status: int) -> Answer:
    return Answer(status, None, b"", redirect_to=answer)


FAULTS: tuple[Fault, ...] = (
    # the token's claims (the JWT's, or the RFC 7662 document's)
    Fault("expired", NAMES, st.integers(60, 10**6).map(lambda ago: NOW - ago).flatmap(
        lambda exp: st.just(exp)) | st.just(NOW - 3600), pre=_claim("exp")),
    Fault("not_yet_valid", NAMES, st.integers(120, 10**6).map(lambda ahead: int(time.time()) + ahead),
          pre=_claim("nbf")),
    Fault("wrong_iss", NAMES, st.sampled_from(["https://evil.example", ISSUER + "/", ISSUER.upper(), "", " " + ISSUER])
          | st.text(max_size=20).filter(lambda s: s != ISSUER), pre=_claim("iss")),
    Fault("wrong_aud", NAMES, st.sampled_from(["other-api", ["other-api"], [], "API", AUDIENCE + " ", _DROP])
          | st.text(max_size=10).filter(lambda s: s != AUDIENCE), pre=_claim("aud")),
    Fault("non_access_token_type", NAMES, st.sampled_from(
        ["refresh_token", "id_token", "DPoP", "N_A", "urn:ietf:params:oauth:token-type:refresh_token", "pop", "mac",
         "bearer\u00a0", "Bearer ", 1, ["Bearer"]]), pre=_claim("token_type")),
    Fault("cnf_bound", NAMES, st.sampled_from([{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
                                               {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}, {}, None,
                                               "x"]), pre=_claim("cnf")),
    Fault("scope_non_sp_whitespace", NAMES, st.sampled_from(WHITESPACE).flatmap(
        lambda ws: st.sampled_from([f"files:{ws}read", f"x{ws}read", f"read{ws}", [f"x{ws}read"], f"{ws}read"])),
          pre=_claim("scope")),
    Fault("scope_not_granted", NAMES, st.sampled_from(["", "write", "READ", "read:all", "rea", ["write"], "r\u00e9ad"]),
          pre=_claim("scope")),
    Fault("scope_wrong_type", NAMES, st.sampled_from([5, {"read": True}, [1], [["read"]], True]),
          pre=_claim("scope")),
    Fault("exp_not_a_number", NAMES, st.sampled_from([str(NOW + 600), [NOW + 600], {"v": 1}, True, "never"]),
          pre=_claim("exp")),
    Fault("no_iss_in_jwt", ("phantom", "rfc7662_jwt"), st.just(_DROP), pre=_claim("iss")),
    # the JWT's signature and header (the phantom JWT, the jwt_field JWT, the RFC 9701 answer)
    Fault("alg_none", JWT_DIALECTS, st.just(None), pre=_signer(lambda c, typ, _: sign_alg_none(c, typ))),
    Fault("hs256_keyed_with_public_key", JWT_DIALECTS, st.just(None),
          pre=_signer(lambda c, typ, _: sign_hs256_with_public_key(c, typ))),
    Fault("unknown_kid", JWT_DIALECTS, st.sampled_from(["unknown-kid", "", KID + " ", "../" + KID])
          | st.text(min_size=1, max_size=12).filter(lambda k: k != KID),
          pre=_signer(lambda c, typ, kid: sign(c, typ=typ, kid=kid))),
    Fault("key_not_in_jwks_under_its_kid", JWT_DIALECTS, st.just(None),
          pre=_signer(lambda c, typ, _: sign(c, typ=typ, key=OTHER_KEY))),
    Fault("key_not_in_jwks_no_kid", JWT_DIALECTS, st.just(None),
          pre=_signer(lambda c, typ, _: sign(c, typ=typ, key=OTHER_KEY, kid=None))),
    Fault("embedded_jwk_header", JWT_DIALECTS, st.just(None), pre=_signer(lambda c, typ, _: sign(
        c, typ=typ, key=OTHER_KEY, kid="attacker", extra_header={
            "jwk": json.loads(__import__("jwt").algorithms.RSAAlgorithm.to_jwk(OTHER_KEY.public_key())),
            "jku": "http://127.0.0.1:9/jwks"}))),
    Fault("ps256_with_rs256_key", JWT_DIALECTS, st.sampled_from(["PS256", "RS384", "RS512", "PS512"]),
          pre=_signer(lambda c, typ, alg: sign(c, typ=typ, alg=alg))),
    Fault("crit_header", JWT_DIALECTS, st.sampled_from([["exp"], ["b64"], "x"]),
          pre=_signer(lambda c, typ, crit: sign(c, typ=typ, extra_header={"crit": crit}))),
    Fault("signature_tampered", JWT_DIALECTS, st.integers(0, 400),
          pre=_signer(lambda c, typ, i: _tamper_signature(sign(c, typ=typ), i))),
    Fault("payload_swapped_after_signing", JWT_DIALECTS, st.just(None), pre=_signer(
        lambda c, typ, _: _swap_payload(sign({**c, "scope": "none"}, typ=typ), c))),
    # the RFC 7662 document (rfc7662 answers, RFC 9701's token_introspection)
    Fault("active_not_boolean", JSON_DIALECTS, st.sampled_from(
        ["true", "True", 1, 1.0, ["true"], [True], {"value": True}, None, "yes", _DROP]), pre=_doc(_set_active)),
    Fault("nested_json", JSON_DIALECTS, st.sampled_from(
        ["active_wrapper", "list", "string", "active_object", "data", "introspection", "null"]), pre=_doc(_nest)),
    Fault("outer_token_type_refresh", ("rfc7662_jwt",), st.sampled_from(["refresh_token", "id_token"]),
          pre=_doc(lambda doc, t: {**doc, "token_type": t})),
    Fault("outer_cnf", ("rfc7662_jwt",), st.just({"jkt": "x"}), pre=_doc(lambda doc, c: {**doc, "cnf": c})),
    Fault("jwt_field_missing_or_not_a_jwt", ("rfc7662_jwt",), st.sampled_from(
        [_DROP, None, "", "a.b", "not-a-jwt", 5, ["a.b.c"], "a.b.c"]),
          pre=_doc(lambda doc, v: {k: x for k, x in doc.items() if k != "jwt"} if v is _DROP else {**doc, "jwt": v})),
    # the RFC 9701 envelope
    Fault("envelope_wrong_iss", ("rfc9701",), st.sampled_from(["https://evil.example", None, ""]),
          pre=_envelope("iss")),
    Fault("envelope_wrong_aud", ("rfc9701",), st.sampled_from(["api", None, ["other"], CLIENT_ID + "x"]),
          pre=_envelope("aud")),
    Fault("envelope_bad_iat", ("rfc9701",), st.sampled_from([None, int(time.time()) + 3600, "now", [1]]),
          pre=_envelope("iat")),
    Fault("envelope_wrong_typ", ("rfc9701",), st.sampled_from(["JWT", "at+jwt", "", "token-introspection"]),
          pre=lambda draft, typ: setattr(draft, "envelope_typ", typ)),
    Fault("envelope_no_token_introspection", ("rfc9701",), st.sampled_from([None, "active", [], {"active": "true"}]),
          pre=_envelope("token_introspection")),
    # the HTTP answer
    Fault("status", NAMES, st.sampled_from(STATUSES), post=lambda answer, status: replace(answer, status=status)),
    Fault("redirect_to_a_valid_answer", NAMES, st.sampled_from([302, 301, 303, 307, 308]), post=_redirect),
    Fault("content_type", NAMES, st.sampled_from(CONTENT_TYPES),
          post=lambda answer, ct: replace(answer, content_type=ct)),
    Fault("html_body", NAMES, st.sampled_from(["<html><body>502 Bad Gateway</body></html>", "<!doctype html>"]),
          post=_with_body(lambda _, html: html.encode())),
    Fault("truncated_body", NAMES, st.floats(0.0, 0.999), post=_with_body(
        lambda answer, frac: answer.body[:int(len(answer.body) * frac)])),
    Fault("trailing_garbage", NAMES, st.sampled_from([b"x", b"}", b".x", b"\x00", b"\xff", b",{}"]),
          post=_with_body(lambda answer, tail: answer.body + tail)),
    Fault("random_body", NAMES, st.binary(max_size=300), post=_with_body(lambda _, body: body)),
    Fault("huge_body", NAMES, st.integers(65537, 512 * 1024), post=_with_body(
        lambda answer, size: answer.body + b" " * max(0, size - len(answer.body)))),
    Fault("json_claims_instead_of_jwt", ("phantom",), st.sampled_from([True, "true", 1]), post=lambda answer, active:
          Answer(200, "application/json", json.dumps({"active": active, **token_claims()}).encode())),
    Fault("jwt_instead_of_json", ("rfc7662", "rfc7662_jwt"), st.just(None), post=lambda answer, _:
          Answer(200, "application/json", sign(token_claims()).encode())),
)

_WRONG_TYPE_FOR = {name: {ct for ct in CONTENT_TYPES if ct is not None and (
    ct == MEDIA_TYPE[name] or (name.startswith("rfc7662") and ct.endswith("+json")))} for name in NAMES}


def hostile_answer(name: str, faults: list[tuple[Fault, Any]]) -> Answer:
    draft = Draft(name)
    for fault, param in faults:
        if fault.pre is not None:
            fault.pre(draft, param)
    answer = render(draft)
    for fault, param in faults:
        if fault.post is not None:
            answer = fault.post(answer, param)
    return answer


def _explicit_param(fault: Fault, name: str) -> Any:
    """A fixed parameter for the parametrized run: the first value its strategy would try."""
    firsts: dict[str, Any] = {"expired": NOW - 3600, "not_yet_valid": int(time.time()) + 3600,
                              "wrong_iss": "https://evil.example", "wrong_aud": "other-api",
                              "non_access_token_type": "refresh_token", "cnf_bound": {"jkt": "x"},
                              "scope_non_sp_whitespace": "files:\u00a0read", "scope_not_granted": "write",
                              "scope_wrong_type": 5, "exp_not_a_number": str(NOW + 600), "no_iss_in_jwt": _DROP,
                              "unknown_kid": "unknown-kid", "ps256_with_rs256_key": "PS256", "crit_header": ["exp"],
                              "signature_tampered": 7, "active_not_boolean": "true", "nested_json": "active_wrapper",
                              "outer_token_type_refresh": "refresh_token", "outer_cnf": {"jkt": "x"},
                              "jwt_field_missing_or_not_a_jwt": _DROP, "envelope_wrong_iss": "https://evil.example",
                              "envelope_wrong_aud": "api", "envelope_bad_iat": None, "envelope_wrong_typ": "JWT",
                              "envelope_no_token_introspection": None, "status": 201,
                              "redirect_to_a_valid_answer": 302, "content_type": "text/html",
                              "html_body": "<html><body>502 Bad Gateway</body></html>", "truncated_body": 0.5,
                              "trailing_garbage": b"x", "random_body": b"\x00\xff garbage", "huge_body": 70_000,
                              "json_claims_instead_of_jwt": True}
    if fault.name == "content_type":
        return next(ct for ct in CONTENT_TYPES if ct not in _WRONG_TYPE_FOR[name])
    return firsts.get(fault.name)


def _usable(fault: Fault, name: str, param: Any) -> bool:
    return not (fault.name == "content_type" and param in _WRONG_TYPE_FOR[name])


EXPLICIT = [(name, fault) for fault in FAULTS for name in fault.names]


def ask(stack: tuple[Stack, Checker], hostile_as: HostileAS, name: str, answer: Answer,
        required_scopes: str = "read") -> tuple[CheckResponse, str]:
    _, checker = stack
    token = fresh_token()
    hostile_as.answers[token] = answer
    response = checker(check_request(f"Bearer {token}", **{"as": name, "required_scopes": required_scopes}))
    assert hostile_as.asked.get(token, 0) >= 1, "the service never asked the AS: the example tested nothing"
    return response, token


@pytest.mark.parametrize("name", NAMES)
def test_hostile_as_control_a_well_formed_signed_answer_allows(as_stack: tuple[Stack, Checker],
                                                              hostile_as: HostileAS, name: str) -> None:
    """The positive control: the one well-formed answer of each dialect allows (so the denials below mean
    something), also with the media type in another case and with parameters."""
    response, _ = ask(as_stack, hostile_as, name, valid_answer(name))
    assert response.status.code == 0, response.denied_response
    odd_case = valid_answer(name)
    odd_case = replace(odd_case, content_type=f"{(odd_case.content_type or '').upper()}; charset=utf-8")
    assert ask(as_stack, hostile_as, name, odd_case)[0].status.code == 0


@pytest.mark.parametrize(("name", "fault"), EXPLICIT, ids=[f"{n}-{f.name}" for n, f in EXPLICIT])
def test_hostile_as_every_answer_shape_is_denied(as_stack: tuple[Stack, Checker], hostile_as: HostileAS, name: str,
                                                 fault: Fault) -> None:
    param = _explicit_param(fault, name)
    response, _ = ask(as_stack, hostile_as, name, hostile_answer(name, [(fault, param)]))
    assert response.status.code != 0, f"{name}/{fault.name}={param!r} was allowed"


def _hostile_together(faults: list[Fault]) -> bool:
    """Truncating a padded (huge) body may cut off only the padding: a well-formed answer, rightly allowed."""
    names = [f.name for f in faults]
    return not ("huge_body" in names and "truncated_body" in names[names.index("huge_body"):])


@st.composite
def hostile_answers(draw: st.DrawFn) -> tuple[str, list[tuple[Fault, Any]]]:
    name = draw(st.sampled_from(NAMES))
    applicable = [f for f in FAULTS if name in f.names]
    chosen = draw(st.lists(st.sampled_from(applicable), min_size=1, max_size=3, unique_by=lambda f: f.name)
                  .filter(_hostile_together))
    faults = []
    for fault in chosen:
        param = draw(fault.params.filter(lambda p, f=fault: _usable(f, name, p)))
        faults.append((fault, param))
    return name, faults


@settings(SETTINGS, max_examples=150)
@given(example=hostile_answers())
def test_hostile_as_never_causes_an_allow(as_stack: tuple[Stack, Checker], hostile_as: HostileAS,
                                          example: tuple[str, list[tuple[Fault, Any]]]) -> None:
    """Up to three faults at once, each with a generated parameter, in every dialect: never an allow."""
    name, faults = example
    response, _ = ask(as_stack, hostile_as, name, hostile_answer(name, faults))
    assert response.status.code != 0, f"{name}: {[(f.name, p) for f, p in faults]} was allowed"


# --- 2. hostile Redis: every value shape ---------------------------------------------------------------------------

PREFIX = "hp"


@dataclass
class RedisRig:
    stack: Stack
    checker: Checker
    redis: redis_client.Redis
    hostile_as: HostileAS
    victim: str
    victim_jwt: str

    def identity(self, name: str) -> str:
        """The AS identity the service keys this AS's answers by: the hash of its whole configuration."""
        return configuration_hash(self._servers[name])

    @functools.cached_property
    def _servers(self) -> Mapping[str, AuthorizationServerConfig]:
        return load_config(self.stack.dir / "authz.yaml", {"TEST_GATEWAY_SECRET": GATEWAY_SECRET}).authorization_servers

    def key(self, token: str, name: str = "phantom") -> str:
        return f"{PREFIX}:a:{cache_key(self.identity(name), token)}"

    def l2_errors(self) -> float:
        text = http_request("GET", self.stack.metrics_port, "/metrics").body.decode()
        found = re.search(r'^phantom_authz_cache_lookups_total\{result="l2_error"\} (\S+)$', text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def redis_rig(tmp_path_factory: pytest.TempPathFactory, hostile_as: HostileAS) -> Iterator[RedisRig]:
    if not redis_available():
        pytest.skip("redis-server (Debian package) is not installed")
    workdir = tmp_path_factory.mktemp("hostile-redis")
    server = RedisServer(workdir).start()
    s = Stack(workdir / "authz")
    checker: Checker | None = None
    try:
        s.start_authz(authorization_servers=hostile_as.authorization_servers(),
                      default_authorization_server="phantom",
                      cache={"negative_ttl_seconds": 0, "redis": {"url": server.url, "key_prefix": PREFIX,
                                                                  "timeout_seconds": 1.0}}, in_process=True)
        checker = Checker(f"127.0.0.1:{s.authz_port}")
        shared = redis_client.Redis.from_url(server.url)
        # the victim: a token the AS says is active; its answer (with its JWT) lands in Redis under the key we expect
        victim, answer = fresh_token(), valid_answer("phantom", sub="victim", scope="read admin")
        hostile_as.answers[victim] = answer
        assert checker(check_request(f"Bearer {victim}")).status.code == 0
        rig = RedisRig(s, checker, shared, hostile_as, victim, answer.body.decode())
        # the positive control of the key scheme (a sidecar shares answers once it listens for evictions: what it
        # cached before its subscription is dropped then, so the check is repeated until one is written)
        wait_until(lambda: checker(check_request(f"Bearer {victim}")).status.code == 0 and shared.exists(
            rig.key(victim)), f"a value under {rig.key(victim)}")
        yield rig
        shared.close()
    finally:
        if checker is not None:
            checker.close()
        s.stop()
        server.stop()


def redis_is_read(rig: RedisRig) -> None:
    """Poll until the service reads Redis again (after a Redis error it skips Redis for its backoff): a fresh
    token with garbage under its key, until the l2_error count rises."""
    def read_once() -> bool:
        token = fresh_token()
        rig.redis.set(rig.key(token), b"garbage")
        before = rig.l2_errors()
        assert rig.checker(check_request(f"Bearer {token}")).status.code != 0
        return rig.l2_errors() > before

    wait_until(read_once, "the service reads Redis again")


def _old_json(rig: RedisRig, jwt: str | None) -> bytes:
    claims = token_claims(sub="mallory", scope="read admin")
    return json.dumps({"v": 1, "active": True, "jwt": jwt, "claims": claims, "until": time.time() + 600,
                       "asked_at": time.time()}).encode()


def _sealed(rig: RedisRig, sealing_token: str, name: str, jwt: str | None, identity: str | None = None,
            secret: bytes = GATEWAY_SECRET.encode()) -> bytes:
    """A value sealed as a sidecar would seal it (with the gateway's secret at the AS, by default: the shapes then
    test what the seal binds), or as a Redis writer can (``secret``: a guess)."""
    answer = Introspection(active=True, jwt=jwt, claims=token_claims(sub="mallory", scope="read admin"))
    return ValueKey(identity or rig.identity("phantom"), sealing_token, secret=secret).seal(
        name, answer, time.time() + 600, time.time())


WRITERS_GUESS = b"a-redis-writer-does-not-know-the-gateway-secret"


@st.composite
def hostile_values(draw: st.DrawFn) -> tuple[str, Callable[[RedisRig, str], bytes]]:
    """(shape, value maker given the rig and the attacked token's Redis key): values a Redis writer can make
    without the attacked token (plus a few that bind it wrongly)."""
    shape = draw(st.sampled_from([
        "old_json_claims_only", "old_json_with_victim_jwt", "plaintext_new_format", "random_bytes",
        "version_byte_and_random", "victim_value_copied", "victim_value_truncated", "victim_value_bit_flipped",
        "victim_value_other_version", "sealed_with_attacker_token_key", "sealed_for_another_key_name",
        "sealed_for_another_as", "empty", "huge", "text"]))
    blob = draw(st.binary(max_size=200))
    index = draw(st.integers(0, 10_000))
    text = draw(st.text(max_size=100))

    def victim_value(rig: RedisRig) -> bytes:
        value = rig.redis.get(rig.key(rig.victim))
        assert isinstance(value, bytes), "the victim's value is gone"
        return value

    makers: dict[str, Callable[[RedisRig, str], bytes]] = {
        "old_json_claims_only": lambda rig, _: _old_json(rig, None),
        "old_json_with_victim_jwt": lambda rig, _: _old_json(rig, rig.victim_jwt),
        "plaintext_new_format": lambda rig, _: b"\x02" + bytes(12) + _old_json(rig, rig.victim_jwt),
        "random_bytes": lambda rig, _: blob,
        "version_byte_and_random": lambda rig, _: b"\x02" + blob + bytes(28),
        "victim_value_copied": lambda rig, _: victim_value(rig),
        "victim_value_truncated": lambda rig, _: victim_value(rig)[:index % len(victim_value(rig))],
        "victim_value_bit_flipped": lambda rig, _: _flip(victim_value(rig), index),
        "victim_value_other_version": lambda rig, _: bytes([index % 256 if index % 256 != 2 else 1])
        + victim_value(rig)[1:],
        "sealed_with_attacker_token_key": lambda rig, name: _sealed(rig, "attackers-own-token", name, rig.victim_jwt),
        "sealed_for_another_key_name": lambda rig, name: _sealed(rig, _token_of[name], name + "x", rig.victim_jwt),
        "sealed_for_another_as": lambda rig, name: _sealed(rig, _token_of[name], name, rig.victim_jwt,
                                                           rig.identity("rfc7662_jwt")),
        "empty": lambda rig, _: b"",
        "huge": lambda rig, _: b"\x02" + bytes(1024 * 1024),
        "text": lambda rig, _: text.encode(),
    }
    return shape, makers[shape]


_token_of: dict[str, str] = {}  # Redis key -> the attacked token (for the shapes that bind a value wrongly)


def _flip(value: bytes, index: int) -> bytes:
    i = index % len(value)
    return value[:i] + bytes([value[i] ^ 0x01]) + value[i + 1:]


@settings(SETTINGS, max_examples=60)
@given(example=hostile_values(), everywhere=st.booleans())
def test_hostile_redis_every_value_is_a_miss_never_an_allow(redis_rig: RedisRig,
                                                            example: tuple[str, Callable[[RedisRig, str], bytes]],
                                                            everywhere: bool) -> None:
    """A token the AS says is inactive, with a hostile value under its Redis key (and, half the time, under every
    key in the prefix): the value is read and refused (the l2_error count rises), the AS is asked, 401."""
    shape, make = example
    rig = redis_rig
    if shape == "victim_value_copied" or everywhere:
        redis_is_read(rig)
    token = fresh_token()
    name = rig.key(token)
    _token_of[name] = token
    value = make(rig, name)
    rig.redis.set(name, value)
    if everywhere:
        for other in rig.redis.scan_iter(match=f"{PREFIX}:*"):
            if other.decode() != rig.key(rig.victim):  # the copied shapes need the victim's value as it is
                rig.redis.set(other, value)
    before = rig.l2_errors()
    response = rig.checker(check_request(f"Bearer {token}", required_scopes="read"))
    assert response.status.code != 0, f"{shape} under the token's key was allowed"
    assert response.denied_response.status.code == 401, (shape, response.denied_response)
    assert rig.hostile_as.asked.get(token) == 1, "the AS must be asked: a hostile value is a miss"
    assert rig.l2_errors() > before, f"{shape}: the service never read (and refused) the value"


def test_hostile_redis_a_sealed_claims_only_or_forged_jwt_answer_is_a_miss(redis_rig: RedisRig) -> None:
    """Even sealed with the token's own key (the token's holder writing Redis): a claims-only answer for a dialect
    that returns JWTs, and JWTs the AS did not sign, are refused."""
    rig = redis_rig
    redis_is_read(rig)
    forged = {
        "claims_only": None,
        "alg_none": sign_alg_none(token_claims(sub="mallory", scope="read admin")),
        "other_key": sign(token_claims(sub="mallory", scope="read admin"), key=OTHER_KEY),
        "hs256": sign_hs256_with_public_key(token_claims(sub="mallory", scope="read admin")),
        "expired_victim_like": sign(token_claims(exp=NOW - 3600)),
    }
    for shape, jwt in forged.items():
        token = fresh_token()
        rig.redis.set(rig.key(token), _sealed(rig, token, rig.key(token), jwt))
        before = rig.l2_errors()
        response = rig.checker(check_request(f"Bearer {token}", required_scopes="read"))
        assert response.status.code != 0, f"{shape} was allowed"
        if shape != "expired_victim_like":  # that one opens and verifies; the claims check refuses it (401)
            assert rig.hostile_as.asked.get(token) == 1, shape
            assert rig.l2_errors() > before, shape
        assert response.denied_response.status.code == 401, (shape, response.denied_response)


def test_hostile_redis_writer_choosing_its_own_token_string_cannot_reuse_a_victims_jwt(redis_rig: RedisRig) -> None:
    rig = redis_rig
    redis_is_read(rig)
    chosen = "any-string-the-as-never-issued-" + secrets.token_hex(4)
    # the writer picks the token string, but not the gateway's secret at the AS, which the value key needs
    rig.redis.set(rig.key(chosen), _sealed(rig, chosen, rig.key(chosen), rig.victim_jwt, secret=WRITERS_GUESS))
    response = rig.checker(check_request(f"Bearer {chosen}", required_scopes="admin"))
    assert rig.hostile_as.asked.get(chosen, 0) <= 1
    assert response.status.code != 0, "a token the AS never issued was let in as the victim"


def test_hostile_redis_writer_cannot_mint_an_identity_for_a_claims_only_dialect(redis_rig: RedisRig) -> None:
    rig = redis_rig
    redis_is_read(rig)
    chosen = "any-string-the-as-never-issued-" + secrets.token_hex(4)
    key = rig.key(chosen, "rfc7662")
    rig.redis.set(key, _sealed(rig, chosen, key, None, rig.identity("rfc7662"), secret=WRITERS_GUESS))
    response = rig.checker(check_request(f"Bearer {chosen}", required_scopes="admin", **{"as": "rfc7662"}))
    assert response.status.code != 0, "a Redis writer minted an admin identity"


def test_hostile_redis_values_of_other_redis_types_are_a_miss(redis_rig: RedisRig) -> None:
    """A list, hash or set under the token's key (WRONGTYPE): a miss. Redis is then skipped for its backoff, so
    each shape is retried with fresh tokens until the service has read (and refused) one."""
    rig = redis_rig
    writers: dict[str, Callable[[str], Any]] = {
        "list": lambda key: rig.redis.rpush(key, _old_json(rig, rig.victim_jwt)),
        "hash": lambda key: rig.redis.hset(key, "active", "true"),
        "set": lambda key: rig.redis.sadd(key, _old_json(rig, None)),
    }
    for shape, write in writers.items():
        def read_and_refused(shape: str = shape, write: Callable[[str], Any] = write) -> bool:
            token = fresh_token()
            write(rig.key(token))
            before = rig.l2_errors()
            response = rig.checker(check_request(f"Bearer {token}", required_scopes="read"))
            assert response.denied_response.status.code == 401, (shape, response)
            return rig.l2_errors() > before

        wait_until(read_and_refused, f"{shape}: the service reads Redis again")


# --- 3. hostile Envoy: CheckRequests Envoy would never send ---------------------------------------------------------

VALID = "valid-" + secrets.token_urlsafe(24)
SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=8).filter(
    lambda s: s not in (".", ".."))
NORMAL_PATHS = st.lists(SEGMENT, min_size=0, max_size=5).map(lambda segs: "/" + "/".join(segs))
POISONS = ("..", ".", "%2e", "%2E%2e", ".%2e", "%00", "a%2Fb", "a%2fb", "%5c", "\\", "\x00", "\x01", "\x1f", "\x7f",
           " ", "#", "%zz", "%4", "%252e", "%41", "..;", "..;x", "\u00e9", "a\tb", "a\nb", "%c0%ae")
# no "" here: as the last segment it makes a trailing slash, which is normal ("/0/"); double_slash covers "//"


@st.composite
def non_normal_paths(draw: st.DrawFn) -> str:
    how = draw(st.sampled_from(["poison", "no_leading_slash", "double_slash"]))
    segments = draw(st.lists(SEGMENT, min_size=1, max_size=4))
    if how == "no_leading_slash":
        return draw(st.sampled_from(["", "get", "records/alice", "http://evil.example/get", "*", "?x=1",
                                     "%2Fget", ".."])) if draw(st.booleans()) else "/".join(segments)
    if how == "double_slash":
        i = draw(st.integers(0, len(segments)))
        return "/" + "/".join([*segments[:i], "", *segments[i:]]) + "/x"
    i = draw(st.integers(0, len(segments)))
    poison = draw(st.sampled_from(POISONS))
    path = "/" + "/".join([*segments[:i], poison, *segments[i:]])
    return path + draw(st.sampled_from(["", "?a=b", "/"]))


HEADER_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda n: n not in ("authorization", "origin", "access-control-request-method"))
GARBAGE_CREDENTIALS = st.one_of(
    st.sampled_from(["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Bearer a b", "Bearer\ttoken",
                     "Token abc", "Bearer " + "a" * 5000, "Bearer t\u00f6ken", "Bearer \x00", "Bearer abc,Bearer def"]),
    st.text(max_size=40).filter(lambda s: VALID not in s),
    st.builds(lambda: f"Bearer {fresh_token()}"),  # a token the AS says is inactive
)
CONTEXT = st.dictionaries(
    st.sampled_from(["required_scopes", "as", "policy", "keep_authorization", "allow_encoded_slashes", "bogus", "",
                     "Required_Scopes", "disabled "]) | st.text(max_size=8),
    st.sampled_from(["", "read", "-", "phantom", "nope", "true", "false", " ", "records"]) | st.text(max_size=8),
    max_size=4)


def _fill(request: CheckRequest, draw: st.DrawFn, method: str, path: str) -> None:
    http = request.attributes.request.http
    http.method, http.path, http.host, http.id = method, path, draw(st.sampled_from(["api.example", "", "\x00"])), "r"
    for key, value in draw(st.dictionaries(HEADER_NAMES, st.text(max_size=30), max_size=6)).items():
        http.headers[key] = value
    if draw(st.integers(0, 9)) == 0:  # a huge header map
        for i in range(200):
            http.headers[f"x-filler-{i}"] = "v" * 500


@st.composite
def requests_without_a_valid_token(draw: st.DrawFn) -> CheckRequest:
    request = CheckRequest()
    skeleton = draw(st.sampled_from(["empty", "attributes_only", "request_only", "http"] + ["http"] * 6))
    if skeleton == "empty":
        return request
    request.attributes.context_extensions.update(draw(CONTEXT))
    if skeleton == "attributes_only":
        request.attributes.source.address.socket_address.address = "127.0.0.1"
        return request
    if skeleton == "request_only":
        request.attributes.request.time.seconds = 1
        return request
    method = draw(st.sampled_from(["", "GET", "POST", "OPTIONS", "g e t", "\x00", "CONNECT", "TRACE"]) | st.text(
        max_size=8))
    path = draw(NORMAL_PATHS | non_normal_paths() | st.text(max_size=30))
    _fill(request, draw, method, path)
    http = request.attributes.request.http
    where = draw(st.sampled_from(["none", "headers", "header_map", "both", "several", "raw_non_ascii"]))
    if where in ("headers", "both"):
        http.headers["authorization"] = draw(GARBAGE_CREDENTIALS)
    if where in ("header_map", "both", "several"):
        for _ in range(2 if where == "several" else 1):
            http.header_map.headers.add(key="authorization", value=draw(GARBAGE_CREDENTIALS))
    if where == "raw_non_ascii":
        http.header_map.headers.add(key="authorization", raw_value=("Bearer t\u00f6ken-" + fresh_token()).encode())
    if where in ("header_map", "several", "raw_non_ascii") and draw(st.booleans()):
        http.header_map.headers.add(key="x-other", raw_value=b"\xff\xfe")
    return request


@pytest.fixture(scope="module")
def envoy_rig(as_stack: tuple[Stack, Checker], hostile_as: HostileAS) -> Checker:
    hostile_as.answers[VALID] = valid_answer("phantom")
    checker = as_stack[1]
    assert checker(check_request(f"Bearer {VALID}", required_scopes="read")).status.code == 0  # positive control
    return checker


@settings(SETTINGS, max_examples=150)
@given(request=requests_without_a_valid_token())
def test_hostile_envoy_request_without_a_valid_token_is_denied(envoy_rig: Checker, request: CheckRequest) -> None:
    response = envoy_rig(request)
    assert response.status.code != 0, f"allowed without a valid token: {request}"


@settings(SETTINGS, max_examples=20)
@given(path=NORMAL_PATHS, query=st.sampled_from(["", "?a=b", "?x=1&y=%20"]))
def test_hostile_envoy_control_valid_token_and_normal_path_allows(envoy_rig: Checker, path: str, query: str) -> None:
    response = envoy_rig(check_request(f"Bearer {VALID}", path + query, required_scopes="read"))
    assert response.status.code == 0, (path, response.denied_response)


@settings(SETTINGS, max_examples=80)
@given(path=non_normal_paths(), method=st.sampled_from(["GET", "POST", "DELETE"]))
def test_hostile_envoy_valid_token_with_a_non_normal_path_is_denied(envoy_rig: Checker, path: str,
                                                                    method: str) -> None:
    request = check_request(f"Bearer {VALID}", path, required_scopes="read")
    request.attributes.request.http.method = method
    response = envoy_rig(request)
    assert response.status.code != 0, f"valid token, path {path!r} allowed"
    assert response.denied_response.status.code == 400, (path, response.denied_response)


OTHER_CREDENTIAL = GARBAGE_CREDENTIALS | st.sampled_from([f"Bearer {VALID}x", f"Bearer {VALID[:-1]}"])


@st.composite
def valid_token_with_bad_structure(draw: st.DrawFn) -> tuple[str, CheckRequest]:
    shape = draw(st.sampled_from(["several_in_header_map", "valid_plus_non_ascii_raw", "unknown_context_key",
                                  "empty_setting"]))
    request = check_request(None, draw(NORMAL_PATHS), required_scopes="read")
    headers = request.attributes.request.http.header_map.headers
    if shape == "several_in_header_map":
        values = [f"Bearer {VALID}", draw(OTHER_CREDENTIAL | st.just(f"Bearer {VALID}"))]
        for value in draw(st.permutations(values)):
            headers.add(key=draw(st.sampled_from(["authorization", "Authorization", "AUTHORIZATION"])), value=value)
    elif shape == "valid_plus_non_ascii_raw":
        headers.add(key="authorization", raw_value=f"Bearer {VALID}".encode())
        headers.add(key="authorization", raw_value="Bearer t\u00f6ken".encode())
    elif shape == "unknown_context_key":
        request.attributes.request.http.headers["authorization"] = f"Bearer {VALID}"
        key = draw(st.sampled_from(["bogus", "", "Required_Scopes", "disabled ", "scopes"]) | st.text(
            min_size=1, max_size=8).filter(lambda k: k not in ("required_scopes", "disabled", "as", "policy",
                                                               "keep_authorization", "allow_encoded_slashes")))
        request.attributes.context_extensions[key] = draw(st.sampled_from(["", "x", "true"]))
    else:
        request.attributes.request.http.headers["authorization"] = f"Bearer {VALID}"
        key = draw(st.sampled_from(["required_scopes", "policy", "as", "keep_authorization", "allow_encoded_slashes",
                                    "disabled"]))
        request.attributes.context_extensions[key] = ""
    return shape, request


@settings(SETTINGS, max_examples=60)
@given(example=valid_token_with_bad_structure())
def test_hostile_envoy_valid_token_in_a_malformed_request_is_denied(envoy_rig: Checker,
                                                                    example: tuple[str, CheckRequest]) -> None:
    shape, request = example
    response = envoy_rig(request)
    assert response.status.code != 0, f"{shape}: allowed: {request}"


def _both_maps(valid_in: str, other: str) -> CheckRequest:
    request = check_request(None, "/get", required_scopes="read")
    http = request.attributes.request.http
    if valid_in == "headers":
        http.headers["authorization"] = f"Bearer {VALID}"
        http.header_map.headers.add(key="authorization", value=other)
    else:
        http.header_map.headers.add(key="authorization", raw_value=f"Bearer {VALID}".encode())
        http.headers["authorization"] = other
    return request


@settings(SETTINGS, max_examples=15)
@given(other=OTHER_CREDENTIAL)
def test_hostile_envoy_valid_token_in_headers_and_another_in_header_map_is_denied(envoy_rig: Checker,
                                                                                   other: str) -> None:
    """Envoy sends one of the two maps (``header_map`` with ``encode_raw_headers``), never both."""
    response = envoy_rig(_both_maps("headers", other))
    assert response.status.code != 0, f"valid token in headers, {other!r} in header_map: allowed"


@settings(SETTINGS, max_examples=15)
@given(other=OTHER_CREDENTIAL)
def test_hostile_envoy_valid_token_in_header_map_and_another_in_headers_is_denied(envoy_rig: Checker,
                                                                                   other: str) -> None:
    response = envoy_rig(_both_maps("header_map", other))
    assert response.status.code != 0, f"valid token in header_map, {other!r} in headers: allowed"


@pytest.mark.parametrize(("value", "raw"), [("Bearer not-the-valid-one", f"Bearer {VALID}"), (
    f"Bearer {VALID}", "Bearer not-the-valid-one")], ids=["valid_in_raw_value", "valid_in_value"])
def test_hostile_envoy_header_value_with_value_and_raw_value_disagreeing_is_denied(
        envoy_rig: Checker, value: str, raw: str) -> None:
    """A ``HeaderValue`` with both ``value`` and ``raw_value`` set (Envoy sets one), holding different credentials:
    not a request Envoy sent, so not an allow."""
    check = check_request(None, "/get", required_scopes="read")
    check.attributes.request.http.header_map.headers.append(
        HeaderValue(key="authorization", value=value, raw_value=raw.encode()))
    response = envoy_rig(check)
    assert response.status.code != 0, f"value {value!r} and raw_value {raw!r}: allowed"
