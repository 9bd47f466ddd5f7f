from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Stack


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[type[Stack]]:
    """Build stacks that are stopped when the test ends: ``stack_factory().full()``."""
    made: list[Stack] = []
    counter = iter(range(100))

    def make() -> Stack:
        stack = Stack(tmp_path / f"stack{next(counter)}")
        made.append(stack)
        return stack

    yield make  # type: ignore[misc]
    for stack in made:
        stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One full stack (dev AS, echo, phantom-authz, Envoy) shared by a test module."""
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        s.full()
        yield s
    finally:
        s.stop()
