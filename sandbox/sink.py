"""A webhook receiver that records every post, for tests and local demos."""

from __future__ import annotations

import threading
from collections import deque

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig

__all__ = ["WebhookSink"]


class WebhookSink(Emulator):
    """Answers every POST under any path with `status` and records it.

    `answer_next(500, 503)` scripts the statuses of the next requests (then `status`
    again), e.g. to see a caller retry; the recorder keeps every request with the
    status it got.
    """

    name = "sink"

    def __init__(self, *, status: int = 200, faults: FaultConfig | None = None) -> None:
        self.status = status
        self._script: deque[int] = deque()
        self._script_lock = threading.Lock()
        super().__init__(faults=faults)

    def reset_state(self) -> None:
        with self._script_lock:
            self._script.clear()

    def answer_next(self, *statuses: int) -> None:
        """The next requests get these statuses, in order."""
        with self._script_lock:
            self._script.extend(statuses)

    def provider_routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._receive, methods=["POST", "PUT", "GET"])]

    async def _receive(self, request: Request) -> Response:
        with self._script_lock:
            status = self._script.popleft() if self._script else self.status
        if status >= 400:
            return JSONResponse({"error": f"sink answered {status}"}, status_code=status)
        return Response(status_code=status)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"
