"""Read an HTTP response body (aiohttp) up to a limit, without buffering more than the limit plus one chunk."""

from __future__ import annotations

import aiohttp

__all__ = ["read_at_most"]


async def read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
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
