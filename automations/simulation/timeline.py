"""The simulation's timeline, read back from the copy: what happened, in the order it ran.

Rows are the entries, awards, messages (with their state), simulated opens and
clicks, conversions and exits between the start and the end; at one instant,
in the order the engine ran them. Each row of an enrollment that went through
splits names the variant it got at the first (`variant`) and at each
(`splits`). The enrollments already in flight when the simulation started
have no `enter` row: they are listed apart (`Timeline.in_flight`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from automations.simulation.live_copy import Copied
from automations.versions import load_version
from loyalty.app import App
from loyalty.models import (
    Enrollment,
    JourneyVersion,
    LedgerEntry,
    Member,
    Message,
    ProviderEvent,
    SplitChoice,
)
from loyalty.states import EnrollmentState, MessageState

__all__ = ["Timeline", "iso", "timeline"]


@dataclass
class Timeline:
    records: list[dict[str, Any]] = field(default_factory=list)
    #: The enrollments in flight at the start: journey, member, entered_at, variant(s).
    in_flight: list[dict[str, Any]] = field(default_factory=list)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def timeline(app: App, start: datetime, end: datetime, copied: Copied) -> Timeline:
    """What happened between `start` and `end`; at one instant, in the order it ran."""
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    found = Timeline()
    with app.database.sessions() as session:
        externals = dict(session.execute(select(Member.id, Member.external_id)).all())
        orders = {
            v.id: {step.id: n for n, step in enumerate(load_version(v).journey.steps)}
            for v in session.scalars(select(JourneyVersion))
        }
        enrollments = {e.id: e for e in session.scalars(select(Enrollment))}
        splits: dict[int, dict[str, str]] = {}
        for choice in session.scalars(select(SplitChoice)):
            splits.setdefault(choice.enrollment_id, {})[choice.split_id] = choice.variant

        def variants(record: dict[str, Any], e: Enrollment) -> dict[str, Any]:
            if e.variant:
                record["variant"] = e.variant
            if e.id in splits:
                record["splits"] = dict(sorted(splits[e.id].items()))
            return record

        def add(record: dict[str, Any], enrollment_id: int | None, phase: int) -> None:
            e = enrollments.get(enrollment_id) if enrollment_id is not None else None
            step = orders.get(e.journey_version_id, {}).get(record["step"], -1) if e else -1
            key = (record["at"], record["member"], record["journey"], phase, step)
            rows.append((key, variants(record, e) if e is not None else record))

        for e in enrollments.values():
            if e.id in copied.finished:
                continue
            member = externals[e.member_id]
            if e.id in copied.in_flight:
                going = {"journey": e.journey_id, "member": member, "entered_at": iso(e.entered_at)}
                found.in_flight.append(variants(going, e))
            else:
                enter = {
                    "at": iso(e.entered_at),
                    "journey": e.journey_id,
                    "member": member,
                    "step": "",
                    "action": "enter",
                    "occurrence": e.occurrence,
                }
                add(enter, e.id, 0)
            if e.state == EnrollmentState.CONVERTED and e.converted_at:
                goal = {
                    "at": iso(e.converted_at),
                    "journey": e.journey_id,
                    "member": member,
                    "step": e.current_step or "",
                    "action": "goal",
                }
                add(goal, e.id, 2)
            elif e.exited_at is not None:
                record = {
                    "at": iso(e.exited_at),
                    "journey": e.journey_id,
                    "member": member,
                    "step": e.current_step or "",
                    "action": "exit",
                }
                if e.exit_reason:
                    record["reason"] = e.exit_reason
                add(record, e.id, 2)
        for entry in session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.idempotency_key.like("enrollment:%"),
                LedgerEntry.id > copied.ledger_up_to,
            )
        ):
            _, enrollment_id, step = entry.idempotency_key.split(":", 2)
            owner = enrollments.get(int(enrollment_id)) if enrollment_id.isdigit() else None
            if owner is None:
                continue
            award = {
                "at": iso(entry.created_at),
                "journey": owner.journey_id,
                "member": externals[entry.member_id],
                "step": step,
                "action": "award_points",
                "points": entry.delta,
            }
            add(award, owner.id, 1)
        for message in session.scalars(select(Message)):
            if message.id not in copied.settled_messages:
                add(_message_record(message, externals, app), message.enrollment_id, 1)
        for engaged_in, engaged in _engagements(session, externals):
            add(engaged, engaged_in, 3)
    low, high = iso(start), iso(end)
    rows = [(key, r) for key, r in rows if low <= r["at"] <= high]
    found.records = [r for _, r in sorted(rows, key=lambda row: row[0])]
    found.in_flight.sort(key=lambda r: (r["journey"], r["member"], r["entered_at"]))
    return found


def _engagements(
    session: Session, externals: dict[int, str]
) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """Each simulated open and click, at its moment (the SendGrid events the simulation applied:
    the message keeps only the latest, and a click moves its open too)."""
    query = (
        select(ProviderEvent.kind, ProviderEvent.received_at, Message)
        .join(Message, Message.id == ProviderEvent.message_id)
        .where(ProviderEvent.provider == "sendgrid", ProviderEvent.kind.in_(("open", "click")))
    )
    for kind, at, message in session.execute(query):
        record = _about(message, externals, at, kind)
        record["template"] = message.template
        yield message.enrollment_id, record


def _about(
    message: Message, externals: dict[int, str], at: datetime, action: str
) -> dict[str, Any]:
    """A timeline record of something that happened to a message: when, where, what."""
    return {
        "at": iso(at),
        "journey": message.journey_id or "",
        "member": externals[message.member_id],
        "step": message.step_id or "",
        "action": action,
        "channel": message.channel,
    }


def _message_record(message: Message, externals: dict[int, str], app: App) -> dict[str, Any]:
    at = message.sent_at or message.updated_at
    if message.channel == "crm":
        action = "update_crm"
    elif message.channel in ("http", "crm_task"):
        action = message.channel
    elif message.decisions.get("survey"):
        action = "send_survey"
    else:
        action = f"send_{message.channel}"
    record = _about(message, externals, at, action)
    record["state"] = message.state
    if message.template:
        record["template"] = message.template
    if message.locale:
        record["locale"] = message.locale
    if message.decisions.get("deferred_from"):
        record["deferred_from"] = iso(datetime.fromisoformat(message.decisions["deferred_from"]))
    if message.state == MessageState.DEFERRED:
        record["deferred_until"] = iso(message.next_attempt_at) if message.next_attempt_at else None
    if message.state == MessageState.SUPPRESSED:
        record["suppressed"] = message.error
    elif message.state == MessageState.FAILED:
        record["error"] = message.error
    if message.channel == "sms" and message.segments:
        record["segments"] = message.segments
        record["cost"] = str(message.cost)
    if message.channel == "crm":
        record["properties"] = message.decisions.get("properties")
    elif message.channel == "http":
        record["endpoint"] = message.decisions.get("endpoint")
    elif message.channel == "crm_task":
        record["subject"] = (message.decisions.get("task") or {}).get("subject")
    return record
