"""Deciding what to push: members whose mapped values changed, plus journeys' updates.

Pure reading: nothing here writes. Members are read in pages of `PAGE` by id, each page
in its own short transaction (a long one would hold SQLite's write lock from everyone).
A page is compared in bulk: its members, their links and their derived fields take one
query each, and the hashes are computed in one pass over plain rows, so that a run over
100,000 unchanged members costs seconds and makes no call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select

from crm_sync.delta import ERASED, Props, PropsCodec, canonical
from crm_sync.mapping import Crm, Mapping
from crm_sync.port import ContactUpdate
from crm_sync.values import member_columns, member_rows
from loyalty.app import App
from loyalty.models import CrmLink, Message
from loyalty.states import MessageState

__all__ = ["PAGE", "Planned", "changed_members", "pending_crm_messages"]

#: Members read and compared per page.
PAGE = 2000


@dataclass
class Planned:
    """One member to push, and what to record once the CRM answers."""

    member_id: int
    update: ContactUpdate
    #: The mapped properties alone (journeys' extras are not part of the hash).
    props: Props
    hash: str
    message_ids: list[int] = field(default_factory=list)
    #: Journey property names this CRM does not know, per message id.
    unknown: dict[int, list[str]] = field(default_factory=dict)


def pending_crm_messages(app: App, crm: Crm) -> dict[int, list[Message]]:
    """Journeys' `update_crm` rows still waiting for this CRM, by member."""
    found: dict[int, list[Message]] = {}
    with app.database.transaction() as session:
        rows = session.scalars(
            select(Message)
            .where(Message.channel == "crm", Message.state == MessageState.PENDING)
            .order_by(Message.id)
        ).all()
    for message in rows:
        if crm not in (message.decisions.get("crm") or {}):
            found.setdefault(message.member_id, []).append(message)
    return found


def _overlay(
    mapping: Mapping, crm: Crm, messages: list[Message], planned: Planned
) -> dict[str, str | None]:
    extras: dict[str, str | None] = {}
    for message in messages:
        planned.message_ids.append(message.id)
        for name, value in (message.decisions.get("properties") or {}).items():
            resolved = mapping.property_name(crm, str(name))
            if resolved is None:
                if not mapping.knows(str(name)):
                    planned.unknown.setdefault(message.id, []).append(str(name))
                continue
            crm_name, kind = resolved
            extras[crm_name] = canonical(kind, value)
    return extras


def changed_members(
    app: App, crm: Crm, mapping: Mapping, *, full: bool = False
) -> Iterator[Planned]:
    """Members whose mapped values differ from what this CRM last accepted, in id order.

    Erased members are never pushed; values the CRM refused for good are not sent again
    until they change; `full` sends everyone else regardless of the hash.
    """
    messages = pending_crm_messages(app, crm)
    codec = PropsCodec(mapping, crm)
    fields = codec.fields
    key_name = mapping.key.name_in(crm) or ""
    now = app.clock.now()
    base_url = app.settings.public_base_url
    after = 0
    while True:
        with app.database.transaction() as session:
            rows = member_rows(session, after=after, limit=PAGE, fields=fields)
            if not rows:
                return
            first, after = rows[0].id, rows[-1].id
            links: dict[int, tuple[str | None, str | None]] = {
                member_id: (pushed, refused)
                for member_id, pushed, refused in session.execute(
                    select(CrmLink.member_id, CrmLink.pushed_hash, CrmLink.failed_hash).where(
                        CrmLink.crm == crm, CrmLink.member_id.between(first, after)
                    )
                )
            }
            columns = member_columns(
                session,
                rows,
                now=now,
                public_base_url=base_url,
                default_zone=app.settings.default_time_zone,
            )
        digests = codec.digests(columns)
        for at, (member_id, digest) in enumerate(zip(columns["member_id"], digests, strict=True)):
            pushed, refused = links.get(member_id, (None, None))
            if pushed == ERASED:
                continue
            waiting = messages.get(member_id)
            if not (full or waiting or (digest != pushed and digest != refused)):
                continue
            props = codec.props({field: columns[field][at] for field in fields})
            key = props[key_name]
            if key is None:
                continue
            planned = Planned(member_id, ContactUpdate(key, props), props, digest)
            extras = _overlay(mapping, crm, waiting or [], planned)
            if extras:
                planned.update = ContactUpdate(key, {**props, **extras})
            yield planned
