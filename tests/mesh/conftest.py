"""tests/mesh: phantom-authz behind real Envoy configured the way control planes configure it — an Istio sidecar's
CUSTOM ext_authz pair (``istio_shape``), an Envoy Gateway listener (``gateway_shape``) — and a small mesh on loopback
(``loopback_mesh``), with mTLS certificates made in the test (``pki``). Every Envoy config is validated with
``envoy --mode validate`` before it starts (``mesh_stack``).

A test using the ``mode`` fixture runs in both ext_authz modes (ids ``grpc``, ``http``) unless marked
``@pytest.mark.grpc_only("reason")``; the others run once."""

from __future__ import annotations

from typing import Any

from tests.harness import parametrize_modes


def pytest_generate_tests(metafunc: Any) -> None:
    parametrize_modes(metafunc)
