"""``authz.transport.eager.start``: a coroutine that needs no wait answers at once; one that waits goes on in a task
from where it stopped, in its own context."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from authz.transport.eager import start

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_test", default="unset")


async def _at_once(value: int) -> int:
    VAR.set("inner")
    return value * 2


async def _waits(gate: asyncio.Future[int], steps: list[str]) -> int:
    VAR.set("inner")
    steps.append("before")
    value = await gate
    steps.append(f"after {VAR.get()}")
    await asyncio.sleep(0)
    return value + 1


async def test_a_coroutine_that_never_waits_gives_its_result_without_a_task() -> None:
    result, task = start(_at_once(21))
    assert (result, task) == (42, None)
    assert VAR.get() == "unset"  # what it set stayed in its own context


async def test_a_waiting_coroutine_continues_in_a_task_with_its_context() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[str] = []
    result, task = start(_waits(gate, steps))
    assert result is None and task is not None and steps == ["before"]  # the first step ran at once
    gate.set_result(7)
    assert await task == 8
    assert steps == ["before", "after inner"]
    assert VAR.get() == "unset"


async def test_an_exception_reaches_the_caller_or_the_task() -> None:
    async def fails_at_once() -> None:
        raise LookupError("at once")

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise LookupError("later")

    with pytest.raises(LookupError, match="at once"):
        start(fails_at_once())
    _, task = start(fails_later())
    assert task is not None
    with pytest.raises(LookupError, match="later"):
        await task


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    cleaned: list[bool] = []

    async def guarded() -> int:
        try:
            return await gate
        finally:
            cleaned.append(True)

    _, task = start(guarded())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True] and gate.cancelled()
