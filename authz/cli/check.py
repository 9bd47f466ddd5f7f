"""``authz check``: simulate one request and print the decision and why.

    AUTHZ_CHECK_TOKEN=... authz check --target 127.0.0.1:9001 --host api.example.com --path /records/alice \
        [--method GET] [--header NAME=VALUE] [--ext KEY=VALUE] [--principal SPIFFE] [--destination-principal SPIFFE]
    AUTHZ_CHECK_TOKEN=... authz check --config authz.yaml --host ... --path ...

``--target`` sends a real ``Check`` call to a running service (``server.listen``), the CheckRequest Envoy would send
(``--ext``: the route's ``context_extensions``), and prints what Envoy would do with the answer. ``--config`` decides
offline, in this process, with the pipeline the service builds from that file (introspection still goes to the
configured AS; the cache is off, so the AS is always asked), and also prints why: the route rule and its settings,
the token holder's scopes, the policy's decision, the failing stage's detail.

The token comes from an environment variable (``$AUTHZ_CHECK_TOKEN``, or the one ``--token-env`` names), never from
an argument: the process list shows arguments to every user. Without it the request carries no ``Authorization``.
Each check carries a fresh ``x-request-id``, printed: the service's log lines about the check carry it as
``request_id``.

Exit status: 0 allowed, 1 denied, 2 not checked (usage, configuration, service unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse

from authz.cli.check_report import Explanation, decision_lines, response_lines, route_lines
from authz.config import Config, ConfigError, load_config
from authz.credential import token_as_presented
from authz.errors import AuthzError, MalformedCredential
from authz.logs import token_id
from authz.policy.engine import PolicyLoadError

__all__ = ["build_request", "main", "presented_token"]

TOKEN_ENV = "AUTHZ_CHECK_TOKEN"


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authz check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="a running service's gRPC address, HOST:PORT or unix:PATH")
    where.add_argument("--config", help="decide offline with this configuration file")
    parser.add_argument("--host", required=True, help="the request's :authority (Host)")
    parser.add_argument("--path", required=True, help="the request path, with its query if any")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="a request header")
    parser.add_argument("--ext", action="append", default=[], metavar="KEY=VALUE",
                        help="a context extension of the route (Envoy's per-route settings, e.g. required_scopes=read)")
    parser.add_argument("--principal", help="the caller's SPIFFE id (Envoy's source.principal)")
    parser.add_argument("--destination-principal", help="the workload's SPIFFE id (destination.principal)")
    parser.add_argument("--token-env", default=TOKEN_ENV, metavar="NAME",
                        help=f"the environment variable holding the bearer token (default {TOKEN_ENV})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the decision")
    return parser


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} {item!r}: give NAME=VALUE")
        pairs.append((name, value))
    return pairs


def build_request(args: argparse.Namespace, token: str | None, request_id: str) -> CheckRequest:
    """The CheckRequest Envoy would send for this request (headers lower-cased, repeats joined with ``,``)."""
    if not args.path.startswith("/"):
        raise UsageError(f"--path {args.path!r}: must start with /")
    request = CheckRequest()
    http = request.attributes.request.http
    method = args.method.upper()
    http.method, http.host, http.path, http.scheme, http.protocol = method, args.host, args.path, "http", "HTTP/1.1"
    headers = {":authority": args.host, ":method": method, ":path": args.path, ":scheme": "http"}
    for name, value in _pairs(args.header, "--header"):
        name = name.strip().lower()
        if name in ("authorization", "proxy-authorization"):
            raise UsageError(f"--header {name}: the token comes from ${args.token_env}, never from an argument "
                             "(the process list shows arguments)")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    headers["x-request-id"] = request_id
    if token:
        headers["authorization"] = f"Bearer {token}"
    http.headers.update(headers)
    request.attributes.context_extensions.update(dict(_pairs(args.ext, "--ext")))
    if args.principal:
        request.attributes.source.principal = args.principal
    if args.destination_principal:
        request.attributes.destination.principal = args.destination_principal
    return request


def presented_token(value: str) -> str:
    """The token a request carries when it presents ``value`` (a ``Bearer ``/``DPoP `` prefix or a line end pasted
    with it goes, as the request path reads it); anything that is no token is sent as given, for the service to
    refuse as it would a client's."""
    try:
        return token_as_presented(value)
    except MalformedCredential:
        return value.strip()


def _remote(target: str, request: CheckRequest, timeout: float) -> CheckResponse:
    with grpc.insecure_channel(target) as channel:
        response: CheckResponse = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=timeout)
        return response


def _offline_config(config: Config, socket: Path) -> Config:
    """``config`` with nothing this process should not do: no listener but a private unix socket, no admin API,
    metrics, HTTP transport, TLS, workers, cache (so the AS is asked) or policy file watch."""

    def copy(model: Any, **updates: Any) -> Any:
        return model.model_copy(update={k: v for k, v in updates.items() if k in type(model).model_fields})

    server = copy(config.server, listen=f"unix:{socket}", workers=1, tls=None,
                  http=copy(config.server.http, listen=None))
    return copy(config, server=server, admin_listen=None, metrics_listen=None,  # type: ignore[no-any-return]
                cache=copy(config.cache, enabled=False), policy=copy(config.policy, watch_interval_seconds=0))


async def _offline(config: Config, request: CheckRequest) -> tuple[CheckResponse, Explanation]:
    from authz.app import Server
    from authz.log_context import bind_check, unbind_check
    from authz.response import allow_response, deny_response
    from authz.transport.grpc_request import request_info
    from authz.transport.grpc_service import check_header

    explained = Explanation()
    with tempfile.TemporaryDirectory(prefix="authz-check-") as scratch:
        server = Server(_offline_config(config, Path(scratch) / "check.sock"))
        await server.start()
        bound = bind_check(check_header, request)  # the log lines printed meanwhile name the request id
        try:
            authorizer = server.authorizer
            info = request_info(request)
            try:
                explained.route, explained.params = authorizer.routes.resolve(info)
            except AuthzError as exc:
                explained.route_error = exc
            explained.allow = await authorizer.check(info)
            return allow_response(explained.allow), explained
        except AuthzError as exc:
            explained.error = exc
            return deny_response(exc, config.realm), explained
        except Exception as exc:  # what the service would answer 500 to (and log with its traceback)
            explained.error = AuthzError(f"internal error: {type(exc).__name__}: {exc}")
            return deny_response(explained.error, config.realm), explained
        finally:
            unbind_check(bound)
            await server.stop(grace=0)


def _configure_logs() -> None:
    from authz.log_format import configure_logging

    configure_logging("WARNING", "text")  # what goes wrong on the way (AS unreachable, ...), on stderr


def _not_checked(exc: Exception, target: str | None) -> str:
    """Why no decision came: one line."""
    if isinstance(exc, grpc.RpcError):
        code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
        return f"{target}: {code}: the service did not answer"
    if isinstance(exc, ConfigError | PolicyLoadError):
        return f"{'config' if isinstance(exc, ConfigError) else 'policy'} error: {exc}"
    return str(exc) if isinstance(exc, UsageError) else f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = presented_token(os.environ.get(args.token_env, "")) or None
    request_id = str(uuid.uuid4())
    try:
        request = build_request(args, token, request_id)
        lines = [f"request: {request.attributes.request.http.method} {args.host} {args.path}",
                 f"request id: {request_id} (the service's log lines about this check carry it as request_id)",
                 f"token: id {token_id(token)} (from ${args.token_env})" if token else
                 f"token: none (${args.token_env} is not set)"]
        if args.target is not None:
            response = _remote(args.target, request, args.timeout)
            lines.append("route: chosen by the service (authz check --config FILE shows the rule and why)")
            lines += response_lines(response)
        else:
            config = load_config(args.config)
            _configure_logs()
            response, explained = asyncio.run(asyncio.wait_for(_offline(config, request), args.timeout))
            lines += [*route_lines(explained), *decision_lines(explained), *response_lines(response)]
    except (UsageError, ConfigError, PolicyLoadError, grpc.RpcError, OSError, TimeoutError) as exc:
        print(f"authz check: {_not_checked(exc, args.target)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0 if response.HasField("ok_response") else 1
