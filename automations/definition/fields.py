"""The member fields journeys may read, in conditions and in templates."""

from __future__ import annotations

import difflib
from typing import Literal

__all__ = ["DEFAULT_TIERS", "MEMBER_FIELDS", "FieldKind", "suggest"]

FieldKind = Literal["text", "number", "bool", "datetime", "date", "tier", "mapping"]

#: Every member field a condition or template can use, with the kind of its value.
#: Datetimes are aware UTC; ``birthday`` is the ``MM-DD`` (or ``YYYY-MM-DD``) text form.
MEMBER_FIELDS: dict[str, FieldKind] = {
    "external_id": "text",
    "email": "text",
    "phone": "text",
    "first_name": "text",
    "last_name": "text",
    "locale": "text",
    "time_zone": "text",
    "birth_month": "number",
    "birth_day": "number",
    "birth_year": "number",
    "birthday": "date",
    "tier": "tier",
    "points_balance": "number",
    "lifetime_points": "number",
    "referral_code": "text",
    "referral_link": "text",
    "referrals_completed": "number",
    "orders_count": "number",
    "total_spent": "number",
    "last_order_at": "datetime",
    "enrolled_at": "datetime",
    "email_consent": "bool",
    "sms_consent": "bool",
    "points_expiring": "number",
    "points_expiring_at": "datetime",
    "attributes": "mapping",
}

#: Tier names from lowest to highest; ordering comparisons on ``tier`` use this rank.
DEFAULT_TIERS: tuple[str, ...] = ("bronze", "silver", "gold")


def suggest(
    name: str, choices: list[str] | tuple[str, ...], listed: str = "journeys/README.md"
) -> str:
    """A hint naming the closest valid choice, or listing them (long lists: where to look)."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    if len(choices) > 12:
        return f"see the list in {listed}"
    return "use one of: " + ", ".join(choices)
