"""Every test here goes through real Envoy: those using ``stack``/``stack_factory``/``mode`` run in both ext_authz
modes (ids ``grpc``, ``http``) unless marked ``@pytest.mark.grpc_only("reason")``."""

from __future__ import annotations

from typing import Any

from tests.harness import parametrize_modes


def pytest_generate_tests(metafunc: Any) -> None:
    parametrize_modes(metafunc)
