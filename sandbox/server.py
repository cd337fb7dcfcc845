"""Serve an ASGI app on a loopback port from a background thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

__all__ = ["LOOPBACK", "ServerThread"]

#: Emulators only ever listen on the loopback interface.
LOOPBACK = "127.0.0.1"

#: How long start() waits for uvicorn to accept connections.
STARTUP_TIMEOUT_S = 10.0


class _QuietShutdown(logging.Filter):
    """Idle keep-alive connections at shutdown are expected here, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "graceful shutdown exceeded" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietShutdown())


class ServerThread:
    """One uvicorn server in a daemon thread, on 127.0.0.1 and a given or free port."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        name: str = "sandbox",
    ) -> None:
        self.app = app
        self.requested_port = port
        self.certfile = certfile
        self.keyfile = keyfile
        self.name = name
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> int:
        """Bind the socket, start serving and return the port."""
        if self.running:
            return self.port
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every response with a body waits ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self.requested_port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=LOOPBACK,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="auto",  # httptools when installed (faster), else h11
            loop="asyncio",
            backlog=2048,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(self.certfile) if self.certfile else None,
            ssl_keyfile=str(self.keyfile) if self.keyfile else None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start on {LOOPBACK}:{self.port}")
            time.sleep(0.005)
        return self.port

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
