"""``LoopCounter`` exposes what prometheus_client's ``Counter`` would for the same increments."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from authz.loop_counter import LoopCounter


def _samples(registry: CollectorRegistry) -> list[str]:
    """The exposition without prometheus_client's ``_created`` series."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_exposition_matches_prometheus_client_counter() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopCounter("phantom_authz_checks", "Check calls", ["outcome", "status", "reason"], ours)
    reference = Counter("phantom_authz_checks", "Check calls", ["outcome", "status", "reason"], registry=theirs)
    for labels, times in ((("allow", "200", "ok"), 3), (("deny", "401", "missing_credential"), 1)):
        kept = loop.labels(*labels)
        for _ in range(times):
            kept.inc()
            reference.labels(*labels).inc()
    loop.labels("deny", "503", "as_unavailable").inc(2.5)
    reference.labels("deny", "503", "as_unavailable").inc(2.5)
    assert _samples(ours) == _samples(theirs)
    assert ours.get_sample_value("phantom_authz_checks_total", {"outcome": "allow", "status": "200",
                                                                 "reason": "ok"}) == 3.0


def test_unlabelled_counter_shows_zero_before_any_increment_and_refuses_to_go_down() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopCounter("joins_total", "doc", [], ours)
    Counter("joins_total", "doc", registry=theirs)
    assert _samples(ours) == _samples(theirs)
    loop.inc()
    assert ours.get_sample_value("joins_total") == 1.0
    with pytest.raises(ValueError):
        loop.inc(-1)
    with pytest.raises(ValueError):
        LoopCounter("n", "doc", ["a"], CollectorRegistry()).labels()
