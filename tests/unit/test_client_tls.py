"""``ClientTls``: the generations of an AS's TLS files and their sessions. A call in flight when the files rotate
finishes on the session it started with, which is closed once that call ends; calls after the rotation get a new
session and context; a reload that replaces the AS closes its sessions as their calls end. (Rotations against a real
HTTPS AS, through the running service: tests/service/test_as_tls_rotation.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from authz.config import AuthorizationServerConfig, Secret
from authz.introspection.client_tls import ClientTls
from tests.pki import Authority, MountedSecret

AS_CA = Authority("AS CA")
CLIENT_CA = Authority("gateway client CA")


def _tls(secret: MountedSecret, session: aiohttp.ClientSession) -> ClientTls:
    config = AuthorizationServerConfig(
        name="corp", introspection_endpoint="https://127.0.0.1:1/introspect", client_id="gw",
        client_auth_method="tls_client_auth", ca_file=str(secret.path("ca.crt")),
        client_cert_file=str(secret.path("tls.crt")), client_key_file=str(secret.path("tls.key")),
        issuer="https://as.example", jwks_uri="https://127.0.0.1:1/jwks")
    return ClientTls(config, session)


async def _closed(session: aiohttp.ClientSession) -> None:
    """Until the close scheduled for ``session`` has run (a few loop turns)."""
    for _ in range(100):
        if session.closed:
            return
        await asyncio.sleep(0)
    raise AssertionError("the retired session was never closed")


async def test_a_call_in_flight_finishes_on_its_session_which_closes_when_it_ends(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    secret = MountedSecret(tmp_path / "secret")
    secret.issue(CLIENT_CA.issue("gateway"), AS_CA)
    tls = _tls(secret, session)
    try:
        async with tls.connection() as (old_session, old_context):
            secret.issue(CLIENT_CA.issue("gateway"), AS_CA)  # rotated while the call is in flight
            assert tls.files.reload() is True
            async with tls.connection() as (new_session, new_context):
                assert new_session is not old_session and new_context is not old_context
            assert not old_session.closed  # the call in flight still uses it
            assert not new_session.closed
        await _closed(old_session)  # its last call ended
        assert not new_session.closed
        assert new_session is not session  # the process's shared session is never closed here
    finally:
        await tls.aclose()
    assert new_session.closed and not session.closed


async def test_a_retired_as_closes_its_session_once_idle(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    secret = MountedSecret(tmp_path / "secret")
    secret.issue(CLIENT_CA.issue("gateway"), AS_CA)
    tls = _tls(secret, session)
    tls.start()
    async with tls.connection() as (used, _):
        tls.retire()  # a reload replaced the AS while this call runs
        assert not used.closed
    await _closed(used)
    await tls.aclose()


async def test_a_ca_bundle_with_comments_in_utf_8_loads(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    bundle = tmp_path / "bundle.pem"  # as certifi's: each certificate under comments naming it, not all ASCII
    bundle.write_bytes("# Issuer: CN=Főtanúsítvány\n".encode() + AS_CA.pem)
    config = AuthorizationServerConfig(name="corp", introspection_endpoint="https://127.0.0.1:1/introspect",
                                       client_id="gw", client_secret=Secret("s3cret"), ca_file=str(bundle),
                                       issuer="https://as.example", jwks_uri="https://127.0.0.1:1/jwks")
    tls = ClientTls(config, session)
    assert tls.files.current.describe() == "trusting CA bundle of 1"
    await tls.aclose()
