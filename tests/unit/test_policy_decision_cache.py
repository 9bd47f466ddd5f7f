"""The decision cache's memory bound: what reused decisions hold is bounded in bytes, whatever the requests carry.

Requests go through the real policy stage and the embedded engine with deploy/policies/records.rego, which reads
the JSON body (``parsed_body.created_by``), so every body is part of the reused decision's key. Memory is measured
with ``tracemalloc`` (what Python really allocated and kept), not with the cache's own count.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.config import Config, ConfigError, PolicyConfig, load_config
from authz.models import Answer, Identity, Introspection
from authz.policy.decision import PolicyDecision, decision_from_result
from authz.policy.decision_cache import DEFAULT_MAX_BYTES, MAX_ENTRY_BYTES, Decided, DecisionCache, footprint
from authz.policy.embedded import EmbeddedEngine
from authz.policy.stage import PolicyStage
from authz.transport.grpc_request import request_info

ROOT = Path(__file__).resolve().parents[2]
POLICIES = str(ROOT / "deploy" / "policies")
CAROL = Identity(jwt="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjYXJvbCJ9.c2ln", claims={"sub": "carol", "scope": "approve"},
                 scopes=frozenset({"read", "approve"}), subject="carol", client_id="web", expires_at=4_000_000_000)


def _approval(n: int, body_bytes: int) -> CheckRequest:
    """An approval by carol of a transaction alice created: allowed, with a distinct JSON body of ``body_bytes``."""
    request = CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.scheme = "POST", f"/records/bob/transactions/t{n}/approve", "api", "http"
    http.headers["content-type"] = "application/json"
    head = json.dumps({"created_by": "alice", "n": n, "pad": ""})[:-2]
    http.body = head + "x" * (body_bytes - len(head) - 2) + '"}'
    http.headers["content-length"] = str(len(http.body))
    request.attributes.context_extensions["policy"] = "records/decision"
    return request


async def _decide_all(stage: PolicyStage, count: int, body_bytes: int) -> None:
    for n in range(count):
        outcome = await stage.decide("records/decision", request_info(_approval(n, body_bytes)), CAROL)
        assert outcome.decision is not None and outcome.decision.allowed


def _stage(max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[PolicyStage, EmbeddedEngine]:
    config = PolicyConfig(engine="embedded", paths=(POLICIES,), watch_interval_seconds=0, decision_log="off",
                          decision_cache_max_bytes=max_bytes)
    engine = EmbeddedEngine(config.paths, 5.0, decision_cache_size=config.decision_cache_size,
                            decision_cache_max_bytes=config.decision_cache_max_bytes)
    return PolicyStage(config, engine), engine


def _held() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_item04_big_bodies_do_not_grow_the_decision_cache_past_its_byte_bound() -> None:
    """200 allowed approvals with distinct 100 KiB bodies: each would be a 100 KiB key (20 MB in all, past the
    default 16 MiB bound); none is kept, so what the cache holds does not grow with them."""
    stage, engine = _stage()
    tracemalloc.start()
    try:
        before = _held()
        await _decide_all(stage, 200, 100 * 1024)
        grown = _held() - before
    finally:
        tracemalloc.stop()
    assert grown < 2 * 1024 * 1024, f"the decision cache kept {grown / 2**20:.1f} MiB of 100 KiB-body requests"
    # the pruned input (created_by, path, token) is small and still reused; the 100 KiB request keys are not kept
    assert engine.cached_decisions == 200 and engine.cached_decision_bytes < 200 * 4096
    assert DEFAULT_MAX_BYTES == 16 * 1024 * 1024


async def test_item04_byte_bound_holds_with_keys_under_the_entry_limit() -> None:
    """With a 1 MiB bound (entries up to 64 KiB), 300 distinct 40 KiB-body approvals offer 12 MB of keys: what the
    process keeps stays within the bound, the cache's own count agrees, and equal requests are still reused."""
    bound = 1024 * 1024
    stage, engine = _stage(bound)
    tracemalloc.start()
    try:
        before = _held()
        await _decide_all(stage, 300, 40 * 1024)
        grown = _held() - before
    finally:
        tracemalloc.stop()
    assert 0 < engine.cached_decisions and engine.cached_decision_bytes <= bound
    assert grown <= bound + 256 * 1024, f"kept {grown / 2**20:.2f} MiB under a 1 MiB bound"
    held = engine.cached_decisions
    again = await stage.decide("records/decision", request_info(_approval(299, 40 * 1024)), CAROL)
    assert again.decision is not None and again.decision.allowed
    assert engine.cached_decisions == held  # the last one is still held: found again, nothing new stored


def test_item04_entries_over_the_entry_limit_are_not_stored_and_the_count_includes_key_and_value() -> None:
    cache = DecisionCache(1000, 64 * 1024)  # entry limit: 4 KiB
    assert cache.entry_limit == 4 * 1024
    cache.put(("p", "x" * 5000), Decided(True))
    assert len(cache) == 0 and cache.bytes == 0  # a 5 KB key is never kept
    cache.put(("p", "small"), Decided({"allowed": True, "body": "y" * 5000}))
    assert len(cache) == 0  # nor a small key with a big value
    for n in range(200):
        cache.put(("p", str(n), "z" * 2000), Decided({"allowed": True}))
        assert cache.bytes <= 64 * 1024
    held = cache.get(("p", "199", "z" * 2000))
    assert 0 < len(cache) < 200 and held is not None and held.result == {"allowed": True}
    one = footprint(("p", "199", "z" * 2000), 10**9) + footprint({"allowed": True}, 10**9)
    assert cache.bytes >= len(cache) * one  # both key and value are charged


def test_item04_unknown_key_types_count_as_over_the_limit() -> None:
    class Opaque:
        pass

    cache = DecisionCache(10, DEFAULT_MAX_BYTES)
    cache.put(("p", Opaque()), Decided(True))
    assert len(cache) == 0
    assert footprint(b"x" * (MAX_ENTRY_BYTES + 1), MAX_ENTRY_BYTES) > MAX_ENTRY_BYTES


@pytest.mark.parametrize("max_bytes", [0])
def test_item04_a_zero_byte_bound_turns_reuse_off(max_bytes: int) -> None:
    cache = DecisionCache(10, max_bytes)
    cache.put(("p", "k"), Decided(True))
    assert not cache.enabled and len(cache) == 0


def test_item04_decision_cache_max_bytes_is_read_from_the_config(tmp_path: Path) -> None:
    rego = tmp_path / "p.rego"
    rego.write_text("package p\nimport rego.v1\n\nallow if input.ok\n", encoding="utf-8")

    def load(policy: dict[str, object]) -> Config:
        doc = {"authorization_servers": {"a": {"introspection_endpoint": "https://as.example/introspect",
                                               "client_id": "gw", "client_secret_env": "S", "dialect": "rfc7662"}},
               "policy": {"paths": [str(rego)], **policy}}
        path = tmp_path / "authz.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return load_config(path, {"S": "secret"})

    assert load({}).policy.decision_cache_max_bytes == 16 * 1024 * 1024
    assert load({"decision_cache_max_bytes": 1_000_000}).policy.decision_cache_max_bytes == 1_000_000
    for bad in (-1, 1.5, "16M"):
        with pytest.raises(ConfigError, match=r"policy\.decision_cache_max_bytes"):
            load({"decision_cache_max_bytes": bad})


async def test_a_reused_decision_carries_its_checked_policy_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The result is checked against the contract once; the decision cache's entry keeps the PolicyDecision, so
    another stage over the same engine (nothing memoised of its own) gets it without checking again."""
    stage, engine = _stage()
    checked: list[object] = []

    def counted(result: object) -> PolicyDecision:
        checked.append(result)
        return decision_from_result(result)

    monkeypatch.setattr("authz.policy.stage.decision_from_result", counted)
    answer = Answer(Introspection(active=True, jwt=CAROL.jwt, claims=CAROL.claims))
    outcomes = [await stage.decide("records/decision", request_info(_approval(1, 200)), CAROL, answer)
                for _ in range(3)]
    config = PolicyConfig(engine="embedded", paths=(POLICIES,), watch_interval_seconds=0, decision_log="off")
    other = await PolicyStage(config, engine).decide("records/decision", request_info(_approval(1, 200)), CAROL)
    assert len(checked) == 1 and engine.cached_decisions == 1  # one key: the projection's
    assert all(o.decision is outcomes[0].decision for o in [*outcomes, other])
    kept = answer.policy_token  # the token's part of the input (and of the reuse key), kept on its answer
    assert kept is not None and kept[0] is engine.projection and kept[1].value["subject"] == "carol"
