"""Path confusion through real Envoy (issue 12 item 2): alice, who may read only her own records
(deploy/policies/records.rego), never gets bob's record by any spelling of the path, and the upstream never receives
a dot segment — in both ext_authz modes, with the shipped Envoy configs (which normalize paths) and with the same
configs stripped of path normalization, where phantom-authz's own normal-form check must hold alone.

Requests are written on a raw socket so that no client library normalizes or rejects the path first.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from tests.harness import ROOT, Response, Stack, hcm

NORMALIZING = {"normalize_path": True, "merge_slashes": True, "path_with_escaped_slashes_action": "REJECT_REQUEST"}

# every one aims at bob's record from a path that starts as alice's (or hides the traversal)
VARIANTS = [
    "/records/alice/../bob/profile",
    "/records/alice/%2e%2e/bob/profile",
    "/records/alice/%2E%2E/bob/profile",
    "/records/alice/%2e%2E/bob/profile",
    "/records/alice/.%2e/bob/profile",
    "/records/alice/%2e./bob/profile",
    "/records/alice/./../bob/profile",
    "/records/alice/.././bob/profile",
    "/records/./alice/../bob/profile",
    "/records/alice/../../records/bob/profile",
    "/records/alice/%2e%2e/%2e%2e/records/bob/profile",
    "/records/alice/..%2fbob/profile",
    "/records/alice/..%2Fbob%2Fprofile",
    "/records/alice%2f..%2fbob/profile",
    "/records/alice/%2e%2e%2f%2e%2e%2frecords%2fbob%2fprofile",
    "/records/alice/..%5cbob/profile",
    "/records/alice/..%5Cbob/profile",
    "/records/alice/..\\bob/profile",
    "/records/alice\\..\\bob/profile",
    "/records/alice/%252e%252e/bob/profile",
    "/records/alice/%252E%252E%252Fbob/profile",
    "/records/alice/%25%32%65%25%32%65/bob/profile",
    "/records//bob/profile",
    "/records/alice//../bob/profile",
    "/records/alice/..//bob/profile",
    "/records/alice/..;/bob/profile",
    "/records/alice/%2e%2e;/bob/profile",
    "/records/alice/%00/../bob/profile",
    "/records/alice/..%00/bob/profile",
    "/records/alice/%c0%ae%c0%ae/bob/profile",
    "/records/alice/%zz/../bob/profile",
    "/records/alice/%4/../bob/profile",
    "/records/alice/..%09/bob/profile",
    "/records/alice/../bob/profile?x=1",
    "/records/alice/%2e%2e/bob/profile#frag",
]


def raw_get(port: int, target: str, token: str) -> Response:
    """``GET <target>`` exactly as written (no client-side normalization or escaping)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {token}\r\n"
                     "Connection: close\r\n\r\n".encode("latin-1"))
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())


def fully_decoded(path: str) -> str:
    """What an upstream that decodes as often as it can, and takes ``\\`` for ``/``, reads."""
    while True:
        decoded = unquote(path)
        if decoded == path:
            return decoded.replace("\\", "/")
        path = decoded


def assert_not_bobs_record(resp: Response, variant: str) -> None:
    if resp.status != 200:
        return
    got = resp.json()["raw_path"].partition("?")[0]
    segments = fully_decoded(got).split("/")
    assert not {".", ".."} & {s.partition(";")[0] for s in segments}, f"{variant}: upstream received {got!r}"
    # alice's own record (e.g. Envoy resolves /records/alice//../bob/profile to /records/alice/bob/profile)
    assert segments[:3] == ["", "records", "alice"], f"{variant}: upstream got {got!r}"


def ours(resp: Response) -> bool:
    """phantom-authz's own 400 (invalid_request JSON), not Envoy's."""
    try:
        return resp.status == 400 and resp.json().get("error") == "invalid_request"
    except ValueError:
        return False


def strip_normalization(config: dict[str, Any]) -> None:
    for key in NORMALIZING:
        hcm(config).pop(key, None)


class Stacks:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        stack.full()
        self.normalizing = stack.envoy_port
        stack.start_envoy(mutate=strip_normalization)
        self.plain = stack.envoy_port
        self.alice = stack.token("read", subject="alice")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stacks]:
    stack = Stack(tmp_path_factory.mktemp(f"path-confusion-{mode}"), mode)
    try:
        yield Stacks(stack)
    finally:
        stack.stop()


def test_item02_every_shipped_envoy_config_normalizes_paths() -> None:
    configs = {name: yaml.safe_load((ROOT / name).read_text())
               for name in ("envoy/envoy.yaml", "envoy/envoy-http.yaml")}
    sidecar = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "sidecar.yaml").read_text())}
    configs["deploy/k8s/sidecar.yaml"] = yaml.safe_load(sidecar["ConfigMap"]["data"]["envoy.yaml"])
    for name, config in configs.items():
        for listener in config["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for f in chain["filters"]:
                    if f["name"] == "envoy.filters.network.http_connection_manager":
                        manager = f["typed_config"]
                        assert {k: manager.get(k) for k in NORMALIZING} == NORMALIZING, name


def test_item02_the_matrix_is_large_enough() -> None:
    assert len(set(VARIANTS)) >= 25


def test_item02_owner_still_reads_her_record_and_not_bobs(stacks: Stacks) -> None:
    for port in (stacks.normalizing, stacks.plain):
        own = raw_get(port, "/records/alice/profile", stacks.alice)
        assert own.status == 200 and own.json()["raw_path"] == "/records/alice/profile", own
        assert raw_get(port, "/records/bob/profile", stacks.alice).status == 403


@pytest.mark.parametrize("variant", VARIANTS)
def test_item02_path_confusion_with_shipped_envoy_config(stacks: Stacks, variant: str) -> None:
    resp = raw_get(stacks.normalizing, variant, stacks.alice)
    assert resp.status in (200, 400, 403, 404), (variant, resp)
    assert_not_bobs_record(resp, variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_item02_path_confusion_without_envoy_normalization(stacks: Stacks, variant: str) -> None:
    """Envoy forwards the path as the client wrote it: phantom-authz's own check refuses it (or Envoy's HTTP parser
    refuses it first), never a 200."""
    resp = raw_get(stacks.plain, variant, stacks.alice)
    assert resp.status in (400, 403), (variant, resp)
    assert_not_bobs_record(resp, variant)


def test_item02_without_normalization_the_service_refuses_what_envoy_forwards(stacks: Stacks) -> None:
    """Of the variants Envoy's parser lets through unnormalized, phantom-authz answers each with its own 400."""
    answers = {v: raw_get(stacks.plain, v, stacks.alice) for v in VARIANTS}
    refused_by_service = [v for v, r in answers.items() if ours(r)]
    others = {v: (r.status, r.body[:80]) for v, r in answers.items() if not ours(r)}
    assert len(refused_by_service) >= 25, others
    assert all(status == 400 for status, _ in others.values()), others  # Envoy's own parser: 400, never a policy
