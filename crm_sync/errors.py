"""CRM sync errors, classified by what the caller should do (loyalty.errors tree).

FatalError
├── MappingError         the mapping file is wrong: fix it and restart
├── CrmNotConfigured     the CRM has no credentials in the settings
└── CrmRefused           401/403/400 for a whole request: credentials or schema
RetriableError
├── CrmUnavailable       429, 5xx, timeouts after the retries ran out
└── BudgetSpent          the API budget for the day (or its allowed share) is used
"""

from __future__ import annotations

from loyalty.errors import ConfigError, FatalError, RetriableError

__all__ = ["BudgetSpent", "CrmNotConfigured", "CrmRefused", "CrmUnavailable", "MappingError"]


class MappingError(ConfigError):
    """The CRM mapping names something that does not exist; the message has file:line."""


class CrmNotConfigured(ConfigError):
    def __init__(self, crm: str, settings: str) -> None:
        super().__init__(f"{crm} is not configured: set {settings}")
        self.crm = crm


class CrmRefused(FatalError):
    """The CRM refused a whole request in a way retrying cannot fix."""

    def __init__(self, crm: str, status: int, detail: str) -> None:
        super().__init__(f"{crm} answered {status}: {detail}")
        self.status = status


class CrmUnavailable(RetriableError):
    """Still 429 or 5xx after the retries; the next run picks up where this one stopped."""


class BudgetSpent(RetriableError):
    """Stop writing for now: the CRM's daily allocation (or our share of it) is used."""
