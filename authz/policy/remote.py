"""The remote engine: OPA's REST Data API, ``POST <url>/v1/data/<path>`` with ``{"input": ...}``.

Only OPA's documented API is spoken, so a real OPA sidecar works unchanged: a 200 answer ``{"result": ...,
"decision_id": "..."}`` (``result`` absent = undefined decision); anything else — another status, a body that is not
that JSON, a timeout, a refused connection — is an evaluation failure. One kept-alive aiohttp session; a per-call
timeout; an optional bearer token for OPA's own authentication.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from authz.config import Secret
from authz.http_body import read_at_most
from authz.json_body import parse_json_object
from authz.policy.engine import Evaluation, PolicyEvaluationError, new_decision_id

__all__ = ["RemoteEngine"]

_MAX_ANSWER_BYTES = 1024 * 1024


class RemoteEngine:
    name = "remote"

    def __init__(self, base_url: str, timeout_seconds: float, token: Secret | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self._base = base_url.rstrip("/") + "/v1/data/"
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.reveal()}"
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=128, keepalive_timeout=30))

    async def evaluate(self, decision_path: str, policy_input: dict[str, Any]) -> Evaluation:
        body = json.dumps({"input": policy_input}, separators=(",", ":"))
        try:
            async with self._session.post(self._base + decision_path, data=body, headers=self._headers,
                                          timeout=self._timeout, allow_redirects=False) as resp:
                status = resp.status
                raw = await read_at_most(resp, _MAX_ANSWER_BYTES)
            if raw is None:
                raise PolicyEvaluationError(f"OPA {decision_path}: answer over {_MAX_ANSWER_BYTES} bytes")
        except TimeoutError:
            raise PolicyEvaluationError(f"OPA {decision_path}: no answer within {self._timeout.total}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise PolicyEvaluationError(f"OPA {decision_path}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise PolicyEvaluationError(f"OPA {decision_path}: HTTP {status}: {raw[:200]!r}")
        doc = parse_json_object(raw, f"OPA {decision_path}: answer", PolicyEvaluationError)
        if "result" not in doc:
            raise PolicyEvaluationError(f"OPA {decision_path}: decision is undefined")
        decision_id = doc.get("decision_id")
        return Evaluation(doc["result"], decision_id if isinstance(decision_id, str) else new_decision_id())

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()
