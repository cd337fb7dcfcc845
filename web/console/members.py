"""Member search and the member page: profile, points, consents, journeys and why, messages."""

from __future__ import annotations

from typing import Any

import phonenumbers
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from automations.versions import latest_versions, load_version
from loyalty.app import App
from loyalty.journey_pauses import paused_journeys
from loyalty.models import (
    Consent,
    CrmLink,
    Enrollment,
    EntryRefusal,
    LedgerEntry,
    Member,
    Message,
    SyncCursor,
)
from web.common import loyalty_app
from web.console.auth import requires
from web.console.rendering import error_page, render

__all__ = ["member_page", "members_page"]

#: Rows of each list on the member page.
PAGE_ROWS = 50


def _phone(query: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(query, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def search(app: App, query: str) -> list[Member]:
    """Members whose external id, email or phone is `query` (exact, each by its index)."""
    query = query.strip()[:320]
    if not query:
        return []
    wanted = [Member.external_id == query, Member.email == query.lower()]
    phone = _phone(query, app.settings.default_phone_region)
    if phone:
        wanted.append(Member.phone == phone)
    with app.database.sessions() as session:
        return list(session.scalars(select(Member).where(or_(*wanted)).limit(PAGE_ROWS)))


@requires("viewer")
async def members_page(request: Request) -> Response:
    query = request.query_params.get("q", "")
    found = await run_in_threadpool(search, loyalty_app(request), query)
    return render(request, "members.html", {"q": query, "members": found})


def _why(
    app: App,
    enrollments: list[Enrollment],
    refusals: list[EntryRefusal],
    messages: list[Message],
    active: list[tuple[str, str]],
    paused: set[str],
) -> list[dict[str, str]]:
    """For each active journey: whether the member entered, and if not or not all the way, why."""
    rows = []
    for journey_id, name in active:
        entered = [e for e in enrollments if e.journey_id == journey_id]
        refusal = next((r for r in refusals if r.journey_id == journey_id), None)
        stopped = [
            m
            for m in messages
            if m.journey_id == journey_id and m.state in ("suppressed", "failed")
        ]
        notes = [f"{m.step_id} {m.state}: {m.error or '-'}" for m in stopped]
        if refusal is not None and (not entered or refusal.decided_at >= entered[0].entered_at):
            outcome = "not entered"
            reason = f"{refusal.reason}: {refusal.detail or ''}".strip()
            at = refusal.decided_at
        elif entered:
            outcome = f"entered ({entered[0].state})"
            reason = "; ".join(notes) or "-"
            at = entered[0].entered_at
        else:
            outcome = "not offered yet"
            reason = "paused" if journey_id in paused else "the trigger has not fired for them"
            at = None
        rows.append(
            {
                "journey": journey_id,
                "name": name,
                "outcome": outcome,
                "reason": reason,
                "at": at.strftime("%Y-%m-%d %H:%M UTC") if at else "-",
            }
        )
    return rows


def member_view(app: App, member_id: int) -> dict[str, Any] | None:
    with app.database.sessions() as session:
        member = session.get(Member, member_id)
        if member is None:
            return None
        ledger = list(
            session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.member_id == member_id)
                .order_by(LedgerEntry.id.desc())
                .limit(PAGE_ROWS)
            )
        )
        consents = list(
            session.scalars(
                select(Consent).where(Consent.member_id == member_id).order_by(Consent.id.desc())
            )
        )
        enrollments = list(
            session.scalars(
                select(Enrollment)
                .where(Enrollment.member_id == member_id)
                .order_by(Enrollment.id.desc())
                .limit(PAGE_ROWS)
            )
        )
        refusals = list(
            session.scalars(select(EntryRefusal).where(EntryRefusal.member_id == member_id))
        )
        messages = list(
            session.scalars(
                select(Message)
                .where(Message.member_id == member_id)
                .order_by(Message.id.desc())
                .limit(PAGE_ROWS)
            )
        )
        links = list(session.scalars(select(CrmLink).where(CrmLink.member_id == member_id)))
        cursors = {(c.crm, c.direction): c for c in session.scalars(select(SyncCursor))}
        paused = set(paused_journeys(session))
        active = []
        for version in latest_versions(session):
            journey = load_version(version).journey
            if journey.status == "active":
                active.append((journey.id, journey.name))
    return {
        "member": member,
        "ledger": ledger,
        "consents": consents,
        "enrollments": enrollments,
        "messages": messages,
        "links": links,
        "cursors": cursors,
        "why": _why(app, enrollments, refusals, messages, active, paused),
    }


@requires("viewer")
async def member_page(request: Request) -> Response:
    raw = request.path_params["member_id"]
    view = await run_in_threadpool(member_view, loyalty_app(request), int(raw))
    if view is None:
        return error_page(request, 404, "No such member", "Search again by id, email or phone.")
    return render(request, "member.html", view)
