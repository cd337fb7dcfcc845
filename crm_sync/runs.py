"""Push runs and erasure: what the scheduler, the CLI and journeys' `update_crm` share.

A push sends the changed members in batches, a few in flight at once, plans the next
batches while the calls wait on the pacer, and records the answers as they arrive
(`crm_sync.answers`). A run that dies therefore loses at most the batches in flight and
the answers not yet recorded; everything recorded is not sent again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_sync.adapters import configured_crms, make_adapter, mapping_for
from crm_sync.answers import PushReport, Recorder
from crm_sync.delta import ERASED
from crm_sync.errors import CrmRefused
from crm_sync.mapping import Crm
from crm_sync.plan import Planned, changed_members
from crm_sync.port import CrmPort, PushResult
from loyalty.app import App
from loyalty.erasure import erase_member as erase_personal_data
from loyalty.errors import ConfigError, FatalError, RetriableError
from loyalty.ledger import lock_member
from loyalty.metrics import CRM_RECORDS
from loyalty.models import CrmLink, Member, Message, SyncCursor
from loyalty.states import MessageState, SyncDirection

__all__ = [
    "REFUSALS",
    "REFUSAL_BACKOFF_FIRST",
    "REFUSAL_BACKOFF_MAX",
    "PushReport",
    "crm_due",
    "erase_everywhere",
    "erase_member",
    "next_try",
    "record_refusal",
    "run_push",
    "touch_cursor",
]

log = logging.getLogger("crm_sync")


#: Batches planned ahead of the calls (on top of those in flight), planned while the calls
#: wait on the pacer.
PLANNED_AHEAD = 50


def _batches(plans: Iterator[Planned], adapter: CrmPort, lookahead: int) -> Iterator[list[Planned]]:
    """Batches of the size the adapter asks for, knowing up to `lookahead` members ahead."""
    buffer: deque[Planned] = deque()
    exhausted = False
    size = 0
    while True:
        while not exhausted and len(buffer) < max(lookahead + 1, size):
            nxt = next(plans, None)
            if nxt is None:
                exhausted = True
            else:
                buffer.append(nxt)
        if not size:
            size = adapter.batch_size(len(buffer))
            continue  # fill up to the chosen size first
        if not buffer:
            return
        yield [buffer.popleft() for _ in range(min(size, len(buffer)))]


def run_push(
    app: App, crm: str, *, full: bool = False, adapter: CrmPort | None = None
) -> PushReport:
    """Push every member whose mapped values changed (all members with `full`)."""
    mapping = mapping_for(app.settings)
    adapter = adapter or make_adapter(app, crm, mapping)
    name: Crm = adapter.name
    report = PushReport(name)
    plans = changed_members(app, name, mapping, full=full)
    lookahead = app.settings.salesforce_bulk_threshold
    if adapter.batch_size(1) == adapter.batch_size(lookahead + 1):
        lookahead = 0  # the batch size does not depend on how many wait: start at once
    workers = app.settings.crm_push_concurrency
    failure: BaseException | None = None
    recorder = Recorder(app, name, report)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"crm-{name}") as pool:
            in_flight: dict[Future[PushResult], list[Planned]] = {}
            ready: deque[list[Planned]] = deque()
            batches: Iterator[list[Planned]] | None = _batches(plans, adapter, lookahead)
            while True:
                going = failure is None and not report.stopped
                while going and ready and len(in_flight) < workers * 2:
                    batch = ready.popleft()
                    future = pool.submit(adapter.push, [p.update for p in batch])
                    in_flight[future] = batch
                # While the calls in flight wait on the pacer, plan the next batches, so that
                # when the window opens again they leave at once.
                planning = going and batches is not None and len(ready) < PLANNED_AHEAD
                if planning:
                    assert batches is not None
                    following = next(batches, None)
                    if following is None:
                        batches = None
                    else:
                        ready.append(following)
                elif not in_flight and not (going and ready):
                    break
                done, _ = wait(
                    in_flight, timeout=0 if planning else None, return_when=FIRST_COMPLETED
                )
                for future in done:
                    batch = in_flight.pop(future)
                    try:
                        result = future.result()
                    except (RetriableError, FatalError) as exc:
                        failure = failure or exc
                        report.stopped = str(exc)
                        continue
                    except BaseException as exc:
                        failure = failure or exc
                        report.stopped = report.stopped or f"unexpected {type(exc).__name__}"
                        continue
                    recorder.put(batch, result)
                    if result.stop and not report.stopped:
                        report.stopped = result.stop
                if recorder.failure is not None:
                    failure = failure or recorder.failure
    finally:
        recorder.close()
    if recorder.failure is not None:
        raise recorder.failure
    touch_cursor(app, name, SyncDirection.PUSH, error=report.stopped)
    CRM_RECORDS.labels(name, "push", "landed").inc(report.landed)
    CRM_RECORDS.labels(name, "push", "failed").inc(report.failed)
    log.info(
        "crm.push",
        extra={
            "crm": name,
            "sent": report.sent,
            "landed": report.landed,
            "failed": report.failed,
            "calls": report.calls,
        },
    )
    if failure is not None and not isinstance(failure, RetriableError):
        raise failure
    return report


def _links(session: Session, crm: Crm, member_ids: Sequence[int]) -> dict[int, CrmLink]:
    links = {
        link.member_id: link
        for link in session.scalars(
            select(CrmLink).where(CrmLink.crm == crm, CrmLink.member_id.in_(member_ids))
        )
    }
    for member_id in member_ids:
        if member_id not in links:
            links[member_id] = CrmLink(member_id=member_id, crm=crm)
            session.add(links[member_id])
    return links


def touch_cursor(
    app: App,
    crm: str,
    direction: SyncDirection,
    *,
    cursor: str | None = None,
    error: str | None = None,
) -> None:
    """Remember when a run ended, and how (the cursor only moves when given)."""
    with app.database.transaction() as session:
        row = session.get(SyncCursor, (crm, direction))
        if row is None:
            row = SyncCursor(crm=crm, direction=direction)
            session.add(row)
        if cursor is not None:
            row.cursor = cursor
        row.last_run_at = app.clock.now()
        row.last_error = error
        if error is None:
            row.refusals = 0


#: A CRM that refused a run (bad credentials, a field missing from its schema, a wrong
#: mapping) is tried again after this, then after twice as long each time, up to the max.
REFUSAL_BACKOFF_FIRST = timedelta(minutes=5)
REFUSAL_BACKOFF_MAX = timedelta(hours=6)

#: The failures an operator must fix: retrying on the next tick cannot help.
REFUSALS = (ConfigError, CrmRefused)


def next_try(cursor: SyncCursor | None) -> datetime | None:
    """When a refused CRM may be tried again; None when it was not refused."""
    if cursor is None or not cursor.refusals or cursor.last_run_at is None:
        return None
    wait = REFUSAL_BACKOFF_FIRST * (1 << min(cursor.refusals - 1, 16))
    return cursor.last_run_at + min(wait, REFUSAL_BACKOFF_MAX)


def crm_due(app: App, crm: str, direction: SyncDirection) -> bool:
    """False while a CRM that refused its last runs in this direction is backing off."""
    with app.database.sessions() as session:
        after = next_try(session.get(SyncCursor, (crm, direction)))
    return after is None or app.clock.now() >= after


def record_refusal(app: App, crm: str, direction: SyncDirection, error: Exception) -> datetime:
    """Note a refused run on the CRM's cursor (one status line, no dead letter); next try."""
    reason = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
    with app.database.transaction() as session:
        row = session.get(SyncCursor, (crm, direction), with_for_update=True)
        if row is None:
            row = SyncCursor(crm=crm, direction=direction, refusals=0)
            session.add(row)
        row.last_run_at = app.clock.now()
        row.last_error = f"refused: {reason}"
        row.refusals = (row.refusals or 0) + 1
        after = next_try(row)
    assert after is not None
    log.warning(
        "crm.refused",
        extra={
            "crm": crm,
            "direction": str(direction),
            "refusals": row.refusals,
            "reason": reason,
            "next_try": after.isoformat(),
        },
    )
    return after


def erase_member(
    app: App, member_id: int, *, adapters: dict[str, CrmPort] | None = None
) -> dict[str, bool]:
    """Remove the member's data from every configured CRM; per CRM, whether it was there.

    The links stay, marked erased, so that no later push recreates the contact.
    """
    with app.database.transaction() as session:
        member = session.get(Member, member_id)
        if member is None:
            return {}
        key = member.external_id
        links = {
            link.crm: link.crm_id
            for link in session.scalars(select(CrmLink).where(CrmLink.member_id == member_id))
        }
    outcome: dict[str, bool] = {}
    crms = list(adapters) if adapters else configured_crms(app.settings)
    for crm in crms:
        adapter = (adapters or {}).get(crm) or make_adapter(app, crm)
        outcome[crm] = adapter.erase(key, links.get(crm))
        with app.database.transaction() as session:
            link = _links(session, adapter.name, [member_id])[member_id]
            link.pushed_hash, link.pushed_values, link.crm_id = ERASED, None, None
            link.pushed_at, link.error, link.error_at, link.failed_hash = (
                app.clock.now(),
                None,
                None,
                None,
            )
        log.info("crm.erased", extra={"crm": crm, "member_id": member_id, "found": outcome[crm]})
    with app.database.transaction() as session:
        for message in session.scalars(
            select(Message).where(
                Message.member_id == member_id,
                Message.channel == "crm",
                Message.state == MessageState.PENDING,
            )
        ):
            message.state, message.error = MessageState.SUPPRESSED, "member erased"
            message.updated_at = app.clock.now()
    return outcome


def erase_everywhere(
    app: App, member_id: int, *, erase_files: Callable[[list[int]], int]
) -> tuple[dict[str, bool], dict[str, int]]:
    """GDPR erasure: the CRMs first (they need the ids about to be blanked), then here.

    `erase_files` removes the local copies of the member's messages, given their ids
    (`channels.outbox.erase_files`, which this room cannot import); it runs once the
    database's erasure is committed. Returns per CRM whether the contact was there,
    and what changed here (queued messages cancelled, journeys ended, files removed…).
    """
    reached = erase_member(app, member_id)
    with app.database.transaction() as session:
        member = lock_member(session, member_id)
        stopped = erase_personal_data(session, member, now=app.clock.now())
        sent = session.scalars(
            select(Message.id).where(
                Message.member_id == member_id, Message.channel.in_(("email", "sms"))
            )
        ).all()
    stopped["files_removed"] = erase_files(list(sent))
    return reached, stopped
