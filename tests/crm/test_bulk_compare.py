"""The push compares members in bulk: exactly the changed ones are sent, on both databases.

Hashes are computed a page at a time; they must equal the hash of the properties as
stored by earlier versions (a change of formula would push every member again), and
every kind of change, whether to a member's row or to what its fields are derived from
(ledger, referrals, surveys), on any page and at page boundaries, must be seen.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_sync.delta import PropsCodec, crm_props, props_hash
from crm_sync.mapping import Crm, load_mapping
from crm_sync.plan import PAGE
from crm_sync.runs import run_push
from crm_sync.values import MEMBER_FIELDS
from loyalty import ledger
from loyalty.app import App
from loyalty.models import Member, Referral, Survey
from sandbox.hubspot import HubSpotSandbox
from tests.crm.support import add_members, hubspot_app, set_points

UPSERT = "/crm/v3/objects/contacts/batch/upsert"


def _stored_hash(props: dict[str, str | None]) -> str:
    """The hash as links already hold it: SHA-256 of sorted, compact JSON."""
    text = json.dumps(props, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


VALUES: list[dict[str, Any]] = [
    {},
    {
        "external_id": "m-1",
        "points_balance": 1250,
        "lifetime_points": Decimal("12.50"),
        "tier": "gold",
        "email": "zoë@example.com",
        "first_name": 'Łukasz "Luke" 100%',
        "last_name": "",
        "phone": "+48600100200",
        "email_consent": True,
        "sms_consent": False,
        "points_expiring": 0,
        "points_expiring_at": datetime(2026, 3, 10, 23, 59, tzinfo=UTC),
        "last_nps_at": datetime(2026, 1, 2, 3, 4, 5, 678000),
        "last_nps_score": 9,
        "birthday": "--02-29",
        "referral_link": "https://x.test/r/R1",
        "referrals_completed": 3,
        "last_birthday_bonus_year": 2025,
    },
    {"external_id": "m-2", "points_balance": 12.0, "tier": "日本", "email_consent": None},
]


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_bulk_hashes_equal_the_hashes_links_already_hold(crm: Crm) -> None:
    mapping = load_mapping(None)
    codec = PropsCodec(mapping, crm)
    members = [{field: one.get(field) for field in MEMBER_FIELDS} for one in VALUES]
    columns = {field: [member[field] for member in members] for field in MEMBER_FIELDS}

    digests = codec.digests(columns)

    for member, digest in zip(members, digests, strict=True):
        props = crm_props(mapping, crm, member)
        assert codec.props(member) == props
        assert digest == props_hash(props) == _stored_hash(props)
    assert len(set(digests)) == len(VALUES)


def _external_ids(app: App, ids: list[int]) -> set[str]:
    with app.database.sessions() as session:
        return set(session.scalars(select(Member.external_id).where(Member.id.in_(ids))))


def _sent_keys(hubspot: HubSpotSandbox) -> list[str]:
    return [i["id"] for r in hubspot.requests(path=UPSERT) for i in r.json()["inputs"]]


def test_only_members_whose_values_changed_are_pushed(
    app: App, hubspot_sandbox: HubSpotSandbox
) -> None:
    app = hubspot_app(app, hubspot_sandbox)
    ids = add_members(app, 2 * PAGE + 500)
    first = run_push(app, "hubspot")
    assert (first.landed, first.calls) == (len(ids), len(ids) // 100)
    hubspot_sandbox.recorder.clear()
    now = app.clock.now()

    # On the row: points on both sides of each page boundary, a name with accents.
    edges = [ids[0], ids[PAGE - 1], ids[PAGE], ids[2 * PAGE - 1], ids[2 * PAGE], ids[-1]]
    set_points(app, edges, 4321)
    with app.database.transaction() as session:
        session.execute(update(Member).where(Member.id == ids[1234]).values(first_name="Zoë"))
        # Derived fields: a lot that expires, a completed referral, an NPS answer.
        member = session.get(Member, ids[1500])
        assert member is not None
        ledger.apply(
            session,
            member,
            "earn",
            30,
            key="bulk-compare",
            reason="test",
            now=now,
            thresholds=app.settings.tier_thresholds,
            expires_at=now + timedelta(days=20),
        )
        session.add(
            Referral(
                referrer_id=ids[1700],
                referee_id=ids[1701],
                code="RC-bulk",
                status="completed",
                created_at=now,
                completed_at=now,
            )
        )
        session.add(
            Survey(
                member_id=ids[300],
                kind="nps",
                channel="email",
                token="bulk-compare",
                score=10,
                sent_at=now,
                answered_at=now,
            )
        )
    # Changed and changed back: nothing to send. Erased: never sent.
    before = _points(app, ids[50])
    set_points(app, [ids[50]], before + 1)
    set_points(app, [ids[50]], before)
    with app.database.transaction() as session:
        session.execute(
            update(Member)
            .where(Member.id == ids[60])
            .values(erased_at=now, points_balance=77, first_name=None)
        )

    report = run_push(app, "hubspot")

    changed = [*edges, ids[1234], ids[1500], ids[1700], ids[300]]
    assert sorted(_sent_keys(hubspot_sandbox)) == sorted(_external_ids(app, changed))
    assert (report.landed, report.calls) == (len(changed), 1)
    contact = hubspot_sandbox.contact_by(
        "loyalty_member_id", next(iter(_external_ids(app, [ids[300]])))
    )
    assert contact is not None and contact["properties"]["loyalty_last_nps_score"] == "10"

    hubspot_sandbox.recorder.clear()
    again = run_push(app, "hubspot")
    assert hubspot_sandbox.requests() == []
    assert again.sent == 0


def _points(app: App, member_id: int) -> int:
    """The member's points balance now."""
    with app.database.sessions() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return int(member.points_balance)
