from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import share_ports
from tests.harness import Stack


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:  # pytest-xdist's worker gwN of PYTEST_XDIST_WORKER_COUNT: own ports
        share_ports(int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw")),
                    int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    config.addinivalue_line("markers", "grpc_only(reason): run this Envoy test in gRPC ext_authz mode only")
    config.addinivalue_line("markers", "http_only(reason): run this Envoy test in HTTP ext_authz mode only")


@pytest.fixture(scope="module")
def mode(request: pytest.FixtureRequest) -> str:
    """Envoy's ext_authz mode for ``stack`` and ``stack_factory``: ``grpc`` or ``http``. The tests that go through
    Envoy (tests/e2e, tests/interop) run in both (their conftest.py: ``parametrize_modes``); elsewhere ``grpc``."""
    return str(getattr(request, "param", "grpc"))


@pytest.fixture
def stack_factory(tmp_path: Path, mode: str) -> Iterator[type[Stack]]:
    """Build stacks that are stopped when the test ends: ``stack_factory().full()``."""
    made: list[Stack] = []
    counter = iter(range(100))

    def make() -> Stack:
        stack = Stack(tmp_path / f"stack{next(counter)}", mode)
        made.append(stack)
        return stack

    yield make  # type: ignore[misc]
    for stack in made:
        stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    """One full stack (dev AS, echo, phantom-authz, Envoy) shared by a test module (per mode)."""
    s = Stack(tmp_path_factory.mktemp(f"stack-{mode}"), mode)
    try:
        s.full()
        yield s
    finally:
        s.stop()
