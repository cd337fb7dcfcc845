"""Fault injection: latency, rate limits, 5xx answers and dropped responses."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["FaultConfig", "FaultDecision", "FaultInjector", "RollingWindow"]


@dataclass
class FaultConfig:
    """Faults applied to every provider request (admin endpoints are exempt)."""

    #: Added to every response, in milliseconds, plus a uniform jitter.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    #: Share (0..1) of requests answered with one of error_statuses, without processing.
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    #: Seconds sent in a Retry-After header with those injected errors; None sends none.
    error_retry_after_s: float | None = None
    #: Share (0..1) of requests processed whose response is never sent: the caller times out.
    drop_rate: float = 0.0
    #: How long a dropped request holds the connection before giving up on the caller.
    drop_hold_s: float = 30.0
    #: Extra rolling-window limit answered in the provider's own 429 shape; None is unlimited.
    rate_limit: int | None = None
    rate_window_s: float = 1.0
    #: Seed for the random draws, so a failing run can be replayed.
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0 or self.drop_hold_s < 0:
            raise ValueError("latencies must not be negative")
        if self.error_retry_after_s is not None and self.error_retry_after_s < 0:
            raise ValueError("error_retry_after_s must not be negative")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must be positive or None")
        if self.rate_window_s <= 0:
            raise ValueError("rate_window_s must be positive")
        self.error_statuses = tuple(int(s) for s in self.error_statuses)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        return data

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with changes applied; unknown names raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        if "error_statuses" in changes:
            changes = {**changes, "error_statuses": tuple(changes["error_statuses"])}
        return dataclasses.replace(self, **changes)


class RollingWindow:
    """At most `limit` hits in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def hit(self, now: float | None = None) -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining, seconds until a slot frees)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._hits and self._hits[0] <= now - self.window_s:
                self._hits.popleft()
            if len(self._hits) >= self.limit:
                return False, 0, self._hits[0] + self.window_s - now
            self._hits.append(now)
            return True, self.limit - len(self._hits), 0.0

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


@dataclass(frozen=True)
class FaultDecision:
    latency_s: float = 0.0
    rate_limited: bool = False
    retry_after_s: float = 0.0
    error_status: int | None = None
    drop: bool = False


class FaultInjector:
    """Draws a decision per request from the current FaultConfig.

    `clock` gives the seconds the rate-limit window counts in: real time by default;
    a test may hand it its own clock (its FrozenClock's timestamp) so that the window
    passes when the test advances time rather than after a real wait.
    """

    def __init__(
        self, config: FaultConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self.clock = clock
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config
            self._random = random.Random(config.seed)
            self._window = (
                RollingWindow(config.rate_limit, config.rate_window_s)
                if config.rate_limit is not None
                else None
            )

    def update(self, **changes: Any) -> FaultConfig:
        """Change some settings at run time and return the new configuration."""
        config = self._config.updated(changes)
        self.configure(config)
        return config

    def decide(self) -> FaultDecision:
        config = self._config
        if (
            config.latency_ms == 0
            and config.latency_jitter_ms == 0
            and config.error_rate == 0
            and config.drop_rate == 0
            and self._window is None
        ):
            return _NO_FAULT
        with self._lock:
            latency = config.latency_ms + self._random.uniform(0, config.latency_jitter_ms)
            if self._window is not None:
                allowed, _, retry_after = self._window.hit(self.clock())
                if not allowed:
                    return FaultDecision(latency / 1000, True, retry_after)
            if config.error_rate and self._random.random() < config.error_rate:
                status = self._random.choice(config.error_statuses)
                return FaultDecision(latency / 1000, error_status=status)
            drop = bool(config.drop_rate) and self._random.random() < config.drop_rate
            return FaultDecision(latency / 1000, drop=drop)


_NO_FAULT = FaultDecision()
