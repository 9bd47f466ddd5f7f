from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to the local servers a test starts; closed when the test ends."""
    async with aiohttp.ClientSession() as s:
        yield s
