"""Run a coroutine at once, and make a task of it only if it has to wait.

A check answered from the cache never waits on anything, yet a task per request costs its creation, a trip through
the event loop's ready queue and a done callback. ``start`` runs the coroutine's first step right away (what
Python 3.12's eager tasks do): a coroutine that finishes in it gives its result with no task at all; one that
waits (an introspection on a cache miss) goes on in a task from where it stopped, in the same context.

Context: the first step runs in a copy of the caller's context, and the task (if any) runs in that same copy, so
context variables the coroutine sets (the check's log fields) are its own, never the caller's.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["start"]

T = TypeVar("T")


def start(coroutine: Coroutine[Any, Any, T]) -> tuple[T, None] | tuple[None, asyncio.Task[T]]:
    """``(result, None)`` when ``coroutine`` finished in its first step, else ``(None, the task going on with it)``.
    An exception it raises in its first step propagates."""
    context = contextvars.copy_context()
    try:
        waiting_on = context.run(coroutine.send, None)
    except StopIteration as finished:
        result: T = finished.value
        return result, None
    return None, asyncio.get_running_loop().create_task(_resume(coroutine, waiting_on), context=context)


async def _resume(coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> T:
    return await _Resumed(coroutine, waiting_on)


class _Resumed(Generic[T]):
    """Hands the task what the coroutine yielded (the future it waits on), and the task's wake-ups (or a
    cancellation) back to the coroutine, until it returns."""

    __slots__ = ("_coroutine", "_waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:  # a cancellation (or any throw) goes to the coroutine, as in a task
                try:
                    waiting_on = coroutine.throw(exc)
                except StopIteration as finished:
                    result: T = finished.value
                    return result
            else:
                try:
                    waiting_on = coroutine.send(sent)
                except StopIteration as finished:
                    result = finished.value
                    return result
