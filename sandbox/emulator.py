"""The base every provider emulator shares: admin API, recorder, faults, server."""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from sandbox.faults import FaultConfig, FaultInjector
from sandbox.recorder import RecordedRequest, Recorder
from sandbox.server import LOOPBACK, ServerThread

__all__ = ["ADMIN_PREFIX", "Emulator"]

#: Paths under this prefix control the emulator; they are never faulted nor recorded.
ADMIN_PREFIX = "/__sandbox"


class Emulator:
    """A stateful provider emulator served on loopback.

    Subclasses supply `provider_routes`, `reset_state` and the provider's shapes for
    injected errors and rate limits.
    """

    name = "emulator"
    scheme = "http"
    #: Attributes that callers may change at run time and that reset() puts back.
    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, faults: FaultConfig | None = None, port: int = 0) -> None:
        self.lock = threading.RLock()
        self.recorder = Recorder()
        self._initial_faults = faults or FaultConfig()
        self.faults = FaultInjector(self._initial_faults)
        self._port = port
        self._server: ServerThread | None = None
        self._initial_settings = {k: copy.deepcopy(getattr(self, k)) for k in self.settings}
        with self.lock:
            self.reset_state()
        routes = [*self._admin_routes(), *self.extra_admin_routes(), *self.provider_routes()]
        self._app = Starlette(routes=routes)

    # -- what a provider defines -------------------------------------------------

    def provider_routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def extra_admin_routes(self) -> list[BaseRoute]:
        return []

    def reset_state(self) -> None:
        """Forget all provider data (called with the lock held)."""

    def error_response(self, status: int) -> Response:
        """The provider's answer when a 5xx is injected."""
        return JSONResponse({"message": "Internal Server Error"}, status_code=status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        """The provider's answer when the injected rate limit is exceeded."""
        return JSONResponse({"message": "Too Many Requests"}, status_code=429)

    def tls_files(self) -> tuple[Path, Path] | None:
        """(certificate chain, private key) when the emulator serves HTTPS."""
        return None

    # -- running -----------------------------------------------------------------

    def start(self) -> Self:
        """Start serving on 127.0.0.1 (a free port unless one was given)."""
        if self._server is None:
            tls = self.tls_files()
            self._server = ServerThread(
                self,
                port=self._port,
                certfile=tls[0] if tls else None,
                keyfile=tls[1] if tls else None,
                name=f"sandbox-{self.name}",
            )
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.close()

    def close(self) -> None:
        """Release background resources (overridden by emulators that own threads)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} sandbox is not running")
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def reset(self) -> None:
        """Back to a fresh state: settings, data, recorded requests, faults and their clock."""
        with self.lock:
            for key, value in self._initial_settings.items():
                setattr(self, key, copy.deepcopy(value))
            self.reset_state()
        self.recorder.clear()
        self.faults.configure(self._initial_faults)
        self.faults.clock = time.monotonic

    def set_faults(self, **changes: Any) -> FaultConfig:
        """Change fault settings at run time, e.g. set_faults(error_rate=0.2)."""
        return self.faults.update(**changes)

    def requests(
        self, path: str | None = None, method: str | None = None, status: int | None = None
    ) -> list[RecordedRequest]:
        """Recorded provider requests, optionally filtered."""
        return self.recorder.all(path=path, method=method, status=status)

    # -- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self._app(scope, receive, send)
            return
        body = await _read_body(receive)
        headers = _decode_headers(scope["headers"])
        record = self.recorder.new(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
        )
        decision = self.faults.decide()
        if decision.latency_s:
            await asyncio.sleep(decision.latency_s)
        replay = _replay(body, receive)
        if decision.rate_limited:
            record.fault = "rate_limited"
            await self._send_direct(
                self.rate_limited_response(decision.retry_after_s), record, scope, replay, send
            )
            return
        if decision.error_status is not None:
            record.fault = f"error_{decision.error_status}"
            response = self.error_response(decision.error_status)
            retry_after = self.faults.config.error_retry_after_s
            if retry_after is not None:
                response.headers["Retry-After"] = str(math.ceil(retry_after))
            await self._send_direct(response, record, scope, replay, send)
            return

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                record.response_headers = _decode_headers(message.get("headers", []))
            elif message["type"] == "http.response.body":
                record.response_body += message.get("body", b"")
            if not decision.drop:
                await send(message)

        await self._app(scope, replay, recording_send)
        if decision.drop:
            record.fault = "dropped"
            await _wait_for_disconnect(receive, self.faults.config.drop_hold_s)

    @staticmethod
    async def _send_direct(
        response: Response, record: RecordedRequest, scope: Scope, receive: Receive, send: Send
    ) -> None:
        record.status = response.status_code
        record.response_headers = _decode_headers(response.raw_headers)
        record.response_body = bytes(response.body)
        await response(scope, receive, send)

    def _admin_routes(self) -> list[BaseRoute]:
        p = ADMIN_PREFIX
        return [
            Route(f"{p}/requests", self._admin_requests, methods=["GET", "DELETE"]),
            Route(f"{p}/faults", self._admin_faults, methods=["GET", "PUT", "PATCH"]),
            Route(f"{p}/reset", self._admin_reset, methods=["POST"]),
        ]

    async def _admin_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.recorder.clear()
            return Response(status_code=204)
        q = request.query_params
        status = q.get("status")
        items = self.recorder.all(
            path=q.get("path"), method=q.get("method"), status=int(status) if status else None
        )
        return JSONResponse([item.to_dict() for item in items])

    async def _admin_faults(self, request: Request) -> Response:
        if request.method != "GET":
            try:
                changes = await request.json()
                if request.method == "PUT":
                    self.faults.configure(FaultConfig().updated(changes))
                else:
                    self.faults.update(**changes)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.config.to_dict())

    async def _admin_reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)


def _decode_headers(raw: Any) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _wait_for_disconnect(receive: Receive, limit_s: float) -> None:
    """Hold the connection without answering until the caller gives up."""
    try:
        async with asyncio.timeout(limit_s):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass
