"""The quickstart's echo upstream, served on loopback and called over real HTTP, and its ``python -m`` entry point."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from devtools.echo import bound_port, start

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    runner = await start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with session.request(method, url, **kwargs) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        return await resp.json()


async def test_get_echoes_method_path_args_and_headers(session: aiohttp.ClientSession, echo_url: str) -> None:
    got = await call(session, "GET", echo_url + "/get?a=1&b=2&b=3&empty=",
                     headers={"X-Custom": "value", "Authorization": "Bearer abc"})
    assert got["method"] == "GET"
    assert got["path"] == "/get"
    assert got["args"] == {"a": "1", "b": ["2", "3"], "empty": ""}
    assert got["headers"]["X-Custom"] == "value"
    assert got["headers"]["Authorization"] == "Bearer abc"
    assert got["headers"]["Host"] == echo_url.removeprefix("http://")
    assert got["body"] == ""


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_any_method_and_path_with_a_body(session: aiohttp.ClientSession, echo_url: str, method: str) -> None:
    got = await call(session, method, echo_url + "/deep/nested/path%20x", data="héllo body".encode(),
                     headers={"Content-Type": "text/plain; charset=utf-8"})
    assert got["method"] == method
    assert got["path"] == "/deep/nested/path x"
    assert got["args"] == {}
    assert got["body"] == "héllo body"
    assert got["headers"]["Content-Type"] == "text/plain; charset=utf-8"


async def test_root_path_and_other_methods(session: aiohttp.ClientSession, echo_url: str) -> None:
    got = await call(session, "OPTIONS", echo_url + "/")
    assert (got["method"], got["path"]) == ("OPTIONS", "/")


async def test_repeated_header_values_are_all_visible(session: aiohttp.ClientSession, echo_url: str) -> None:
    headers = CIMultiDict([("X-Dup", "one"), ("X-Dup", "two")])
    got = await call(session, "GET", echo_url + "/get", headers=headers)
    assert got["headers"]["X-Dup"] == "one, two"


async def test_header_names_are_kept_as_received(session: aiohttp.ClientSession, echo_url: str) -> None:
    got = await call(session, "GET", echo_url + "/get", headers={"x-lower-case": "1", "X-Mixed-Case": "2"})
    assert got["headers"]["x-lower-case"] == "1"
    assert got["headers"]["X-Mixed-Case"] == "2"


async def test_undecodable_body_does_not_fail(session: aiohttp.ClientSession, echo_url: str) -> None:
    got = await call(session, "POST", echo_url + "/post", data=b"ok\xff\xfe",
                     headers={"Content-Type": "application/octet-stream"})
    assert got["body"].startswith("ok") and "\ufffd" in got["body"]


def test_main_prints_the_ready_line_and_exits_0_on_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "devtools.echo", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"echo upstream listening on http://127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/get?q=1", timeout=10) as resp:
            got = json.loads(resp.read())
        assert (got["path"], got["args"]) == ("/get", {"q": "1"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
