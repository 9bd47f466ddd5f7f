"""The process: grpc.aio server with the Authorization and health services, the admin API, /metrics, lifecycle.

Shutdown on SIGTERM/SIGINT follows gRPC's graceful pattern: health goes NOT_SERVING, the server stops taking new
RPCs, in-flight checks finish (up to ``server.shutdown_grace_seconds``), the HTTP session closes, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
from aiohttp import web

from authz.admin import CacheAdminService
from authz.adminpb import admin_pb2_grpc
from authz.cache import IntrospectionCache, RedisTier
from authz.config import AuthorizationServerConfig, Config, PolicyConfig
from authz.dpop import ReplayCache
from authz.introspection import Authority
from authz.introspection.jwks import KeySet
from authz.log_context import add_trace_id_source
from authz.metrics import Metrics
from authz.pipeline import AuthorityLike, Authorizer
from authz.policy.embedded import EmbeddedEngine
from authz.policy.jwt_builtins import JwtBuiltins
from authz.policy.remote import RemoteEngine
from authz.policy.stage import PolicyStage
from authz.reload import ConfigReloader
from authz.tracing import build_tracing
from authz.transport.grpc_server import AUTHORIZATION_SERVICE, GrpcTransport, bind
from authz.transport.http_gaps import refuse_http_gaps
from authz.transport.http_server import HttpTransport
from authz.transport.tls import ServerTls
from authz.workers import SIDECAR_ENV, WORKER_ENV, offset_address

if TYPE_CHECKING:
    from authz.tracing.otel import Tracing

__all__ = ["Server", "run"]

log = logging.getLogger("authz.app")

# an AS: its settings, its authority, and that authority behind the cache
_Built = tuple[AuthorizationServerConfig, Authority, AuthorityLike]


class Server:
    """Owns the gRPC servers, the outbound HTTP session, the cache and the metrics endpoint."""

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        index = os.environ.get(WORKER_ENV)
        self.worker_index = int(index) if index is not None and config.server.workers > 1 else None
        self.port: int | None = None
        self.metrics = Metrics()
        self.cache: IntrospectionCache | None = None
        self._servers: list[grpc.aio.Server] = []
        self._session: aiohttp.ClientSession | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._grpc: GrpcTransport | None = None
        self._key_sets: list[KeySet] = []
        self.policy_engine: EmbeddedEngine | None = None
        self._watcher: asyncio.Future[None] | None = None
        self.http: HttpTransport | None = None
        self.tracing: Tracing | None = None  # tracing.enabled: spans for each check (authz.tracing)
        self._untrace_logs: Callable[[], None] | None = None
        self.tls: ServerTls | None = None  # server.tls, shared by both listeners
        self.dpop_replay: ReplayCache | None = None  # DPoP jti values seen (shared through cache.redis when set)
        self.config_path = config_path  # live reload from this file (authz.reload), when given
        self.reloader: ConfigReloader | None = None
        self._config_watch: asyncio.Future[None] | None = None
        self._built: dict[str, _Built] = {}
        self._policy: tuple[PolicyConfig, PolicyStage | None] | None = None

    def _cache(self) -> IntrospectionCache | None:
        settings = self.config.cache
        if not settings.enabled:
            return None
        redis = RedisTier(settings.redis, self.metrics) if settings.redis.enabled else None
        # the workers of one sidecar share one origin: they relay evictions to each other over the admin API
        cache = IntrospectionCache(settings, self.metrics, redis, origin=os.environ.get(SIDECAR_ENV))
        if self.tracing is not None:
            cache.on_lookup = self.tracing.note_cache
        return cache

    def _authorities(self, config: Config) -> dict[str, _Built]:
        """One authority per configured AS, behind the cache; an AS a reload left unchanged keeps its authority (its
        keys; its cache entries live on anyway, keyed by the AS's whole configuration). Nothing runs yet: the new
        ones start, and the ones they replace retire, in ``_use_authorities``, once the whole pipeline is built."""
        assert self._session is not None
        built = {}
        for name, settings in config.authorization_servers.items():
            kept = self._built.get(name)
            if kept is None or kept[0] != settings:
                authority = Authority(settings, self._session, tracing=self.tracing)
                kept = (settings, authority, self.cache.wrap(authority) if self.cache is not None else authority)
            built[name] = kept
        return built

    def _use_authorities(self, built: dict[str, _Built]) -> None:
        for name, (_, authority, _) in built.items():  # the TLS files' watch of each new one; the old ones' ends
            previous = self._built.get(name)
            if previous is None or previous[1] is not authority:
                authority.start(self.metrics)
        for name, (_, authority, _) in self._built.items():
            if name not in built or built[name][1] is not authority:
                authority.retire()
        self._built = built
        self._key_sets = [a.keys for _, a, _ in built.values() if a.keys is not None]

    async def start(self) -> None:
        self.tracing = build_tracing(self.config.tracing)
        if self.tracing is not None:  # log lines carry the current span's trace id
            self._untrace_logs = add_trace_id_source(self.tracing.current_trace_id)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=300),
            raise_for_status=False,
            # tracing: every AS call (and a remote OPA's) carries the current span's context
            trace_configs=[self.tracing.trace_config()] if self.tracing is not None else None,
        )
        try:
            await self._start()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _start(self) -> None:
        assert self._session is not None
        self.cache = self._cache()
        authorizer = self._authorizer(self.config)
        self.authorizer = authorizer
        self.dpop_replay = authorizer.dpop.replay = ReplayCache.for_config(self.config.dpop, self.config.cache.redis,
                                                                           self.config.server.workers)
        reloads = self.metrics.listener_tls_reloads
        self.tls = None if self.config.server.tls is None else ServerTls(
            self.config.server.tls, counted=lambda result: reloads.labels(result).inc())
        self._grpc = GrpcTransport(authorizer, self.config.server.listen, reuse_port=self.worker_index is not None,
                                   max_receive_bytes=self.config.server.max_receive_bytes, tls=self.tls)
        self._servers.append(self._grpc.server)
        if self.config.server.http.enabled:
            self.http = HttpTransport(authorizer, self.config.server.http, reuse_port=self.worker_index is not None,
                                      shutdown_grace_seconds=self.config.server.shutdown_grace_seconds, tls=self.tls)
            await self.http.start()
        self.port = self._grpc.port
        if self.config.admin_listen is not None and self.cache is not None:
            admin = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            self._servers.append(admin)
            siblings = [offset_address(self.config.admin_listen, i) for i in range(self.config.server.workers)
                        if self.worker_index is not None and i != self.worker_index]
            admin_pb2_grpc.add_CacheAdminServicer_to_server(CacheAdminService(self.cache, siblings), admin)
            bind(admin, self._own(self.config.admin_listen))
        if self.cache is not None:
            self.cache.listen()  # evictions broadcast by other sidecars through Redis
        if self.config.metrics_listen is not None:
            await self._serve_metrics(self._own(self.config.metrics_listen))
        for s in self._servers:
            await s.start()
        await self._grpc.serving()
        if self.tls is not None:
            self.tls.start()  # watch the certificate files for a rotation
        if self.config_path is not None:
            self.reloader = ConfigReloader(self.config_path, self.config, self.reconfigure, self.metrics)
            interval = self.config.server.config_watch_interval_seconds
            if interval > 0:
                self._config_watch = asyncio.ensure_future(self.reloader.watch(interval))

    async def __aenter__(self) -> Server:
        """``async with Server(config) as server:`` serves inside the block and drains at its end (``run`` adds
        the process around it: signals, the collector settings, the log lines; tests/inprocess.py runs it bare)."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _authorizer(self, config: Config) -> Authorizer:
        """The pipeline for ``config``: at start, and for each reload (nothing of the running one changes until it
        is built: a policy that does not compile raises here)."""
        policy = self._policy_stage(config)
        engine = policy.engine if policy is not None and isinstance(policy.engine, EmbeddedEngine) else None
        if config.server.http.enabled:  # policies that read what HTTP mode does not send
            refuse_http_gaps(config, engine)
        built = self._authorities(config)
        authorities = {name: wrapped for name, (_, _, wrapped) in built.items()}
        if self.tracing is None:
            authorizer = Authorizer(config, authorities, policy, self.metrics)
        else:
            from authz.tracing.check import TracedAuthorizer  # needs the otel extra, so only when tracing is on

            authorizer = TracedAuthorizer(self.tracing, config, authorities, policy, self.metrics)
        if self.dpop_replay is not None:
            authorizer.dpop.replay = self.dpop_replay
        # built whole: only now does anything of the running pipeline change
        self._use_authorities(built)
        if self._policy is None or self._policy[1] is not policy:  # a new stage: its engine's file watch
            if self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None
            self.policy_engine = engine
            if engine is not None and config.policy.watch_interval_seconds > 0:
                self._watcher = asyncio.ensure_future(engine.watch(config.policy.watch_interval_seconds))
        self._policy = (config.policy, policy)
        return authorizer

    def reconfigure(self, config: Config) -> None:
        """Live reload (``authz.reload``): the checks that start from now on use a pipeline built from ``config``;
        checks in flight finish on the one they started with. Listeners, workers, TLS, tracing and the cache's tiers
        keep their running settings (the reloader names them)."""
        authorizer = self._authorizer(config)
        self.config = config
        if self.cache is not None:
            self.cache.reconfigure(config.cache)
        self.authorizer = authorizer
        if self._grpc is not None:
            self._grpc.service.authorizer = authorizer
        if self.http is not None:
            self.http.authorizer = authorizer
        logging.getLogger().setLevel(config.server.log_level)

    def reload(self, why: str) -> None:
        """SIGHUP: the configuration file (when the server has one) and the policy files are read again."""
        if self.reloader is not None:
            self.reloader.reload(why)
        self.reload_policies()

    def _own(self, address: str) -> str:
        """This worker's copy of a per-process address (admin, metrics)."""
        return address if self.worker_index is None else offset_address(address, self.worker_index)

    def _policy_stage(self, config: Config) -> PolicyStage | None:
        """The policy stage for ``config``: the running one when a reload left ``policy`` unchanged."""
        settings = config.policy
        if self._policy is not None and self._policy[0] == settings:
            return self._policy[1]
        if settings.engine == "embedded":
            def key_lookup(kid: str | None, alg: str) -> Any:  # io.jwt.* built-ins: the keys our ASes published
                return next((k for k in (s.cached_key(kid, alg) for s in self._key_sets) if k is not None), None)

            engine = EmbeddedEngine(settings.paths, settings.timeout_seconds, JwtBuiltins(key_lookup),
                                    settings.decision_cache_size, settings.decision_cache_max_bytes)
            return PolicyStage(settings, engine, self.tracing, self.metrics)
        if settings.engine == "remote":
            assert settings.remote.url is not None
            assert self._session is not None
            return PolicyStage(settings, RemoteEngine(settings.remote.url, settings.timeout_seconds,
                                                      settings.remote.token, self._session), self.tracing, self.metrics)
        return None

    def reload_policies(self) -> None:
        if self.policy_engine is not None:
            self.policy_engine.reload()

    async def _serve_metrics(self, address: str) -> None:
        async def metrics(request: web.Request) -> web.Response:
            if self.cache is not None:
                for kind, store in (("positive", self.cache.positive), ("negative", self.cache.negative)):
                    self.metrics.cache_entries.labels(kind).set(len(store))
                    self.metrics.cache_bytes.labels(kind).set(store.bytes)
            return web.Response(body=self.metrics.exposition(), content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._metrics_runner = web.AppRunner(app, access_log=None)
        await self._metrics_runner.setup()
        if address.startswith("unix:"):
            site: web.BaseSite = web.UnixSite(self._metrics_runner, address[len("unix:"):])
        else:
            host, _, port = address.rpartition(":")
            site = web.TCPSite(self._metrics_runner, host.strip("[]"), int(port))
        await site.start()

    async def stop(self, grace: float | None = None) -> None:
        if self._grpc is not None:
            await self._grpc.draining()
        for task in (self._watcher, self._config_watch):
            if task is not None:
                task.cancel()
        if self.tls is not None:
            self.tls.stop()
        grace = self.config.server.shutdown_grace_seconds if grace is None else grace
        stops = [s.stop(grace) for s in self._servers]
        if self.http is not None:
            stops.append(self.http.stop(grace))  # a reload may have changed it since the start
        await asyncio.gather(*stops)
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self.cache is not None and self.cache.redis is not None:
            await self.cache.redis.close()
        if self.dpop_replay is not None:
            await self.dpop_replay.aclose()
        await asyncio.gather(*(authority.aclose() for _, authority, _ in self._built.values()))
        if self._session is not None:
            await self._session.close()
        if self._untrace_logs is not None:
            self._untrace_logs()
            self._untrace_logs = None
        if self.tracing is not None:  # the spans still buffered go out (at most tracing.export_timeout_seconds)
            await asyncio.to_thread(self.tracing.shutdown)


async def run(config: Config, ready: Callable[[Server], None] | None = None, config_path: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain and return 0. SIGHUP (and a change of ``config_path``) reloads."""
    server = Server(config, config_path)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    # handlers first: a SIGTERM that arrives while the port is already open must drain, not kill
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload, "SIGHUP")
    async with server:
        # Everything built so far (config, stubs, compiled policies, keys) lives as long as the process: move it out
        # of the collector's view, and collect the young generation less often (the Check path allocates many
        # short-lived objects; each collection would otherwise rescan them).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        log.info("serving %s on %s, HTTP ext_authz on %s (admin %s, metrics %s)", AUTHORIZATION_SERVICE,
                 config.server.listen, config.server.http.listen or "off", config.admin_listen or "off",
                 config.metrics_listen or "off")
        if ready is not None:
            ready(server)
        await stopping.wait()
        log.info("shutting down: draining in-flight checks (grace %.1fs)", server.config.server.shutdown_grace_seconds)
    log.info("stopped")
    return 0
