"""Delivering one outbox row by its channel: email and SMS, journey `http` calls, CRM tasks.

A `crm_task` row goes through the outbox states as the others do: claimed, "request
left" committed before the first CRM request, then settled. Its decisions keep each
CRM's result (`tasks`: the task id, or why the CRM was skipped or refused it), so a
retry only does what is left, and the CRMs a try asked (`asked`, committed with the
claim): a later try there may follow a lost answer, so it looks for the step's task on
the contact before opening one (`crm_sync.tasks`), also after a dead-letter replay.
A CRM that is configured but has no contact for the member yet is waited for (the
CRM push links it) until SEND_MAX_ATTEMPTS tries, then skipped with that reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from channels import claims, delivery, email_batches
from channels.http_calls import deliver_call
from channels.outcomes import Outcome, OutcomeKind
from channels.retries import retry_later
from crm_sync.adapters import configured_crms
from crm_sync.tasks import TaskRefused, TaskRetry, TaskSpec, open_task, task_openers
from loyalty.app import App
from loyalty.models import CrmLink, Message
from loyalty.states import MessageState

__all__ = ["deliver", "deliver_task", "retry_unknown"]

log = logging.getLogger(__name__)


def deliver(app: App, message_id: int) -> str | email_batches.Gathering | None:
    """Deliver one outbox row if it is due; its new state (None: nothing to do here), or
    the wait of the email batch it leads (`channels.email_batches.send_email_batch`)."""
    if not claims.uses_sendgrid(app) and not claims.uses_twilio(app):
        # Every email and SMS goes to the local outbox: one transaction reads and sends it.
        done = delivery.deliver_locally(app, message_id)
        if not isinstance(done, delivery.NotLocal):
            return done
    with app.database.sessions() as session:
        message = session.execute(
            select(*email_batches.LOOKED_AT).where(Message.id == message_id)
        ).first()
    channel = message.channel if message is not None else None
    if channel == "http":
        return deliver_call(app, message_id)
    if channel == "crm_task":
        return deliver_task(app, message_id)
    return delivery.deliver(app, message_id, message)


def deliver_task(app: App, message_id: int) -> str | None:
    """Open the step's follow-up task in each CRM that can take it."""
    claimed = _claim_task(app, message_id)
    if claimed is None:
        return None
    specs, targets, look_first = claimed
    if app.settings.journey_calls_local:
        return _write_locally(app, message_id, specs)
    results: dict[str, dict[str, Any]] = {}
    retry: list[str] = []
    if targets:
        if not claims.request_left(app, [message_id]):
            return None  # the claim lapsed and is another worker's now
        openers = task_openers(app)
        for crm, contact_id in targets.items():
            try:
                task_id = open_task(
                    openers[crm], contact_id, specs[crm], look_first=look_first[crm]
                )
            except TaskRetry as exc:
                retry.append(f"{crm}: {exc}")
                continue
            except TaskRefused as exc:
                results[crm] = {"refused": str(exc)}
                continue
            results[crm] = {"id": task_id, "contact": contact_id}
    return _record_task(app, message_id, results, retry)


def _claim_task(
    app: App, message_id: int
) -> tuple[dict[str, TaskSpec], dict[str, str], dict[str, bool]] | None:
    """Claim a due row; per CRM still to get it, the task, the contact and whether an
    earlier try asked that CRM already. CRMs that cannot take it are recorded as skipped."""
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.channel != "crm_task":
            return None
        if message.state != MessageState.PENDING:
            return None
        if message.next_attempt_at is not None and message.next_attempt_at > now:
            return None
        message.attempts += 1
        message.state = MessageState.CLAIMED
        message.request_at = None
        message.updated_at = now
        results = dict(message.decisions.get("tasks") or {})
        configured = set(configured_crms(app.settings))
        targets: dict[str, str] = {}
        last_try = message.attempts >= app.settings.send_max_attempts
        for crm in message.decisions.get("crms") or []:
            if crm in results:
                continue
            if crm not in configured and not app.settings.journey_calls_local:
                results[crm] = {"skipped": f"{crm} is not configured"}
                continue
            contact = _contact_id(session, message.member_id, crm)
            if contact is not None or app.settings.journey_calls_local:
                targets[crm] = contact or "local"
            elif last_try:
                results[crm] = {"skipped": f"the member has no {crm} contact (not pushed yet)"}
        # CRMs an earlier try asked (its answer may be lost): look before opening there.
        asked = set(message.decisions.get("asked") or [])
        look_first = {crm: crm in asked for crm in targets}
        message.decisions = {
            **message.decisions,
            "tasks": results,
            "asked": sorted(asked | set(targets)),
        }
        task = message.decisions["task"]
        spec = TaskSpec(
            key=message.idempotency_key,
            subject=task["subject"],
            body=task.get("body") or "",
            due_at=datetime.fromisoformat(task["due_at"]),
            due_date=task["due_date"],
            priority=task["priority"],
        )
        owners = task.get("owners") or {}
        specs = {crm: replace(spec, owner=owners.get(crm)) for crm in targets}
        return specs, targets, look_first


def _contact_id(session: Session, member_id: int, crm: str) -> str | None:
    return session.scalar(
        select(CrmLink.crm_id).where(
            CrmLink.member_id == member_id, CrmLink.crm == crm, CrmLink.crm_id.is_not(None)
        )
    )


def _record_task(
    app: App, message_id: int, results: dict[str, dict[str, Any]], retry: list[str]
) -> str | None:
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.state != MessageState.CLAIMED:
            return message.state if message else None
        done = {**(message.decisions.get("tasks") or {}), **results}
        message.decisions = {**message.decisions, "tasks": done}
        message.updated_at = now
        waiting = [c for c in message.decisions.get("crms") or [] if c not in done]
        if waiting:
            reason = "; ".join(retry) or "waiting for the member's contact in " + ", ".join(waiting)
            outcome = Outcome(OutcomeKind.RETRY, error=reason)
            return retry_later(session, app.settings, [message_id], outcome, now)
        opened = [c for c, r in done.items() if "id" in r]
        refused = [f"{r['refused']}" for r in done.values() if "refused" in r]
        skipped = [r["skipped"] for r in done.values() if "skipped" in r]
        if refused:
            message.state, message.error = MessageState.FAILED, "; ".join(refused + skipped)
        elif opened:
            message.state, message.sent_at = MessageState.SENT, now
            message.error = "; ".join(skipped) or None
            message.provider_id = ",".join(f"{c}:{done[c]['id']}" for c in opened)[:128]
        else:
            message.state = MessageState.SUPPRESSED
            message.error = "no CRM could take the task: " + "; ".join(skipped)
    log.info("crm_task.outcome", extra={"message_id": message_id, "state": message.state})
    return message.state


def _write_locally(app: App, message_id: int, specs: dict[str, TaskSpec]) -> str | None:
    """The task as it would be opened, in the local outbox (`JOURNEY_CALLS_LOCAL`)."""
    folder = Path(app.settings.outbox_dir) / "crm_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        crm: {
            "subject": spec.subject,
            "notes": spec.notes(),
            "due_date": spec.due_date,
            "priority": spec.priority,
            "owner": spec.owner,
        }
        for crm, spec in specs.items()
    }
    path = folder / f"{message_id}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    results = {crm: {"id": f"local:{path.name}"} for crm in specs}
    return _record_task(app, message_id, results, [])


def retry_unknown(app: App) -> list[int]:
    """Journey calls and CRM tasks left unknown (a worker died with a request out) back to
    pending, due now; what the relay queues again.

    Safe because every try repeats without a second effect (the `http` step's idempotency
    key, the CRM task's look before opening). Each try counted, so one that never gets an
    answer still fails after its maximum attempts.
    """
    now = app.clock.now()
    limits = {"http": app.settings.http_max_attempts, "crm_task": app.settings.send_max_attempts}
    ids: list[int] = []
    with app.database.transaction() as session:
        for channel, limit in limits.items():
            unknown = (Message.channel == channel, Message.state == MessageState.UNKNOWN)
            ids += session.scalars(
                update(Message)
                .where(*unknown, Message.attempts < limit)
                .values(
                    state=MessageState.PENDING, next_attempt_at=now, request_at=None, updated_at=now
                )
                .returning(Message.id)
            ).all()
            session.execute(
                update(Message)
                .where(*unknown)
                .values(
                    state=MessageState.FAILED,
                    error=f"no answer after {limit} attempts",
                    updated_at=now,
                )
            )
    return ids
