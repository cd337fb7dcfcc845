"""Recording a push's answers: links of landed members, errors of refused ones.

The CRM's answers are recorded by one thread beside the calls (`Recorder`), so that
writing them never holds up planning and sending the next batches; answers that arrive
while it writes are recorded together, in one transaction. A run that dies loses at
most the answers not yet recorded: those members are sent again by the next run, an
upsert of the same values.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_sync.adapters import configured_crms
from crm_sync.mapping import Crm
from crm_sync.plan import Planned
from crm_sync.port import PushResult, RecordFailure
from loyalty.app import App
from loyalty.models import Base, CrmLink, Message
from loyalty.states import CrmAnswer, MessageState

__all__ = ["PushReport", "Recorder", "record"]

log = logging.getLogger("crm_sync")

Answer = tuple[list[Planned], PushResult]


@dataclass
class PushReport:
    crm: str
    sent: int = 0
    landed: int = 0
    failed: int = 0
    calls: int = 0
    messages: int = 0
    stopped: str | None = None

    def summary(self) -> str:
        text = (
            f"{self.crm}: {self.sent} members sent in {self.calls} "
            f"call{'' if self.calls == 1 else 's'}, {self.landed} landed, "
            f"{self.failed} failed, {self.messages} journey updates"
        )
        return f"{text}; stopped: {self.stopped}" if self.stopped else text


class Recorder:
    """Records answers in a thread of its own, those that wait together in one go."""

    def __init__(self, app: App, crm: Crm, report: PushReport) -> None:
        self.app, self.crm, self.report = app, crm, report
        #: The first error met while recording; the run stops sending once it is set.
        self.failure: BaseException | None = None
        self._queue: queue.SimpleQueue[Answer | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"crm-{crm}-record", daemon=True)
        self._thread.start()

    def put(self, batch: list[Planned], result: PushResult) -> None:
        self._queue.put((batch, result))

    def close(self) -> None:
        """Record what is left and end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while not self._queue.empty():
                items.append(self._queue.get())
            answers = [item for item in items if item is not None]
            if self.failure is None:
                try:
                    record(self.app, self.crm, answers, self.report)
                except BaseException as exc:
                    self.failure = exc
            if None in items:
                return


def record(
    app: App,
    crm: Crm,
    answers: list[tuple[list[Planned], PushResult]],
    report: PushReport,
) -> None:
    """Store batches' answers: links of landed members, errors of refused ones."""
    if not answers:
        return
    now = app.clock.now()
    landed: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    outcomes: dict[int, tuple[Crm, str | None]] = {}
    for batch, result in answers:
        report.calls += result.calls
        _sort(crm, batch, result, now, landed, refused, outcomes)
    report.sent += len(landed) + len(refused)
    report.landed += len(landed)
    report.failed += len(refused)
    with app.database.transaction() as session:
        _upsert_links(session, landed)
        _upsert_links(session, refused)
        report.messages += _settle_messages(session, app, outcomes, now)


def _sort(
    crm: Crm,
    batch: list[Planned],
    result: PushResult,
    now: datetime,
    landed: list[dict[str, Any]],
    refused: list[dict[str, Any]],
    outcomes: dict[int, tuple[Crm, str | None]],
) -> None:
    """One batch's answer as link rows (landed or refused) and journey update outcomes."""
    for planned in batch:
        if planned.update.key in result.skipped:
            continue
        key = planned.update.key
        error: str | None = None
        if key in result.landed:
            landed.append(
                {
                    "member_id": planned.member_id,
                    "crm": crm,
                    "crm_id": result.landed[key],
                    "pushed_hash": planned.hash,
                    "pushed_values": dict(planned.props),
                    "pushed_at": now,
                    "error": None,
                    "error_at": None,
                    "failed_hash": None,
                }
            )
        else:
            failure = result.failed.get(key, RecordFailure("no answer", retriable=True))
            error = failure.error
            refused.append(
                {
                    "member_id": planned.member_id,
                    "crm": crm,
                    "error": error,
                    "error_at": now,
                    "failed_hash": None if failure.retriable else planned.hash,
                }
            )
            log.warning(
                "crm.push_refused",
                extra={"crm": crm, "member_id": planned.member_id, "error": error},
            )
        for message_id in planned.message_ids:
            unknown = planned.unknown.get(message_id)
            note = error or (f"unknown CRM property {', '.join(unknown)}" if unknown else None)
            outcomes[message_id] = (crm, note)


def _upsert_links(session: Session, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (member_id, crm) DO UPDATE, as one executemany.

    The ORM would insert new links one row at a time (SQLite cannot return many ids).
    """
    if not rows:
        return
    table = Base.metadata.tables[CrmLink.__tablename__]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    changes: dict[str, Any] = {
        name: statement.excluded[name] for name in rows[0] if name not in ("member_id", "crm")
    }
    if "crm_id" in changes:  # keep the id we know when the CRM did not repeat it
        changes["crm_id"] = func.coalesce(statement.excluded.crm_id, table.c.crm_id)
    session.execute(
        statement.on_conflict_do_update(index_elements=["member_id", "crm"], set_=changes), rows
    )


def _settle_messages(
    session: Session, app: App, outcomes: dict[int, tuple[Crm, str | None]], now: datetime
) -> int:
    """Note each CRM's answer on the `update_crm` rows; done once every CRM answered."""
    if not outcomes:
        return 0
    wanted = set(configured_crms(app.settings))
    for message in session.scalars(select(Message).where(Message.id.in_(list(outcomes)))):
        crm, error = outcomes[message.id]
        answer = error or CrmAnswer.SENT
        answers: dict[str, Any] = {**(message.decisions.get("crm") or {}), crm: answer}
        message.decisions = {**message.decisions, "crm": answers}
        message.updated_at = now
        if wanted <= set(answers) and message.state == MessageState.PENDING:
            errors = [
                f"{name}: {text}"
                for name, text in sorted(answers.items())
                if text != CrmAnswer.SENT
            ]
            message.state = MessageState.FAILED if errors else MessageState.SENT
            message.error = "; ".join(errors) or None
            message.sent_at = now
            message.attempts = (message.attempts or 0) + 1
    return len(outcomes)
