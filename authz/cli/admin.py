"""``authz admin``: the cache admin gRPC API (``protos/authz/adminpb/admin.proto``) from the command line.

    authz admin [--admin ADDRESS] stats [--json]
    authz admin [--admin ADDRESS] evict-token [--token-env NAME | --stdin | --token-id HEX]
    authz admin [--admin ADDRESS] evict-subject SUBJECT
    authz admin [--admin ADDRESS] purge

``ADDRESS`` is the service's ``admin_listen`` (``HOST:PORT`` or ``unix:PATH``; default ``$AUTHZ_ADMIN`` or
127.0.0.1:9002). A token to evict is never an argument (the process list shows arguments to every user): it is read
from an environment variable (``$AUTHZ_EVICT_TOKEN``, or the one ``--token-env`` names) or from the first line of
standard input (``--stdin``); ``--token-id`` takes the 12-hex id the service's log lines show (``token_id``) instead.
An eviction reaches every worker and, with the Redis tier, every sidecar before the service answers; when some could
not be reached the service says so and the command exits 1: run it again.

Exit status: 0 done, 1 the call failed (service unreachable, partial eviction), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from authz.adminpb import admin_pb2, admin_pb2_grpc
from authz.credential import token_as_presented
from authz.errors import MalformedCredential

__all__ = ["main"]

DEFAULT_ADMIN = "127.0.0.1:9002"
TOKEN_ENV = "AUTHZ_EVICT_TOKEN"
_TOKEN_ID = re.compile(r"[0-9a-fA-F]{12}")


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authz admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin", default=os.environ.get("AUTHZ_ADMIN") or DEFAULT_ADMIN,
                        help="the service's admin_listen, HOST:PORT or unix:PATH (default: $AUTHZ_ADMIN or "
                             f"{DEFAULT_ADMIN})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="the cache's sizes and counters (of the worker that answers)")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    token = sub.add_parser("evict-token", help="evict one token's cached answers, everywhere")
    source = token.add_mutually_exclusive_group()
    source.add_argument("--token-env", default=TOKEN_ENV, metavar="NAME",
                        help=f"the environment variable holding the token (default {TOKEN_ENV})")
    source.add_argument("--stdin", action="store_true", help="read the token from the first line of stdin")
    source.add_argument("--token-id", metavar="HEX", help="the token's 12-hex id from the logs (token_id)")
    subject = sub.add_parser("evict-subject", help="evict every cached answer about one subject (sub claim)")
    subject.add_argument("subject")
    sub.add_parser("purge", help="evict everything (L1 of every worker and, when configured, Redis)")
    return parser


def _evict_token_request(args: argparse.Namespace) -> tuple[admin_pb2.EvictTokenRequest, str]:
    """The request and how to name its target in the output (never the token)."""
    if args.token_id is not None:
        if not _TOKEN_ID.fullmatch(args.token_id):
            raise UsageError("--token-id: must be the 12 hex digits a log line's token_id shows")
        return admin_pb2.EvictTokenRequest(token_id=args.token_id.lower()), f"token id {args.token_id.lower()}"
    if args.stdin:
        token, where = sys.stdin.readline().strip(), "standard input"
    else:
        token, where = os.environ.get(args.token_env, "").strip(), f"${args.token_env}"
    if not token:
        raise UsageError(f"no token in {where}: set ${TOKEN_ENV} (or --token-env NAME), pipe it with --stdin, "
                         "or give --token-id")
    try:  # the token a request presents: a "Bearer "/"DPoP " prefix copied with it goes, as the request path reads it
        token = token_as_presented(token)
    except MalformedCredential as exc:
        raise UsageError(f"{where} holds no token ({exc.detail}): give the token alone or as its Authorization "
                         "value") from None
    return admin_pb2.EvictTokenRequest(token=token), f"the token from {where}"


def _stats_lines(answer: admin_pb2.StatsResponse, as_json: bool) -> list[str]:
    values: dict[str, Any] = MessageToDict(answer, preserving_proto_field_name=True,
                                           always_print_fields_with_no_presence=True)
    values = {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in values.items()}  # uint64: text
    if as_json:
        return [json.dumps(values, sort_keys=True)]
    return [f"{name}: {str(value).lower() if isinstance(value, bool) else value}" for name, value in values.items()]


def _run(args: argparse.Namespace, stub: admin_pb2_grpc.CacheAdminStub) -> list[str]:
    timeout = args.timeout
    if args.command == "stats":
        return _stats_lines(stub.Stats(admin_pb2.StatsRequest(), timeout=timeout), args.json)
    if args.command == "evict-token":
        request, what = _evict_token_request(args)
        answer = stub.EvictToken(request, timeout=timeout)
        none = "no worker here nor Redis held it (an unknown, mistyped or expired token reads 0 too)"
    elif args.command == "evict-subject":
        if not args.subject:
            raise UsageError("give a subject")
        what = f"subject {args.subject!r}"
        answer = stub.EvictSubject(admin_pb2.EvictSubjectRequest(subject=args.subject), timeout=timeout)
        none = ("no answer cached here nor in Redis has exactly this sub claim (compared as given: case and spaces "
                "count; a token with no sub claim is evicted by token or --token-id)")
    else:
        what, none = "everything", "nothing was cached here nor in Redis"
        answer = stub.Purge(admin_pb2.PurgeRequest(), timeout=timeout)
    return [f"evicted {answer.evicted} cache entries: {what}" + (f": {none}" if answer.evicted == 0 else "")]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with grpc.insecure_channel(args.admin) as channel:
            lines = _run(args, admin_pb2_grpc.CacheAdminStub(channel))
    except UsageError as exc:
        print(f"authz admin {args.command}: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        print(f"authz admin {args.command}: {args.admin}: {code}: {detail}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
