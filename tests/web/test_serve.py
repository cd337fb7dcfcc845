"""`loyalty serve` as an operator runs it: stalled and idle clients never hold the server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loyalty.db import Database

#: The body deadline `loyalty serve` runs with here (BODY_DEADLINE_SECONDS; 10 s by default).
BODY_DEADLINE_SECONDS = 1.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(database: Database, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
        "BODY_DEADLINE_SECONDS": str(BODY_DEADLINE_SECONDS),
    }
    loyalty = Path(sys.executable).parent / "loyalty"
    process = subprocess.Popen(
        [str(loyalty), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "loyalty serve did not start"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def test_stalled_uploads_get_408_and_the_server_keeps_answering(server: str) -> None:
    # Given clients that announce a body and then send only part of it
    port = int(server.rsplit(":", 1)[1])
    stalled = []
    for _ in range(20):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(
            b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n[{"
        )
        stalled.append(conn)
    started = time.monotonic()

    # When others call meanwhile, they are served
    assert httpx.get(f"{server}/healthz", timeout=5).status_code == 200

    # Then each stalled client gets 408 once the body deadline passes, and is disconnected
    for conn in stalled:
        conn.settimeout(BODY_DEADLINE_SECONDS + 10)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        conn.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert BODY_DEADLINE_SECONDS / 2 < time.monotonic() - started < BODY_DEADLINE_SECONDS + 10


def test_a_head_on_an_unknown_unsubscribe_link_is_a_plain_404(server: str) -> None:
    assert httpx.head(f"{server}/u/unknown-token-123", timeout=5).status_code == 404
