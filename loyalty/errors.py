"""The error tree, classified by what the caller should do.

LoyaltyError
├── FatalError            stop and explain: bad configuration, bad definition
│   └── ConfigError
├── RetriableError        try again later with backoff: 429, 5xx, timeouts, lock contention
└── SkippableError        record it and go on: one bad row, one unknown member
    ├── RowError
    ├── UnknownMemberError
    ├── UnknownEventTypeError
    ├── InvalidEventError
    └── InsufficientPointsError
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FatalError",
    "InsufficientPointsError",
    "InvalidEventError",
    "LoyaltyError",
    "RetriableError",
    "RowError",
    "SkippableError",
    "UnknownEventTypeError",
    "UnknownMemberError",
]


class LoyaltyError(Exception):
    """Base of every error the program raises on purpose."""


class FatalError(LoyaltyError):
    """Retrying cannot help: the configuration or a definition must be fixed."""


class ConfigError(FatalError):
    """A setting has a value the program cannot use."""


class RetriableError(LoyaltyError):
    """A transient failure: the same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SkippableError(LoyaltyError):
    """One item is bad; record it and carry on with the rest."""


class RowError(SkippableError):
    """One field of one input row is invalid."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownMemberError(SkippableError):
    def __init__(self, external_id: str) -> None:
        super().__init__(
            f"no member with external_id {external_id!r}; import the member first "
            "(loyalty members import)"
        )
        self.external_id = external_id


class UnknownEventTypeError(SkippableError):
    def __init__(self, event_type: str, known: list[str]) -> None:
        super().__init__(
            f"unknown event type {event_type!r}; known types: {', '.join(sorted(known))} "
            "(declare custom types in EVENT_TYPES)"
        )
        self.event_type = event_type


class InvalidEventError(SkippableError):
    """An event whose fields or payload are unusable."""


class InsufficientPointsError(SkippableError):
    def __init__(self, requested: int, available: int) -> None:
        super().__init__(
            f"cannot take {requested} points: the member has {available} redeemable points"
        )
        self.requested = requested
        self.available = available
