"""One event, one email: the journey the pipeline benchmark and its statement-count test run,
its members, and what one event costs the database on its way to the email.

The journey mails a member when a `member.enrolled` event arrives (an event with no
ledger effect, so the hops measured are the pipeline's own: the event, the enrollment
step and the delivery).
"""

from __future__ import annotations

import secrets
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert

from loyalty.app import App
from loyalty.models import Member

__all__ = [
    "EVENT_TYPE",
    "Counts",
    "counting",
    "event_journey",
    "mailable_members",
    "one_event_to_email",
]

#: The event that starts the journey.
EVENT_TYPE = "member.enrolled"

JOURNEY = """
id: welcome_mail
name: Welcome mail
status: active
locale: en
trigger: {type: event, event: member.enrolled}
entry: {every_time: true}
steps:
  - {id: hello, type: send_email, template: welcome_mail}
"""
TEMPLATE = """---
subject: "Welcome, {{ member.first_name }}!"
---
<p>Welcome, {{ member.first_name }}! You are {{ tier_name }} with {{ member.points_balance }}
points.</p>
"""


def event_journey(folder: Path) -> Path:
    """Write the journey and its template under `folder`; the folder."""
    (folder / "templates" / "en").mkdir(parents=True, exist_ok=True)
    (folder / "welcome_mail.yaml").write_text(textwrap.dedent(JOURNEY).lstrip())
    (folder / "templates" / "en" / "welcome_mail.email.liquid").write_text(TEMPLATE)
    return folder


def mailable_members(app: App, count: int, *, prefix: str = "m") -> list[str]:
    """`count` members with email consent, in one insert; their external ids."""
    now = datetime.now(UTC)
    ids = [f"{prefix}-{n}" for n in range(count)]
    with app.database.transaction() as session:
        session.execute(
            insert(Member),
            [
                {
                    "external_id": external_id,
                    "email": f"{external_id}@example.com",
                    "first_name": "Ann",
                    "tier": "bronze",
                    "referral_code": secrets.token_hex(8),
                    "email_consent": True,
                    "time_zone": "UTC",
                    "enrolled_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for external_id in ids
            ],
        )
    return ids


@dataclass
class Counts:
    """SQL statements and commits seen on an engine, in total and by the hop that ran them."""

    statements: int = 0
    commits: int = 0
    by_hop: Counter[str] = field(default_factory=Counter)
    hop: str = "other"

    def __str__(self) -> str:
        hops = ", ".join(f"{name} {count}" for name, count in self.by_hop.items())
        return f"{self.statements} SQL statements ({hops}) and {self.commits} commits"


@contextmanager
def counting(engine: Engine) -> Iterator[Counts]:
    """Count the statements and commits `engine` runs inside the block."""
    counts = Counts()

    def statement(_connection: Any, _cursor: Any, text: str, *_: Any) -> None:
        if text.startswith("BEGIN"):
            return  # SQLite's own BEGIN IMMEDIATE (PostgreSQL's is not a statement here)
        counts.statements += 1
        counts.by_hop[counts.hop] += 1

    def commit(*_: Any) -> None:
        counts.commits += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


def one_event_to_email(app: App, member: str, event_id: str) -> Counts:
    """Store one event and run every hop it causes in this thread, up to the email's send;
    the statements and commits they took.

    The app's journeys must be published; Dramatiq's broker is replaced by an inline one.
    """
    from automations import runtime
    from automations.intake import store_and_queue
    from automations.runtime.broker import build_inline_broker
    from loyalty.event_types import EventInput

    runtime.configure(app)
    broker = build_inline_broker(app.settings)
    hops = {"process_event": "event", "run_enrollment": "enrollment"}
    with counting(app.database.engine) as counts:
        counts.hop = "intake"
        store_and_queue(app, EventInput(EVENT_TYPE, member, id=event_id))
        while broker._queued:
            message = broker._queued.popleft()
            counts.hop = hops.get(message.actor_name, "delivery")
            broker.get_actor(message.actor_name).fn(*message.args, **message.kwargs)
    if broker.failures:
        raise RuntimeError(f"a hop failed: {broker.failures}")
    return counts
