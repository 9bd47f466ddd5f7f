"""The quickstart's echo upstream (like httpbin's ``/get``): it answers every request with what it received.

Any method, any path -> 200 JSON ``{"method", "path", "raw_path", "args", "headers", "body"}``:

- ``path``: percent-decoded; ``raw_path``: the request target's path and query exactly as received;
- ``args``: the query string as a dict; a key given more than once maps to the list of its values;
- ``headers``: the request headers as received (names as aiohttp gives them; a repeated header's values are
  joined with ", ", so a duplicated header is visible);
- ``body``: the request body as text (undecodable bytes replaced), "" when there is none.

Development and test use only. Run it with ``python -m devtools.echo --port 8080`` (``--port 0``: a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

__all__ = ["bound_port", "build_app", "echo", "main", "start"]


async def echo(request: web.Request) -> web.Response:
    args: dict[str, str | list[str]] = {}
    for key in dict.fromkeys(request.query.keys()):
        values = request.query.getall(key)
        args[key] = values[0] if len(values) == 1 else list(values)
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raw = await request.read() if request.can_read_body else b""
    body = raw.decode(request.charset or "utf-8", errors="replace") if raw else ""
    return web.json_response({"method": request.method, "path": request.path, "raw_path": request.raw_path,
                              "args": args, "headers": headers, "body": body})


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (the real one when the requested port was 0)."""
    return int(runner.addresses[0][1])


async def start(host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Listen on ``host:port``; ``bound_port(runner)`` gives the port; stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(build_app())
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = await start(host, port)
    try:
        shown = f"[{host}]" if ":" in host else host
        print(f"echo upstream listening on http://{shown}:{bound_port(runner)}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devtools.echo", description="echo upstream for the quickstart")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port))
    except OSError as exc:
        print(f"echo upstream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
