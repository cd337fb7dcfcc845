"""What a soak watches: which of our messages the providers accepted, and whether the
program has gone quiet.

Our message id travels in SendGrid's `custom_args` and in the Twilio status callback
URL, so every accepted request names the messages it carried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from automations.definition import DateTrigger
from automations.triggers.date_scan import due_date_entries
from automations.versions import latest_versions, load_version
from loyalty.db import Database
from loyalty.models import Enrollment, Event, Message
from loyalty.settings import Settings
from loyalty.states import EnrollmentState, MessageState
from sandbox.recorder import RecordedRequest
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox

__all__ = ["CHANNELS", "Progress", "ProviderLog", "progress", "sendgrid_log", "twilio_log"]

CHANNELS = ("email", "sms")


# -- the providers' side ---------------------------------------------------------------


@dataclass
class ProviderLog:
    """Which of our message ids a provider accepted, and the faults it injected."""

    accepted: Counter[int] = field(default_factory=Counter)
    #: Message ids of requests the provider processed but never answered.
    dropped: set[int] = field(default_factory=set)
    requests: int = 0
    injected_errors: int = 0
    dropped_answers: int = 0

    def add(self, request: RecordedRequest, ids: Iterable[int]) -> None:
        self.requests += 1
        if request.fault and request.fault.startswith(("error_", "rate_limited")):
            self.injected_errors += 1
            return  # answered without being processed
        if request.status is None or not 200 <= request.status < 300:
            return
        dropped = request.fault == "dropped"
        self.dropped_answers += dropped
        for message_id in ids:
            self.accepted[message_id] += 1
            if dropped:
                self.dropped.add(message_id)

    @property
    def duplicated(self) -> dict[int, int]:
        return {i: n for i, n in self.accepted.items() if n > 1}


def sendgrid_log(sendgrid: SendGridSandbox) -> ProviderLog:
    log = ProviderLog()
    for request in sendgrid.requests(path="/v3/mail/send", method="POST"):
        try:
            body = request.json()
            ids = [int(p["custom_args"]["message_id"]) for p in body["personalizations"]]
        except (ValueError, KeyError, TypeError):
            ids = []
        log.add(request, ids)
    return log


def twilio_log(twilio: TwilioSandbox) -> ProviderLog:
    log = ProviderLog()
    path = f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    for request in twilio.requests(path=path, method="POST"):
        query = parse_qs(urlsplit(request.form().get("StatusCallback", "")).query)
        log.add(request, [int(i) for i in query.get("message_id", []) if i.isdigit()])
    return log


# -- going quiet ----------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Work still visible somewhere; the program is quiet when all of it is zero."""

    pending: int
    claimed: int
    unprocessed_events: int
    due_enrollments: int
    due_date_entries: int
    webhooks_in_flight: bool

    @property
    def quiet(self) -> bool:
        return not (
            self.pending
            or self.claimed
            or self.unprocessed_events
            or self.due_enrollments
            or self.due_date_entries
            or self.webhooks_in_flight
        )

    def describe(self) -> str:
        return (
            f"pending {self.pending}, claimed {self.claimed}, unprocessed events "
            f"{self.unprocessed_events}, enrollments due {self.due_enrollments}, date entries "
            f"due {self.due_date_entries}, webhooks in flight {self.webhooks_in_flight}"
        )


def _date_entries_due(session: Session, settings: Settings, now: datetime) -> int:
    due = 0
    for version in latest_versions(session):
        journey = load_version(version).journey
        if isinstance(journey.trigger, DateTrigger) and journey.status == "active":
            due += len(due_date_entries(session, journey.id, journey.trigger, now, settings))
    return due


def progress(
    database: Database,
    settings: Settings,
    now: datetime,
    sendgrid: SendGridSandbox,
    twilio: TwilioSandbox,
) -> Progress:
    with database.sessions() as session:
        states = dict(
            session.execute(
                select(Message.state, func.count())
                .where(Message.channel.in_(CHANNELS))
                .where(
                    or_(
                        Message.state.in_((MessageState.PENDING, MessageState.CLAIMED)),
                        and_(
                            Message.state == MessageState.DEFERRED,
                            Message.next_attempt_at <= now,
                        ),
                    )
                )
                .group_by(Message.state)
            ).all()
        )
        events = session.scalar(select(func.count()).where(Event.processed_at.is_(None))) or 0
        enrollments = (
            session.scalar(
                select(func.count()).where(
                    or_(
                        Enrollment.state == EnrollmentState.ACTIVE,
                        and_(
                            Enrollment.state == EnrollmentState.WAITING,
                            Enrollment.next_run_at <= now,
                        ),
                    )
                )
            )
            or 0
        )
        dates = _date_entries_due(session, settings, now)
    busy = not (sendgrid.wait_idle(timeout=0) and twilio.wait_idle(timeout=0))
    return Progress(
        pending=states.get(MessageState.PENDING, 0) + states.get(MessageState.DEFERRED, 0),
        claimed=states.get(MessageState.CLAIMED, 0),
        unprocessed_events=events,
        due_enrollments=enrollments,
        due_date_entries=dates,
        webhooks_in_flight=busy,
    )
