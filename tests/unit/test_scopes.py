"""require_scopes: every required scope must be granted (all-of)."""

from __future__ import annotations

import pytest

from authz.errors import InsufficientScope
from authz.scopes import require_scopes


def test_passes_when_all_required_scopes_are_granted() -> None:
    require_scopes(frozenset({"read", "write", "admin"}), ("read", "admin"))


def test_passes_when_nothing_is_required() -> None:
    require_scopes(frozenset(), ())


def test_rejects_when_one_of_several_is_missing() -> None:
    with pytest.raises(InsufficientScope) as info:
        require_scopes(frozenset({"read"}), ("read", "admin"))
    assert info.value.status == 403
    assert info.value.oauth_error == "insufficient_scope"
    assert info.value.required == ("read", "admin")
    assert info.value.missing == ("admin",)


def test_rejects_token_without_scopes() -> None:
    with pytest.raises(InsufficientScope) as info:
        require_scopes(frozenset(), ("read", "write"))
    assert info.value.missing == ("read", "write")


def test_scope_match_is_exact_and_case_sensitive() -> None:
    with pytest.raises(InsufficientScope) as info:
        require_scopes(frozenset({"Read", "read:all", "rea"}), ("read",))
    assert info.value.missing == ("read",)
