"""``LoopHistogram`` exposes what prometheus_client's ``Histogram`` would for the same observations."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from authz.histogram import LoopHistogram

BUCKETS = (0.00005, 0.001, 0.25, 1.0, 5.0)
VALUES = (0.0, 0.00005, 0.00004, 0.0011, 0.25, 0.3, 1.0, 4.99, 5.0, 7.5, 1e9)


def _samples(registry: CollectorRegistry) -> list[str]:
    """The sample lines (not HELP/TYPE, nor prometheus_client's ``_created``)."""
    return [line for line in generate_latest(registry).decode().splitlines()
            if not line.startswith("#") and "_created" not in line]


def test_exposition_matches_prometheus_client_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("t_seconds", "doc", ["transport"], BUCKETS, ours)
    reference = Histogram("t_seconds", "doc", ["transport"], buckets=BUCKETS, registry=theirs)
    for transport in ("grpc", "http"):
        series = loop.labels(transport)
        for value in VALUES if transport == "grpc" else VALUES[:3]:
            series.observe(value)
            reference.labels(transport).observe(value)
    assert _samples(ours) == _samples(theirs)


def test_unlabelled_histogram_and_bad_buckets() -> None:
    registry = CollectorRegistry()
    LoopHistogram("p_seconds", "doc", [], BUCKETS, registry).labels().observe(0.002)
    assert 'p_seconds_bucket{le="0.25"} 1.0' in _samples(registry)
    assert "p_seconds_count 1.0" in _samples(registry)
    for buckets in ((), (1.0, 0.5), (0.5, 0.5), (1.0, float("inf"))):
        with pytest.raises(ValueError):
            LoopHistogram("bad_seconds", "doc", [], buckets, CollectorRegistry())
    with pytest.raises(ValueError):
        LoopHistogram("n_seconds", "doc", ["a"], BUCKETS, CollectorRegistry()).labels()
