"""A burst of same-template emails due together: members whose birthday is today, and a
birthday journey whose one step mails them, for the sending benchmark and its test.
"""

from __future__ import annotations

import secrets
import textwrap
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import func, insert, select

from bench.production import process_environment
from loyalty.app import App
from loyalty.models import Member, Message

__all__ = ["birthday_journey", "birthdays_today", "message_states", "process_environment"]

JOURNEY = """
id: birthday_mail
name: Birthday mail
status: active
locale: en
trigger: {type: date, field: birthday, days_before: 0, at: "00:00"}
entry: {once_per: year}
steps:
  - {id: greeting, type: send_email, template: birthday_mail}
"""
TEMPLATE = """---
subject: "Happy birthday, {{ member.first_name }}!"
---
<p>Happy birthday, {{ member.first_name }}! Your balance is {{ member.points_balance }}.</p>
"""


def birthday_journey(folder: Path) -> Path:
    """Write the journey and its template under `folder`; the folder."""
    (folder / "templates" / "en").mkdir(parents=True, exist_ok=True)
    (folder / "birthday_mail.yaml").write_text(textwrap.dedent(JOURNEY).lstrip())
    (folder / "templates" / "en" / "birthday_mail.email.liquid").write_text(TEMPLATE)
    return folder


def birthdays_today(app: App, count: int, *, on: date | None = None, start: int = 0) -> None:
    """`count` members with email consent whose birthday is today (UTC), or `on`, in one
    insert; numbered from `start` (`m-<n>`, `member<n>@example.com`)."""
    now = datetime.now(UTC)
    birthday = on or now.date()
    with app.database.transaction() as session:
        session.execute(
            insert(Member),
            [
                {
                    "external_id": f"m-{n}",
                    "email": f"member{n}@example.com",
                    "first_name": "Ann",
                    "tier": "bronze",
                    "referral_code": secrets.token_hex(8),
                    "email_consent": True,
                    "time_zone": "UTC",
                    "birth_month": birthday.month,
                    "birth_day": birthday.day,
                    "enrolled_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(start, start + count)
            ],
        )


def message_states(app: App) -> Counter[str]:
    with app.database.sessions() as session:
        rows = session.execute(select(Message.state, func.count()).group_by(Message.state))
        return Counter({state: count for state, count in rows})
