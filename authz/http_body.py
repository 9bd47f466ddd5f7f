"""Read an HTTP body (an aiohttp client response or server request) up to a limit, without buffering more than the
limit plus one chunk."""

from __future__ import annotations

from typing import Protocol

import aiohttp

__all__ = ["read_at_most"]


class _HasBody(Protocol):
    @property
    def content_length(self) -> int | None: ...

    @property
    def content(self) -> aiohttp.StreamReader: ...


async def read_at_most(resp: _HasBody, limit: int) -> bytes | None:
    """The body, or None when it is (or announces to be) longer than ``limit`` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
