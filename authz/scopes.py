"""Stage 5: required scopes, all-of. Pure; runs on every request, cache hit or not."""

from __future__ import annotations

from authz.errors import InsufficientScope

__all__ = ["require_scopes"]


def require_scopes(granted: frozenset[str], required: tuple[str, ...]) -> None:
    """Raise ``InsufficientScope`` unless every required scope is granted."""
    missing = tuple(s for s in required if s not in granted)
    if missing:
        raise InsufficientScope(required, missing)
