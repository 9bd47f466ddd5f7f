"""``/metrics`` as an operator scrapes it: the check-latency histogram per transport and the policy stage's metrics
(decisions by result, evaluation latency, decision-cache lookups), counted by a real service (in process,
``tests/inprocess.py``) answering real gRPC and HTTP check calls against the dev AS."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ROOT, Stack, http_request
from tests.service.test_grpc_service import call, check_request, target
from tests.service.test_http_transport import PREFIX, send


def scrape(s: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    text = http_request("GET", s.metrics_port, "/metrics").body.decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_check_latency_histogram_counts_every_check_per_transport(tmp_path: Path) -> None:
    s = Stack(tmp_path, "http")  # gRPC and the HTTP transport side by side
    try:
        with s.together():
            s.start_dev_as()
            s.start_authz(in_process=True)
        token = s.token("read")
        for _ in range(3):
            assert call(target(s), check_request(f"Bearer {token}")).status.code == 0
        assert call(target(s), check_request(None)).denied_response.status.code == 401  # a denial is timed too
        assert send(s.http_port, PREFIX + "/get", {"authorization": f"Bearer {token}"}).status == 200
        metrics = scrape(s)
        grpc, http = (("transport", "grpc"),), (("transport", "http"),)
        assert metrics[("phantom_authz_check_seconds_count", grpc)] == 4
        assert metrics[("phantom_authz_check_seconds_count", http)] == 1
        assert metrics[("phantom_authz_check_seconds_bucket", (("le", "+Inf"), *grpc))] == 4
        buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value in metrics.items()
                         if name == "phantom_authz_check_seconds_bucket" and dict(labels)["transport"] == "grpc")
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
        assert buckets[0][0] <= 0.0001, "fine enough for a cached check (tens of µs)"
        assert 0 < metrics[("phantom_authz_check_seconds_sum", grpc)] < 20  # seconds, not ms or µs
    finally:
        s.stop()


def test_policy_metrics_count_decisions_latency_and_decision_cache(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        # decision logs in summary: a full log turns the decision cache off (it must see each input)
        s.start_authz(policy={"paths": [str(ROOT / "deploy" / "policies")], "watch_interval_seconds": 0,
                              "decision_log": "summary"}, in_process=True)
    alice = s.token("read", subject="alice")

    def status(path: str, policy: str = "records/decision") -> int:
        response = call(target(s), check_request(f"Bearer {alice}", path, policy=policy))
        return 200 if response.status.code == 0 else int(response.denied_response.status.code)

    assert status("/records/alice/profile") == 200
    assert status("/records/alice/profile") == 200  # the same input: the decision reused
    assert status("/records/bob/profile") == 403
    assert status("/records/alice/profile", policy="records/no_such_rule") == 503  # undefined: an error
    metrics = scrape(s)
    decisions = {dict(labels)["result"]: value for (name, labels), value in metrics.items()
                 if name == "phantom_authz_policy_decisions_total"}
    assert decisions == {"allow": 2, "deny": 1, "error": 1}
    assert metrics[("phantom_authz_policy_evaluation_seconds_count", ())] == 4
    assert 0 < metrics[("phantom_authz_policy_evaluation_seconds_sum", ())] < 10
    lookups = {dict(labels)["result"]: value for (name, labels), value in metrics.items()
               if name == "phantom_authz_policy_decision_cache_lookups_total"}
    assert lookups["hit"] == 1, lookups
    assert lookups["miss"] == 3, lookups  # alice's first, bob's, and the undefined rule's (an error is not kept)
    assert metrics[("phantom_authz_check_seconds_count", (("transport", "grpc"),))] == 4
