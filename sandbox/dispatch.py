"""Timed outbound work for emulators: webhook posts and delayed status changes."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

__all__ = ["Delivery", "Dispatcher", "WebhookLog"]

#: Timeout for one webhook post to the configured URL.
POST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Delivery:
    """One outbound webhook post and how the receiver answered."""

    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    error: str | None
    at: float


class WebhookLog:
    """Webhooks an emulator posted on request (a shop's sender), and how each was answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> httpx.Response:
        """Post now and remember the answer (or the transport error, which is raised)."""
        status: int | None = None
        error: str | None = None
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=timeout)
            status = response.status_code
            return response
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            with self._lock:
                self._deliveries.append(Delivery(url, headers, body, status, error, time.time()))

    def all(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)


class Dispatcher:
    """A single background thread running jobs at their due time, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._jobs: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._running = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._deliveries: list[Delivery] = []
        self.errors: list[str] = []

    def schedule(self, delay_s: float, job: Callable[[], None]) -> None:
        """Run job after delay_s seconds on the dispatcher thread."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._jobs, (time.monotonic() + delay_s, next(self._seq), job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        """POST to a receiver from the dispatcher thread and remember the outcome."""
        if self._client is None:
            self._client = httpx.Client(timeout=POST_TIMEOUT_S)
        status: int | None = None
        error: str | None = None
        try:
            status = self._client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(url, headers, body, status, error, time.time())
        with self._cond:
            self._deliveries.append(delivery)
        return delivery

    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no job is pending or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def clear(self) -> None:
        """Forget pending jobs and past deliveries."""
        with self._cond:
            self._jobs.clear()
            self._deliveries.clear()
            self.errors.clear()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread, dropping pending jobs; a later schedule() starts a new one."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=POST_TIMEOUT_S + 1)
        if self._client is not None:
            self._client.close()
            self._client = None
        with self._cond:
            self._closed = False

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._jobs or self._jobs[0][0] > time.monotonic()):
                    wait = self._jobs[0][0] - time.monotonic() if self._jobs else None
                    self._cond.wait(wait)
                if self._closed:
                    return
                _, _, job = heapq.heappop(self._jobs)
                self._running += 1
            try:
                job()
            except Exception as exc:  # a broken job must not stop later deliveries
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
