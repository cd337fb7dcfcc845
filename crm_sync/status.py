"""Where each CRM's sync stands: links, pending changes, cursors and the latest errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from crm_sync.adapters import configured_crms, mapping_for
from crm_sync.plan import changed_members
from loyalty.app import App
from loyalty.models import CrmLink, Member, SyncCursor

__all__ = ["CrmStatus", "crm_status"]


@dataclass
class CrmStatus:
    crm: str
    linked: int
    pending: int
    #: SyncDirection ("push", "pull") → its cursor row, when the direction ever ran.
    cursors: dict[str, SyncCursor] = field(default_factory=dict)
    #: (member external id, error, when), newest first.
    errors: list[tuple[str, str, datetime]] = field(default_factory=list)


def crm_status(app: App, *, errors: int = 20) -> list[CrmStatus]:
    """The status of each configured CRM; empty when CRM sync is off."""
    mapping = mapping_for(app.settings)
    found = []
    for name in configured_crms(app.settings):
        with app.database.transaction() as session:
            cursors = {
                row.direction: row
                for row in session.scalars(select(SyncCursor).where(SyncCursor.crm == name))
            }
            session.expunge_all()
            linked = session.scalar(select(func.count()).where(CrmLink.crm == name)) or 0
            latest = session.execute(
                select(Member.external_id, CrmLink.error, CrmLink.error_at)
                .join(Member, Member.id == CrmLink.member_id)
                .where(CrmLink.crm == name, CrmLink.error.is_not(None))
                .order_by(CrmLink.error_at.desc())
                .limit(errors)
            ).all()
        pending = sum(1 for _ in changed_members(app, name, mapping))
        found.append(
            CrmStatus(
                name,
                int(linked),
                pending,
                cursors,
                [(str(e), str(m), at) for e, m, at in latest if at is not None],
            )
        )
    return found
