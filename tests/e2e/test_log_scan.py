"""No credential in any log phantom-authz writes (issue 12, items 5 and 17), through real Envoy in both modes.

phantom-authz runs with ``log_level: DEBUG`` (its own loggers and every library's), ``decision_log: full``, and, in
gRPC mode, Envoy's ``encode_raw_headers: true`` (header_map entries with raw values). The flows: allowed, scope-
and policy-denied requests, a policy that reads the whole input, bodies, unknown and malformed tokens, credentials
in cookies and API-key headers, a token in the query string, a revocation through the dev AS's hook, and (HTTP mode)
malformed request lines and header lines sent straight to phantom-authz's HTTP port. Then every issued opaque token,
every JWT the upstream received, each client secret and each other credential is searched for, as is and base64
encoded (a ``rawValue``), in phantom-authz's whole output: 0 hits. Envoy's own log (level ``warn``) is scanned
too. The dev AS's and the echo upstream's logs are not scanned: they are development tools, not phantom-authz, and
the AS necessarily sees every token.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import GATEWAY_SECRET, ROOT, Stack, add_route, basic, ext_authz_filter, http_request

WHOLE_INPUT_POLICY = """package whole
import rego.v1

# reads all of the HTTP request and the token (so a full decision log holds them) and allows GETs
default allow := false

allow if {
	http := input.attributes.request.http
	http.method == "GET"
	token := input.token
	token.subject != ""
}
"""
DEMO = ("demo-client", "demo-secret")
QUERY = "token sent only in the query string"
OTHER_SECRETS = {
    "cookie": "session=cookie-secret-4e1b9c; theme=dark",
    "x-api-key": "api-key-secret-73a0f5",
    "proxy-authorization": "Basic " + base64.b64encode(b"proxy-user:proxy-secret-5c2d").decode(),
    "dpop": "eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJodG0iOiJHRVQifQ.dpop-proof-secret-0a9f",
}


def variants(secret: str) -> list[str]:
    """``secret`` as a log line could hold it: as is, and base64-encoded at each of the three byte alignments
    (minus the characters shared with what comes before and after)."""
    found = [secret]
    for prefix, skip in (("", 0), ("x", 2), ("xx", 3)):
        encoded = base64.b64encode((prefix + secret).encode()).decode()
        found.append(encoded[skip:len(encoded) - 4])
    return [f for f in found if len(f) >= 12]


class Run:
    """A stack and every credential issued or sent while it ran."""

    def __init__(self, stack: Stack) -> None:
        self.s = stack
        self.secrets: dict[str, str] = {"demo client secret": DEMO[1], "gateway client secret": GATEWAY_SECRET}
        self.secrets.update({f"{name} header": value for name, value in OTHER_SECRETS.items()})
        self.secrets["proxy password"] = "proxy-secret-5c2d"
        self.secrets["cookie value"] = "cookie-secret-4e1b9c"

    def token(self, scope: str, subject: str, label: str = "opaque token") -> str:
        token = self.s.token(scope, subject=subject)
        self.secrets[f"{label} {len(self.secrets)}"] = token
        return token

    def upstream_jwt(self, resp: Any) -> None:
        """The JWT the upstream received (an allowed request's ``authorization``)."""
        assert resp.status == 200, resp
        bearer = resp.json()["headers"].get("Authorization") or resp.json()["headers"].get("authorization")
        assert bearer and bearer.startswith("Bearer ey"), resp
        self.secrets[f"jwt {len(self.secrets)}"] = bearer.split(" ", 1)[1]


def whole_policy(tmp: Path) -> str:
    folder = tmp / "whole-policy"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "whole.rego").write_text(WHOLE_INPUT_POLICY, encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Run]:
    s = Stack(tmp_path_factory.mktemp(f"log-scan-{mode}"), mode)
    run = Run(s)
    try:
        s.start_dev_as()
        s.start_echo()
        s.start_authz(policy={"paths": [str(ROOT / "deploy" / "policies"), whole_policy(s.dir)],
                              "watch_interval_seconds": 0, "decision_log": "full"})

        def mutate(config: dict[str, Any]) -> None:
            add_route("/whole/", {"required_scopes": "read", "policy": "whole/allow"})(config)
            if mode == "grpc":
                ext_authz_filter(config)["encode_raw_headers"] = True

        s.start_envoy(mutate)
        flows(run)
        yield run
    finally:
        s.stop()


def flows(run: Run) -> None:
    s = run.s
    alice = run.token("read", "alice")
    bob = run.token("read", "bob")
    carol = run.token("read approve", "carol")
    writer = run.token("write", "alice")
    revoked = run.token("read", "dave")

    run.upstream_jwt(s.get("/records/alice/profile", alice))  # allowed by records.rego
    assert s.get("/records/alice/profile", bob).status == 403  # denied by the policy
    assert s.get("/records/alice/profile", writer).status == 403  # denied by the scope check
    body = json.dumps({"created_by": "alice", "note": "x" * 200})
    run.upstream_jwt(s.get("/records/bob/transactions/t1/approve", carol, method="POST", body=body,
                           headers={"Content-Type": "application/json"}))
    assert s.get("/records/bob/transactions/t2/approve", alice, method="POST", body=body,
                 headers={"Content-Type": "application/json"}).status == 403
    # the whole input, credentials in every header a client may send them in
    resp = s.get("/whole/a", alice, headers={**OTHER_SECRETS, "X-Trace": "t-1"})
    run.upstream_jwt(resp)
    run.upstream_jwt(s.get("/whole/b?view=full", bob, headers={"Cookie": OTHER_SECRETS["cookie"]}))
    assert s.get("/whole/c", writer, headers={"X-Api-Key": OTHER_SECRETS["x-api-key"]}).status == 403
    run.upstream_jwt(s.get("/httpbin/get", alice))
    # unknown, malformed and misplaced tokens
    unknown = "unknown-" + alice[::-1]
    run.secrets["unknown token"] = unknown
    assert s.get("/httpbin/get", unknown).status == 401
    assert s.get("/httpbin/get", headers={"Authorization": f"Bearer {alice} {bob}"}).status in (400, 401)
    assert s.get("/httpbin/get", headers={"Authorization": f"Basic {alice}"}).status == 401
    assert s.get("/httpbin/get", headers={"Authorization": f"Bearer {alice}", "X-Dup": "1"}).status == 200
    in_query = run.token("read", "erin", label=QUERY)  # RFC 6750 §2.3's query parameter, which we do not accept
    assert s.get(f"/httpbin/get?access_token={in_query}").status == 401
    assert s.get("/admin/x", alice).status == 403  # no admin scope
    # a revocation through the dev AS's hook (the admin API's EvictToken)
    run.upstream_jwt(s.get("/httpbin/get", revoked))
    answer = http_request("POST", s.as_port, "/oauth/v2/oauth-revoke",
                          headers={"Authorization": basic(*DEMO),
                                   "Content-Type": "application/x-www-form-urlencoded"},
                          body=urllib.parse.urlencode({"token": revoked}))
    assert answer.status == 200, answer
    assert s.get("/httpbin/get", revoked).status == 401
    if s.mode == "http":
        straight_to_the_http_port(s, alice, carol)


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def straight_to_the_http_port(s: Stack, alice: str, carol: str) -> None:
    """What no Envoy sends: a header line without a colon, a header name with a space, an HTTP/0.9 line, a line
    too long, each carrying a token."""
    port = s.http_port
    for request in (
        f"GET /phantom-authz/x HTTP/1.1\r\nHost: a\r\nAuthorization Bearer {alice}\r\n\r\n",
        f"GET /phantom-authz/x HTTP/1.1\r\nHost: a\r\nAuthori zation: Bearer {alice}\r\n\r\n",
        f"GET /phantom-authz/x?t={carol}\r\n\r\n",
        f"GET /phantom-authz/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {alice}\x01\r\n\r\n",
        f"GET /phantom-authz/{carol} HTTP/1.1\r\nHost: a\r\nX-Long: {'y' * 70000}\r\n\r\n",
        f"GET /phantom-authz/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
        f"Authorization: Bearer {alice}\r\n\r\n",
    ):
        raw_exchange(port, request.encode("latin-1"))
    assert s.get("/httpbin/get", alice).status == 200  # still serving


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    found = []
    for name, secret in secrets.items():
        for form in variants(secret):
            for match in re.finditer(re.escape(form), text):
                line = text[text.rfind("\n", 0, match.start()) + 1:text.find("\n", match.end())]
                found.append(f"{name} in: {line[:300]}")
                break
    return found


def test_item05_log_scan_no_token_jwt_or_secret_in_any_phantom_authz_log(scanned: Run) -> None:
    s = scanned.s
    assert s.authz is not None
    text = s.authz.log_path.read_text(errors="replace")
    assert "DEBUG" in text and "authz.decisions" in text  # the run logged at DEBUG, with full decision logs
    assert '"headerMap"' in text if s.mode == "grpc" else True  # raw headers reached the policy input
    assert sum(name.startswith("jwt") for name in scanned.secrets) >= 5
    found = leaks(text, {k: v for k, v in scanned.secrets.items() if not k.startswith(QUERY)})
    assert not found, "\n".join(found)


def test_item05_log_scan_token_in_the_query_string_is_not_logged(scanned: Run) -> None:
    assert scanned.s.authz is not None
    text = scanned.s.authz.log_path.read_text(errors="replace")
    found = leaks(text, {k: v for k, v in scanned.secrets.items() if k.startswith(QUERY)})
    assert not found, "\n".join(found)


def test_item05_log_scan_envoy_log_has_no_credential(scanned: Run) -> None:
    envoy_log = scanned.s.dir / "envoy.log"
    found = leaks(envoy_log.read_text(errors="replace"), scanned.secrets)
    assert not found, "\n".join(found)
