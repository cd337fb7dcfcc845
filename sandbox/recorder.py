"""A thread-safe log of every request an emulator received."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["RecordedRequest", "Recorder"]

#: Oldest entries are forgotten beyond this many, so long benchmarks stay bounded.
MAX_RECORDED = 200_000


@dataclass
class RecordedRequest:
    """What the emulator saw, and what it did about it."""

    seq: int
    at: float
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    fault: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        """The form-encoded body; a repeated name keeps its last value."""
        return dict(parse_qsl(self.text, keep_blank_values=True))

    def form_items(self) -> list[tuple[str, str]]:
        return parse_qsl(self.text, keep_blank_values=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.text,
            "status": self.status,
            "fault": self.fault,
            "response_headers": self.response_headers,
            "response_body": self.response_body.decode("utf-8", errors="replace"),
        }


class Recorder:
    """Append-only, bounded, readable from any thread."""

    def __init__(self, max_size: int = MAX_RECORDED) -> None:
        self._lock = threading.Lock()
        self._items: deque[RecordedRequest] = deque(maxlen=max_size)
        self._seq = 0

    def new(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> RecordedRequest:
        with self._lock:
            self._seq += 1
            item = RecordedRequest(self._seq, time.time(), method, path, query, headers, body)
            self._items.append(item)
            return item

    def all(
        self, path: str | None = None, method: str | None = None, status: int | None = None
    ) -> list[RecordedRequest]:
        """Requests in arrival order, filtered by path prefix, method and status."""
        with self._lock:
            items = list(self._items)
        return [
            r
            for r in items
            if (path is None or r.path.startswith(path))
            and (method is None or r.method == method.upper())
            and (status is None or r.status == status)
        ]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
