"""The OPA built-ins phantom-authz adds to each embedded regorus engine, and their names (for
``authz.policy.builtin_check``): ``io.jwt.*`` (``authz.policy.jwt_builtins``), ``crypto.*`` digests and HMACs and
``net.cidr_intersects``/``net.cidr_contains_matches`` (``authz.policy.crypto_builtins``), and
``crypto.x509.parse_certificates`` (``authz.policy.x509_builtins``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authz.policy.crypto_builtins import CRYPTO_BUILTINS
from authz.policy.jwt_builtins import JwtBuiltins
from authz.policy.x509_builtins import X509_BUILTINS

__all__ = ["register_extensions"]


class _Recorder:
    """An engine's ``add_extension`` that also keeps the names registered."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.names: set[str] = set()

    def add_extension(self, name: str, nargs: int, function: Callable[..., Any]) -> None:
        self.engine.add_extension(name, nargs, function)
        self.names.add(name)


def register_extensions(engine: Any, jwt: JwtBuiltins) -> frozenset[str]:
    """Register every provided built-in on ``engine``; their names."""
    recorder = _Recorder(engine)
    jwt.register(recorder)
    for name, (nargs, function) in {**CRYPTO_BUILTINS, **X509_BUILTINS}.items():
        recorder.add_extension(name, nargs, function)
    return frozenset(recorder.names)
