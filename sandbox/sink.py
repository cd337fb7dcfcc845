"""A webhook receiver that records every post, for tests and local demos."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig

__all__ = ["WebhookSink"]


class WebhookSink(Emulator):
    """Answers every POST under any path with `status` and records it."""

    name = "sink"

    def __init__(self, *, status: int = 200, faults: FaultConfig | None = None) -> None:
        self.status = status
        super().__init__(faults=faults)

    def provider_routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._receive, methods=["POST", "PUT", "GET"])]

    async def _receive(self, request: Request) -> Response:
        return Response(status_code=self.status)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"
