"""Factories: build the rows a test needs, with defaults that say nothing."""

from __future__ import annotations

import itertools
from typing import Any

from loyalty.app import App
from loyalty.models import Member
from loyalty.referrals import new_referral_code

_numbers = itertools.count(1)


def make_member(app: App, **fields: Any) -> Member:
    now = app.clock.now()
    values: dict[str, Any] = {
        "external_id": f"m-{next(_numbers)}",
        "email": None,
        "tier": "bronze",
        "referral_code": new_referral_code(),
        "enrolled_at": now,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    with app.database.transaction() as session:
        member = Member(**values)
        session.add(member)
    return member


def write_csv(path: Any, header: str, *rows: str) -> Any:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
