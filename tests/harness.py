"""Real processes on loopback for service and end-to-end tests: dev AS, echo upstream, phantom-authz, Envoy.

A ``Stack`` runs in one of Envoy's two ext_authz modes: ``grpc`` (``envoy/envoy.yaml``, route settings as
``context_extensions``) or ``http`` (``envoy/envoy-http.yaml``, phantom-authz's ``server.http.listen`` on a free
port, route settings in the check path's prefix). End-to-end tests run in both (``parametrize_modes``); the
helpers below say, per mode, what a client sees where the two differ. ``full()`` and a ``with stack.together():``
block start their processes side by side; ``wait_until`` polls for a state instead of sleeping.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import signal
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml

from authz.adminpb import admin_pb2, admin_pb2_grpc
from devtools.envoy_config import HTTP_PATH_PREFIX, TEMPLATES, http_path_prefix, render_envoy_config
from devtools.processes import Process, envoy_binary, free_port, wait_for_port
from tests.inprocess import InProcessAuthz

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_SECRET = "gateway-test-secret"
MODES = ("grpc", "http")  # Envoy's ext_authz grpc_service / http_service
T = TypeVar("T")


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:300]!r}>"


def http_request(method: str, port: int, path: str, headers: dict[str, str] | None = None,
                 body: bytes | str | None = None, timeout: float = 15.0) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def wait_until(condition: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Poll ``condition`` (every 20 ms) until it holds, instead of sleeping a fixed time, and return what it
    returned then; fail saying ``what`` was awaited once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.02)
    return value


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def consecutive_free_ports(count: int) -> int:
    """A port p with p .. p + count - 1 all free right now."""
    for _ in range(50):
        base = free_port()
        probes = [socket.socket() for _ in range(count - 1)]
        try:
            for offset, probe in enumerate(probes, start=1):
                probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


class Stack:
    """Start what a test needs; ``stop()`` stops all of it, in reverse order."""

    def __init__(self, workdir: Path, mode: str = "grpc") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.dir = workdir
        self.mode = mode
        self.procs: list[Process] = []
        self.as_port = 0
        self.echo_port = 0
        self.authz_port = 0  # gRPC (always listening)
        self.http_port = 0  # HTTP ext_authz transport (http mode only)
        self.envoy_port = 0
        self.envoy_admin_port = 0
        self.authz: Process | InProcessAuthz | None = None
        self.dev_as: Process | None = None
        self.admin_port = free_port()  # phantom-authz's cache admin API; the dev AS's revocation hook calls it
        self.metrics_port = free_port()
        self._starting: list[Process] | None = None  # inside ``together()``: spawned, not yet awaited

    def _start(self, proc: Process) -> Process:
        self.procs.append(proc)
        if self._starting is None:
            return proc.start()
        self._starting.append(proc.spawn())
        return proc

    @contextlib.contextmanager
    def together(self) -> Iterator[Stack]:
        """Start what the block starts side by side: each ``start_*`` in it spawns its process, and the block's end
        waits until every one listens. None needs another up to start: ports are chosen at spawn, and
        phantom-authz reaches the AS (JWKS, metadata) only when a check needs it."""
        self._starting = []
        try:
            yield self
            for proc in self._starting:
                proc.await_ready()
        finally:
            started, self._starting = self._starting, None
        if self.authz in started:
            self._await_http_transport()

    def start_dev_as(self, *args: str) -> Process:
        self.as_port = free_port()
        self.dev_as = self._start(Process(
            "dev-as", [sys.executable, "-m", "devtools.auth_server", "--port", str(self.as_port),
                       "--revocation-hook", f"127.0.0.1:{self.admin_port}", *args],
            self.as_port, self.dir, env={"DEV_AS_GATEWAY_SECRET": GATEWAY_SECRET}))
        return self.dev_as

    def start_echo(self) -> Process:
        self.echo_port = free_port()
        return self._start(Process("echo", [sys.executable, "-m", "devtools.echo", "--port", str(self.echo_port)],
                                   self.echo_port, self.dir))

    def authz_config(self, **overrides: Any) -> dict[str, Any]:
        as_entry = {
            "dialect": "phantom",
            "introspection_endpoint": f"http://127.0.0.1:{self.as_port}/oauth/v2/oauth-introspect",
            "client_id": "gateway-client",
            "client_secret_env": "TEST_GATEWAY_SECRET",
            "timeout_seconds": 1.0,
            "retry_after_seconds": 5,
            "issuer": f"http://127.0.0.1:{self.as_port}/oauth/v2/oauth-anonymous",
            "jwks_uri": f"http://127.0.0.1:{self.as_port}/oauth/v2/oauth-anonymous/jwks",
            "audiences": ["api.example.com"],
        }
        as_entry.update(overrides.pop("as_overrides", {}))
        as_entry = {k: v for k, v in as_entry.items() if v is not None}  # None: leave the key out
        config: dict[str, Any] = {
            "server": {"listen": f"127.0.0.1:{self.authz_port}", "shutdown_grace_seconds": 5, "log_level": "DEBUG"},
            "realm": "api",
            "headers_to_remove": ["x-user-id"],
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "metrics_listen": f"127.0.0.1:{self.metrics_port}",
            "authorization_servers": {"dev": as_entry},
            "policy": {"paths": [str(ROOT / "deploy" / "policies")], "watch_interval_seconds": 0,
                       "decision_log": "full"},
        }
        config.update(overrides)
        return config

    def start_authz(self, secret: str = GATEWAY_SECRET, env: dict[str, str] | None = None, in_process: bool = False,
                    **overrides: Any) -> Process | InProcessAuthz:
        """phantom-authz; in http mode its HTTP transport listens too (``server.http.listen``, a free port).
        ``in_process``: the same server on a thread of the test process (``tests/inprocess.py``)."""
        self.authz_port = free_port()
        config = self.authz_config(**overrides)
        if self.mode == "http":
            self.http_port = free_port()
            config["server"]["http"] = {**config["server"].get("http", {}), "listen": f"127.0.0.1:{self.http_port}"}
        path = self.dir / "authz.yaml"
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        env = {"TEST_GATEWAY_SECRET": secret, **(env or {})}
        self.authz = self._start(InProcessAuthz(path, env, self.authz_port) if in_process else Process(
            "authz", [sys.executable, "-m", "authz", "serve", "--config", str(path)], self.authz_port, self.dir, env))
        if self._starting is None:
            self._await_http_transport()
        return self.authz

    def _await_http_transport(self) -> None:
        if self.mode == "http" and isinstance(self.authz, Process):  # in process: started means every listener is up
            try:
                wait_for_port(self.http_port, 10.0, self.authz.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"authz HTTP transport did not start: {exc}\n{self.authz.log_tail()}") from None

    def start_workers(self, server: dict[str, Any], **overrides: Any) -> Process:
        """``authz serve`` with ``server.workers`` > 1 (the supervising parent), once every worker is up: worker i
        binds the admin port + i, so the admin base is a port with its neighbours free (metrics off for the same
        reason)."""
        workers = int(server["workers"])
        self.authz_port = int(server["listen"].rpartition(":")[2])
        self.admin_port = consecutive_free_ports(workers)
        config = self.authz_config(server={"shutdown_grace_seconds": 5, **server}, **overrides)
        config["metrics_listen"] = None  # off: the default port would be shared by every stack's workers
        path = self.dir / "workers.yaml"
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        parent = self._start(Process("authz-workers", [sys.executable, "-m", "authz", "serve", "--config", str(path)],
                                     self.authz_port, self.dir, env={"TEST_GATEWAY_SECRET": GATEWAY_SECRET}))
        for index in range(workers):  # the parent's port answers once one worker is up; wait for all of them
            wait_for_port(self.admin_port + index, 20.0, parent.proc)
        return parent

    def worker_cache_stats(self, workers: int) -> list[Any]:
        """Each worker's cache statistics from its own admin API (``admin_pb2.StatsResponse``)."""
        answers = []
        for index in range(workers):
            with grpc.insecure_channel(f"127.0.0.1:{self.admin_port + index}") as channel:
                answers.append(admin_pb2_grpc.CacheAdminStub(channel).Stats(admin_pb2.StatsRequest(), timeout=5))
        return answers

    def start_envoy(self, mutate: Callable[[dict[str, Any]], None] | None = None) -> Process:
        """Real Envoy with ``envoy/envoy.yaml`` (http mode: ``envoy/envoy-http.yaml``) re-pointed at this stack;
        ``mutate`` edits the config dict (``set_route_settings``/``add_route`` work in both modes)."""
        self.envoy_port = free_port()
        self.envoy_admin_port = admin = free_port()
        cfg = render_envoy_config(self.dir / "envoy.yaml", listen_port=self.envoy_port, admin_port=admin,
                                  clusters={"phantom_authz": self.authz_port,
                                            "phantom_authz_http": self.http_port or free_port(),
                                            "echo": self.echo_port},
                                  template=TEMPLATES[self.mode], mutate=mutate)
        return self._start(Process(
            "envoy", [envoy_binary(), "-c", str(cfg), "--log-level", "warn", "--concurrency", "1",
                      "--base-id", str(admin)], self.envoy_port, self.dir))

    def full(self, *as_args: str, mutate: Callable[[dict[str, Any]], None] | None = None,
             **authz_overrides: Any) -> Stack:
        """Dev AS, echo, phantom-authz and Envoy (its config edited by ``mutate``), started side by side."""
        with self.together():
            self.start_dev_as(*as_args)
            self.start_echo()
            self.start_authz(**authz_overrides)
            self.start_envoy(mutate=mutate)
        return self

    def token(self, scope: str = "read", client: tuple[str, str] = ("demo-client", "demo-secret"),
              subject: str | None = None) -> str:
        form = {"grant_type": "client_credentials", "scope": scope}
        if subject is not None:  # the dev AS lets demos act as a user
            form["subject"] = subject
        resp = http_request("POST", self.as_port, "/oauth/v2/oauth-token",
                            headers={"Authorization": basic(*client),
                                     "Content-Type": "application/x-www-form-urlencoded"},
                            body=urllib.parse.urlencode(form))
        assert resp.status == 200, resp
        return str(resp.json()["access_token"])

    def envoy_stats(self) -> dict[str, int]:
        """Envoy's counters and gauges (admin ``/stats``), by name."""
        text = http_request("GET", self.envoy_admin_port, "/stats").body.decode()
        stats = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.isdigit():
                stats[name] = int(value)
        return stats

    def as_stats(self) -> dict[str, Any]:
        return http_request("GET", self.as_port, "/stats").json()  # type: ignore[no-any-return]

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None,
            method: str = "GET", body: str | None = None) -> Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return http_request(method, self.envoy_port, path, all_headers, body)

    def stop(self) -> None:
        """Stop every process, all at once (each gets SIGTERM, then its own grace before SIGKILL)."""
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


# --- Envoy configs of both modes, as ``start_envoy(mutate=...)`` edits them ---------------------------------------

EXT_AUTHZ = "envoy.filters.http.ext_authz"
PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    """The listener's HttpConnectionManager."""
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    found: dict[str, Any] = chain["filters"][0]["typed_config"]
    return found


def ext_authz_filter(config: dict[str, Any]) -> dict[str, Any]:
    """The ExtAuthz filter's typed_config."""
    found: dict[str, Any] = next(f["typed_config"] for f in hcm(config)["http_filters"] if f["name"] == EXT_AUTHZ)
    return found


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The virtual host's routes, in match order."""
    found: list[dict[str, Any]] = hcm(config)["route_config"]["virtual_hosts"][0]["routes"]
    return found


def config_mode(config: dict[str, Any]) -> str:
    return "http" if "http_service" in ext_authz_filter(config) else "grpc"


def route_settings(config: dict[str, Any], index: int) -> dict[str, str]:
    """Route ``index``'s phantom-authz settings: its context_extensions, or (http) what its path_prefix encodes."""
    check = routes(config)[index]["typed_per_filter_config"][EXT_AUTHZ]["check_settings"]
    if config_mode(config) == "grpc":
        return dict(check["context_extensions"])
    prefix = check["http_service"]["path_prefix"]
    assert prefix.startswith(HTTP_PATH_PREFIX), prefix
    return dict(urllib.parse.parse_qsl(prefix[len(HTTP_PATH_PREFIX):].removeprefix(";"), keep_blank_values=True))


def check_settings(config: dict[str, Any], settings: dict[str, str], upstream_headers: tuple[str, ...] = (),
                   client_headers_on_success: tuple[str, ...] = ()) -> dict[str, Any]:
    """An ExtAuthzPerRoute.check_settings carrying ``settings``. In HTTP mode it repeats the filter's http_service
    (a route's replaces the filter's whole) with the settings in path_prefix, and lets the headers a policy adds
    through: Envoy passes on only the headers its authorization_response lists (gRPC mode passes all)."""
    if config_mode(config) == "grpc":
        return {"context_extensions": dict(settings)}
    service = json.loads(json.dumps(ext_authz_filter(config)["http_service"]))
    service["path_prefix"] = http_path_prefix(settings)
    answer = service.setdefault("authorization_response", {})
    answer.setdefault("allowed_upstream_headers", {"patterns": []})["patterns"] += [
        {"exact": name} for name in upstream_headers]
    if client_headers_on_success:
        answer["allowed_client_headers_on_success"] = {"patterns": [{"exact": n} for n in client_headers_on_success]}
    return {"http_service": service}


def set_route_settings(config: dict[str, Any], index: int, settings: dict[str, str]) -> None:
    """Replace route ``index``'s phantom-authz settings (both modes)."""
    per_route = routes(config)[index]["typed_per_filter_config"][EXT_AUTHZ]
    per_route["check_settings"] = check_settings(config, settings)


def add_route(prefix: str, settings: dict[str, str], upstream_headers: tuple[str, ...] = (),
              client_headers_on_success: tuple[str, ...] = ()) -> Callable[[dict[str, Any]], None]:
    """A ``mutate`` that puts a route to the echo upstream first, with these phantom-authz settings (both modes)."""
    def mutate(config: dict[str, Any]) -> None:
        per_route = {"@type": PER_ROUTE_TYPE,
                     "check_settings": check_settings(config, settings, upstream_headers, client_headers_on_success)}
        routes(config).insert(0, {"match": {"prefix": prefix}, "route": {"cluster": "echo"},
                                  "typed_per_filter_config": {EXT_AUTHZ: per_route}})
    return mutate


# --- what a client sees, per mode, where the two differ --------------------------------------------------------------

def assert_authz_error(resp: Response, mode: str, status: int, retry_after: str | None = None) -> None:
    """phantom-authz decided ``status`` (a 5xx) with a JSON ``server_error`` body (and ``retry_after``).

    grpc: the client gets exactly that. http: Envoy 1.40 reads any 5xx from an HTTP authorization service as an
    authorization *error*, not a denial, and answers ``status_on_error`` (503 in envoy-http.yaml) itself: none of
    phantom-authz's headers or body reach the client."""
    assert "www-authenticate" not in resp.headers, resp
    if mode == "grpc":
        assert resp.status == status, resp
        assert resp.headers["content-type"] == "application/json", resp
        assert resp.json()["error"] == "server_error", resp
        assert resp.headers.get("retry-after") == retry_after, resp
    else:
        assert resp.status == 503, resp
        assert "retry-after" not in resp.headers and "content-type" not in resp.headers, resp
        assert resp.body == b"", resp


def parametrize_modes(metafunc: Any) -> None:
    """``pytest_generate_tests`` of the directories whose tests go through Envoy (tests/e2e, tests/interop): a test
    using the ``mode`` fixture (directly or via ``stack``/``stack_factory``) runs once per mode, ids ``grpc`` and
    ``http``; ``@pytest.mark.grpc_only("reason")`` / ``@pytest.mark.http_only("reason")`` keep it to one mode."""
    if "mode" not in metafunc.fixturenames:
        return
    modes = list(MODES)
    for only in MODES:
        marker = metafunc.definition.get_closest_marker(f"{only}_only")
        if marker is None:
            continue
        if not (marker.args and str(marker.args[0]).strip()):
            raise ValueError(f"{metafunc.definition.nodeid}: @pytest.mark.{only}_only needs a reason")
        modes = [m for m in modes if m == only]
    if not modes:
        raise ValueError(f"{metafunc.definition.nodeid}: marked for no mode at all")
    metafunc.parametrize("mode", modes, indirect=True, scope="module")
