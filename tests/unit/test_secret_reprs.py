"""The values that hold a credential show none in their ``repr``: an ``%r`` in a log line, an exception message
built from one, an assertion message or a debugger's dump then carries no token, JWT or exchanged token. The
non-secret fields still show, so the repr stays useful."""

from __future__ import annotations

from authz.dpop.stage import Presented
from authz.models import Allow, Identity, Introspection, RequestInfo
from authz.token_exchange.exchanger import Exchanged

TOKEN = "opaque-SECRET-token-5f4e3d"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.SECRET-signature"


def test_no_value_holding_a_credential_shows_it_in_its_repr() -> None:
    identity = Identity(jwt=JWT, claims={"sub": "alice"}, scopes=frozenset({"read"}), subject="alice",
                        client_id="demo", expires_at=None)
    values = [
        Presented(token=TOKEN),
        Introspection(active=True, jwt=JWT, claims={"sub": "alice"}),
        identity,
        Allow(headers=(("authorization", f"Bearer {JWT}"),), identity=identity),
        Exchanged(token=JWT, expires_at=None, max_age=None),
        RequestInfo(method="GET", path="/x", host="api.example.com", headers={"authorization": f"Bearer {TOKEN}"},
                    authorization=(f"Bearer {TOKEN}",), context_extensions={}),
    ]
    for value in values:
        text = repr(value)
        assert TOKEN not in text and JWT not in text and "SECRET" not in text, text
    assert "alice" in repr(identity) and "/x" in repr(values[-1])
