"""A no-op Envoy ext_authz v3 gRPC service: the floor for any Python ext_authz (bench/envoy_bench.py, scenario b).

Part of the benchmark, not the product. Every ``Check`` is answered OK with one fixed ``Authorization: Bearer <JWT>``
header (overwrite semantics, as phantom-authz sends it; the value has the size of the dev AS's RS256 JWTs) and
nothing else: no parsing, no cache, no I/O. What it costs is grpc.aio plus protobuf plus the event loop.

To be a fair floor it runs the way phantom-authz runs, decided when it starts (others edit authz/ meanwhile):

- the server options: the keyword arguments of the first ``grpc.aio.server(...)`` call in ``authz/app.py``
  (literals, or module-level names / ``self`` attributes bound to them; of a conditional expression, the ``else``
  branch: phantom-authz's single-process default), read with ``ast`` so nothing of phantom-authz is imported;
- the event loop: uvloop if ``authz/app.py`` or ``authz/__main__.py`` import it, else asyncio's default.

    python bench/noop_authz.py --port 9011
    python bench/noop_authz.py --describe      # print what it would use (JSON) and exit
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import importlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse, OkHttpResponse
from google.rpc import code_pb2, status_pb2

__all__ = ["FIXED_JWT", "NoopAuthorization", "main", "phantom_runtime"]

ROOT = Path(__file__).resolve().parents[1]
SERVER_PY = ROOT / "authz" / "transport" / "grpc_server.py"
MAIN_PY = ROOT / "authz" / "__main__.py"
_SERVER_KWARGS = ("options", "maximum_concurrent_rpcs", "compression")  # grpc.aio.server keywords we copy


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# Shaped like the dev AS's answers: RS256 header with a kid, its usual claims, a 256-byte signature (~650 chars).
FIXED_JWT = ".".join((
    _b64(b'{"alg":"RS256","typ":"JWT","kid":"noop-bench-key-000000000000000000"}'),
    _b64(json.dumps({"iss": "http://127.0.0.1:8443/oauth/v2/oauth-anonymous", "sub": "demo-client",
                     "aud": "api.example.com", "scope": "read", "client_id": "demo-client", "exp": 4102444800,
                     "iat": 1700000000, "jti": "0" * 32}).encode()),
    _b64(b"\x00" * 256),
))


def _is_grpc_aio_server(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "server" and isinstance(func.value, ast.Attribute)
            and func.value.attr == "aio")


def _module_literals(tree: ast.Module) -> dict[str, Any]:
    """Module-level ``NAME = <literal>`` (and annotated) assignments."""
    found: dict[str, Any] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = list(node.targets), node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                try:
                    found[target.id] = ast.literal_eval(value)
                except ValueError:
                    continue
    return found


def _self_attributes(tree: ast.Module) -> dict[str, ast.expr]:
    """``self.NAME = <expr>`` assignments anywhere in the file (the last one wins)."""
    found: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id == "self":
                    found[target.attr] = node.value
    return found


def _evaluate(node: ast.expr, names: dict[str, Any], attrs: dict[str, ast.expr], depth: int = 0) -> Any:
    """A literal, a module-level name or ``self.attr`` bound to one, lists/tuples of those; for a conditional
    expression the ``else`` branch (phantom-authz's single-process default, which is how the no-op runs)."""
    if depth > 8:
        raise ValueError("too deep")
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ValueError(f"{node.id} is not a module-level literal")
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        if node.attr in attrs:
            return _evaluate(attrs[node.attr], names, attrs, depth + 1)
        raise ValueError(f"self.{node.attr} is never assigned")
    if isinstance(node, ast.IfExp):
        return _evaluate(node.orelse, names, attrs, depth + 1)
    if isinstance(node, ast.List | ast.Tuple):
        items = [_evaluate(item, names, attrs, depth + 1) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def _uses_uvloop(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "uvloop" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "uvloop":
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "uvloop":
            return True
    return False


def phantom_runtime() -> dict[str, Any]:
    """What phantom-authz's sources say right now: grpc.aio.server keyword arguments and whether uvloop is used."""
    server_source = SERVER_PY.read_text()
    tree = ast.parse(server_source)
    names = _module_literals(tree)
    attrs = _self_attributes(tree)
    kwargs: dict[str, Any] = {}
    unresolved: list[str] = []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_grpc_aio_server(n)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    if calls:
        for keyword in calls[0].keywords:
            if keyword.arg not in _SERVER_KWARGS:
                unresolved.append(str(keyword.arg))
                continue
            try:
                kwargs[keyword.arg] = _evaluate(keyword.value, names, attrs)
            except ValueError:
                unresolved.append(keyword.arg)
    if isinstance(kwargs.get("options"), list | tuple):
        kwargs["options"] = [tuple(option) for option in kwargs["options"]]
    uvloop = _uses_uvloop(server_source) or (MAIN_PY.exists() and _uses_uvloop(MAIN_PY.read_text()))
    return {"server_kwargs": kwargs, "unresolved_kwargs": unresolved, "uvloop": uvloop,
            "found_grpc_aio_server": bool(calls)}


class NoopAuthorization(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """OK with the fixed header, for every request; one prebuilt response."""

    def __init__(self) -> None:
        header = HeaderValueOption(header=HeaderValue(key="authorization", value=f"Bearer {FIXED_JWT}"),
                                   append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
        self._response = CheckResponse(status=status_pb2.Status(code=code_pb2.OK),
                                       ok_response=OkHttpResponse(headers=[header]))

    async def Check(self, request: CheckRequest, context: grpc.aio.ServicerContext) -> CheckResponse:
        return self._response


async def serve(host: str, port: int, server_kwargs: dict[str, Any]) -> None:
    server = grpc.aio.server(**server_kwargs)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(NoopAuthorization(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"noop ext_authz listening on {host}:{port} loop={type(loop).__module__}.{type(loop).__name__} "
          f"server_kwargs={server_kwargs!r}", flush=True)
    await stop.wait()
    await server.stop(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9011)
    parser.add_argument("--describe", action="store_true", help="print the runtime it copies (JSON) and exit")
    args = parser.parse_args(argv)
    runtime = phantom_runtime()
    if args.describe:
        print(json.dumps(runtime))
        return 0
    coroutine = serve(args.host, args.port, runtime["server_kwargs"])
    if runtime["uvloop"]:
        uvloop: Any = importlib.import_module("uvloop")
        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
