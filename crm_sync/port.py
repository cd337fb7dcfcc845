"""The CRM port: what the sync needs from a CRM, whichever it is.

The runs (`crm_sync.runs`) decide what to push and apply what was pulled; an adapter
only speaks its CRM's API. Keys are the member's upsert key value (`loyalty_member_id`),
so a replayed write is an upsert of the same contact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from crm_sync.delta import Props
from crm_sync.mapping import Crm

__all__ = ["ContactUpdate", "CrmPort", "Pulled", "PushResult", "RecordFailure"]


@dataclass(frozen=True)
class ContactUpdate:
    """The properties to write on one member's contact (canonical texts)."""

    key: str
    props: Props


@dataclass(frozen=True)
class RecordFailure:
    """Why one record was not written; `retriable` ones are tried again next run."""

    error: str
    retriable: bool = False


@dataclass
class PushResult:
    """Per key: the CRM's record id when it landed, or why it did not."""

    landed: dict[str, str | None] = field(default_factory=dict)
    failed: dict[str, RecordFailure] = field(default_factory=dict)
    #: Not sent at all (the run is stopping); nothing is recorded for these.
    skipped: set[str] = field(default_factory=set)
    calls: int = 0
    #: Set when the run must stop after this batch (e.g. the API budget share is used).
    stop: str | None = None


@dataclass(frozen=True)
class Pulled:
    """One contact as the CRM has it now: the upsert key, its id, the pulled properties."""

    key: str | None
    crm_id: str
    props: Props
    modified_at: datetime


class CrmPort(Protocol):
    name: Crm

    def batch_size(self, total: int) -> int:
        """How many updates one `push` call should carry when `total` are waiting."""
        ...

    def ensure_schema(self) -> list[str]:
        """Create what the CRM lets us create (idempotent); returns what was created."""
        ...

    def check(self) -> list[str]:
        """Problems an admin must fix (missing fields, wrong types); empty when all is well."""
        ...

    def push(self, updates: Sequence[ContactUpdate]) -> PushResult:
        """Upsert one batch by the key; per-record failures are reported, not raised."""
        ...

    def pull(self, since: datetime | None, until: datetime) -> Iterator[Pulled]:
        """Contacts modified in [since, until), oldest first."""
        ...

    def erase(self, key: str, crm_id: str | None) -> bool:
        """Remove the member's personal data from the CRM; False when it was not there."""
        ...
