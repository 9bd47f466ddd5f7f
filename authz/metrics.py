"""Prometheus metrics, on a registry of our own (so several servers can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from authz.histogram import LoopHistogram
from authz.loop_counter import LoopCounter

__all__ = ["Metrics"]

_AS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# a cached check takes tens of µs in process, one that asks the AS milliseconds, one the AS keeps waiting seconds
_CHECK_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0)
# embedded Rego: ~5-35 µs; a reused decision: a lookup; a remote OPA: a network call
_POLICY_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # counted on every check: LoopCounter, ~0.05 µs an increment against prometheus_client's ~0.25 µs
        self.checks = LoopCounter("phantom_authz_checks", "Check calls by outcome, HTTP status and reason",
                                  ["outcome", "status", "reason"], r)
        self.cache = LoopCounter("phantom_authz_cache_lookups", "Introspection cache lookups by result "
                                 "(hit, miss, negative_hit, stale, l2_hit, l2_error)", ["result"], r)
        self.as_calls = Counter("phantom_authz_as_calls", "Introspection calls to authorization servers",
                                ["authorization_server", "outcome"], registry=r)
        self.as_latency = Histogram("phantom_authz_as_call_seconds", "Latency of introspection calls",
                                    ["authorization_server"], buckets=_AS_BUCKETS, registry=r)
        self.singleflight_joins = Counter("phantom_authz_singleflight_joins",
                                          "Cache misses that joined an introspection already in flight", registry=r)
        self.cache_entries = Gauge("phantom_authz_cache_entries", "Entries in the L1 cache", ["kind"], registry=r)
        self.cache_bytes = Gauge("phantom_authz_cache_bytes", "Accounted bytes in the L1 cache", ["kind"],
                                 registry=r)
        self.evictions = Counter("phantom_authz_cache_admin_evictions", "Entries evicted through the admin API",
                                 ["how"], registry=r)
        self.token_exchanges = Counter("phantom_authz_token_exchanges", "RFC 8693 token exchanges for routes with an "
                                       "exchange_audience, by result (hit: kept on the cached answer; exchanged; "
                                       "joined: one in flight; refused, refusal_hit: kept refusal; unavailable)",
                                       ["authorization_server", "result"], registry=r)
        self.config_reloads = Counter("phantom_authz_config_reloads", "Configuration reloads by result (ok: applied; "
                                      "error: refused, the running configuration kept)", ["result"], registry=r)
        self.listener_tls_reloads = Counter("phantom_authz_listener_tls_reloads", "Rotations of server.tls's files "
                                            "(cert_file, key_file, client_ca_file) by result (ok: new connections get "
                                            "them; error: refused, the certificate in use kept)", ["result"],
                                            registry=r)
        self.as_tls_reloads = Counter("phantom_authz_as_tls_reloads", "Rotations of an authorization server's TLS "
                                      "files (ca_file, client_cert_file, client_key_file) by result (ok: new calls "
                                      "use them; error: refused, the TLS in use kept)", ["authorization_server",
                                                                                         "result"], registry=r)
        # observed on every check: LoopHistogram, ~0.1 µs an observation against prometheus_client's ~1 µs
        self.check_seconds = LoopHistogram("phantom_authz_check_seconds", "Time to decide a check (Authorizer.decide: "
                                           "translation to CheckResponse), by transport (grpc, http)", ["transport"],
                                           _CHECK_BUCKETS, r)
        self.policy_decisions = Counter("phantom_authz_policy_decisions", "Policy decisions by result (allow, deny, "
                                        "error: failed, undefined or of the wrong shape); dry-run ones included",
                                        ["result"], registry=r)
        self.policy_seconds = LoopHistogram("phantom_authz_policy_evaluation_seconds", "Time of a policy decision "
                                            "(input, evaluation or reused decision, contract check)", [],
                                            _POLICY_BUCKETS, r)
        self.policy_decision_cache = Counter("phantom_authz_policy_decision_cache_lookups", "Decision-cache lookups "
                                             "of deterministic embedded policies by result (hit: the decision of an "
                                             "equal input reused; miss: evaluated)", ["result"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
