"""Waiting on the real processes (`loyalty serve`, `worker`, `scheduler`) in production tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

#: How many of the last lines of each process log a timeout shows.
LOG_LINES = 15


def wait_for(
    check: Callable[[], bool],
    what: str = "the processes",
    *,
    timeout: float = 120.0,
    logs: Path | None = None,
) -> None:
    """Poll `check` until it holds; on timeout fail with the tail of the logs in `logs`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}{_log_tails(logs)}")
        time.sleep(0.2)


def answers(url: str) -> bool:
    """True once `url` answers 200 (a process that is up)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _log_tails(folder: Path | None) -> str:
    if folder is None:
        return ""
    parts = []
    for path in sorted(folder.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()[-LOG_LINES:]
        parts.append(f"\n--- {path.name}\n" + "\n".join(lines))
    return "".join(parts)
