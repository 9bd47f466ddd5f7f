"""What a denial on a route taking DPoP offers the client (RFC 9449 §7.1-7.2), for ``authz.response`` to write.

A route with ``dpop: allowed`` offers both schemes (``Bearer realm=..., DPoP realm=..., algs="..."``); one with
``dpop: required`` only DPoP. The error code goes on the challenge of the scheme the client used: a token refused
after a Bearer presentation is the Bearer challenge's ``invalid_token``; a bad proof is the DPoP challenge's
``invalid_dpop_proof``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DpopChallenge"]


@dataclass(frozen=True, slots=True)
class DpopChallenge:
    bearer: bool  # a Bearer challenge is offered too (dpop: allowed)
    error_on_dpop: bool  # the error code goes on the DPoP challenge (the client presented DPoP)
    algs: str  # the proof algorithms we accept, space-separated
