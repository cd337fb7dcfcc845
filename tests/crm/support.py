"""Members in bulk and apps pointed at the CRM emulators."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import insert

from automations.runtime.pacing import pacers_for
from crm_sync.adapters import make_adapter
from loyalty.app import App
from loyalty.models import Member
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import FieldSpec, SalesforceSandbox
from sandbox.salesforce_org import mapped_custom_fields
from tests.conftest import make_settings

_numbers = itertools.count(1)


def crm_app(
    app: App,
    hubspot: HubSpotSandbox | None = None,
    salesforce: SalesforceSandbox | None = None,
    **overrides: Any,
) -> App:
    """The test app with credentials for the given emulators (others stay off)."""
    values: dict[str, Any] = {"outbox_dir": app.settings.outbox_dir}
    if hubspot is not None:
        values.update(hubspot_access_token=hubspot.access_token, hubspot_base_url=hubspot.base_url)
    if salesforce is not None:
        values.update(
            salesforce_instance_url=salesforce.base_url,
            salesforce_access_token=salesforce.access_token,
            salesforce_ca_bundle=str(salesforce.ca_file),
        )
    values.update(overrides)
    settings = make_settings(app.database, **values)
    # As every process builds it: windows shared through Redis when REDIS_URL is set.
    return App(settings, app.database, app.clock, pacers_for(settings))


def hubspot_app(app: App, hubspot: HubSpotSandbox, **overrides: Any) -> App:
    """An app pointed at the emulator, whose properties exist; the recorder starts empty."""
    ready = crm_app(app, hubspot=hubspot, **overrides)
    make_adapter(ready, "hubspot").ensure_schema()
    hubspot.recorder.clear()
    return ready


def salesforce_fields(*, leave_out: tuple[str, ...] = ()) -> tuple[FieldSpec, ...]:
    """Custom fields for every mapped Salesforce name, as an admin would have made them."""
    return mapped_custom_fields(leave_out=leave_out)


def add_members(app: App, count: int, **fields: Any) -> list[int]:
    """Insert `count` members with names and phones; returns their ids."""
    now = app.clock.now()
    rows = []
    for _ in range(count):
        n = next(_numbers)
        row: dict[str, Any] = {
            "external_id": f"c-{n}",
            "email": f"member{n}@example.com",
            "phone": None,
            "first_name": "Ann",
            "last_name": f"Lee{n}",
            "tier": "bronze",
            "referral_code": f"RC{n:09d}",
            "points_balance": n % 500,
            "lifetime_points": n % 500,
            "enrolled_at": now,
            "created_at": now,
            "updated_at": now,
            "attributes": {},
        }
        row.update(fields)
        rows.append(row)
    with app.database.transaction() as session:
        result = session.execute(insert(Member).returning(Member.id), rows)
        return [int(i) for i in result.scalars()]


def set_points(app: App, member_ids: list[int], points: int) -> None:
    with app.database.transaction() as session:
        for member in session.query(Member).filter(Member.id.in_(member_ids)):
            member.points_balance = points
