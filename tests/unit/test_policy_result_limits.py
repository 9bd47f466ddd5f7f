"""What a policy's answer may ask for, beyond its shape: a result the service accepts must become a CheckResponse
Envoy can read, and a policy stage in dry-run mode says so when it starts.

Envoy decodes the CheckResponse with protobuf's default nesting limit of 100 messages; upb (the Python runtime here)
applies the same default, so parsing the serialized response back is the receiver's view. A ``dynamic_metadata``
object costs three messages a level (Struct, its map entry, Value): a result nested deeper than Envoy can read was
accepted and logged as an allow, and the allow then failed in Envoy as an ext_authz error (``status_on_error``).
Denials carry no policy metadata, so they were not affected; such a result is now ``policy.failure_status`` either way.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse

from authz.config import PolicyConfig
from authz.models import Allow
from authz.policy.decision import MAX_METADATA_DEPTH, PolicyResultError, decision_from_result
from authz.policy.engine import Evaluation
from authz.policy.stage import PolicyStage
from authz.response import allow_response


def _nested(levels: int, *, arrays: bool = False) -> dict[str, Any]:
    """A dynamic_metadata object ``levels`` deep, the root counted (a scalar at the bottom)."""
    value: Any = "x"
    for _ in range(levels - 1):
        value = [value] if arrays else {"a": value}
    return {"m": value} if levels > 1 else {}


def _round_trip(result: dict[str, Any]) -> CheckResponse:
    response = allow_response(Allow(policy=decision_from_result(result)))
    return CheckResponse.FromString(response.SerializeToString())  # DecodeError past the receiver's nesting limit


@pytest.mark.parametrize("arrays", [False, True], ids=["objects", "arrays"])
def test_metadata_at_the_depth_limit_reaches_the_receiver(arrays: bool) -> None:
    parsed = _round_trip({"allowed": True, "dynamic_metadata": _nested(MAX_METADATA_DEPTH, arrays=arrays)})
    assert "m" in parsed.dynamic_metadata.fields


@pytest.mark.parametrize("allowed", [True, False])
@pytest.mark.parametrize("levels", [MAX_METADATA_DEPTH + 1, 40, 200])
def test_metadata_deeper_than_envoy_reads_is_a_result_error(allowed: bool, levels: int) -> None:
    with pytest.raises(PolicyResultError, match=r"dynamic_metadata: nested deeper than 32 levels"):
        decision_from_result({"allowed": allowed, "dynamic_metadata": _nested(levels)})


class _Engine:
    name = "fake"

    async def evaluate(self, decision_path: str, policy_input: dict[str, Any]) -> Evaluation:
        return Evaluation(True, "d-1")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_dry_run_stage_warns_when_it_starts(dry_run: bool, caplog: pytest.LogCaptureFixture) -> None:
    config = PolicyConfig(engine="remote", remote={"url": "http://127.0.0.1:1"}, dry_run=dry_run)
    with caplog.at_level(logging.INFO, logger="authz.policy"):
        PolicyStage(config, _Engine())
    warnings = [r for r in caplog.records if r.name == "authz.policy" and r.levelno == logging.WARNING]
    if dry_run:
        assert len(warnings) == 1 and "dry_run" in warnings[0].getMessage()
        assert "allowed" in warnings[0].getMessage()
    else:
        assert warnings == []
