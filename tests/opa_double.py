"""A double of OPA's REST Data API, for testing the remote engine where no OPA binary can be installed.

It speaks OPA's documented protocol (https://www.openpolicyagent.org/docs/latest/rest-api/#data-api):
``POST /v1/data/{path}`` with ``{"input": ...}`` -> 200 ``{"result": <value>, "decision_id": "..."}``, or 200
``{"decision_id": "..."}`` without ``result`` when the decision is undefined; 400 ``{"code": "invalid_parameter",
"message": ...}`` for a body that is not JSON; 401 ``{"code": "unauthorized", ...}`` when a bearer token is required
and missing or wrong (OPA's ``--authentication=token``); 500 ``{"code": "internal_error", ...}`` when evaluation
fails. ``GET /health`` -> 200 ``{}``. The Rego is real: evaluated by the same regorus engine as the embedded mode.

    python -m tests.opa_double --port 8181 --policies deploy/policies [--token-env OPA_TOKEN] [--latency-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import uuid
from typing import Any

from aiohttp import web

from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import PolicyEvaluationError

__all__ = ["build_app", "main"]


def build_app(engine: EmbeddedEngine, token: str | None = None, latency_ms: float = 0.0) -> web.Application:
    calls: dict[str, int] = {"decisions": 0}

    async def data(request: web.Request) -> web.Response:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"code": "unauthorized", "message": "missing or invalid bearer token"},
                                     status=401)
        try:
            body: Any = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.json_response({"code": "invalid_parameter", "message": "body is not JSON"}, status=400)
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        calls["decisions"] += 1
        decision_id = str(uuid.uuid4())
        path = request.match_info["path"].strip("/")
        try:
            policy_input = body.get("input") if isinstance(body, dict) else None
            evaluation = await engine.evaluate(path, policy_input if isinstance(policy_input, dict) else {})
        except PolicyEvaluationError as exc:
            if "undefined" in str(exc):
                return web.json_response({"decision_id": decision_id})
            return web.json_response({"code": "internal_error", "message": str(exc)}, status=500)
        return web.json_response({"result": evaluation.result, "decision_id": decision_id})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(calls)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/data/{path:.*}", data)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


async def _serve(args: argparse.Namespace) -> None:
    engine = EmbeddedEngine(tuple(args.policies), timeout_seconds=10.0)
    token = os.environ.get(args.token_env) if args.token_env else None
    runner = web.AppRunner(build_app(engine, token, args.latency_ms), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"OPA Data API double listening on http://127.0.0.1:{args.port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--policies", nargs="+", required=True)
    parser.add_argument("--token-env", help="require this environment variable's value as bearer token")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
