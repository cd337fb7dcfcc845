"""Simulated email engagement: opens and clicks on the emails a simulation sends.

Nothing leaves a simulation, so no SendGrid event would ever say that a member
opened or clicked, and every `engaged:` condition would take its "not engaged"
path. Without rates that is what happens: the simulation does not invent
engagement (the default, 0). With `--open-rate` / `--click-rate` (global, or per
template as `TEMPLATE=RATE`, which wins over the global rate for that template)
each email the simulation sends is opened, or clicked, with that probability:

* the draw is a hash of the seed, the member, the journey, the step and the
  send time, so the same inputs give the same opens on every run, and another
  `--seed` gives another sample of the same rates;
* the click rate is a share of the sent emails, like the open rate; a clicked
  email counts as opened (as SendGrid's events are applied), so the opens are at
  least the clicks;
* an open comes 5 minutes to a day after the send, most within a few hours (the
  delay grows with the cube of a uniform draw: half the opens within about 3
  hours), and a click 1 to 10 minutes after its open;
* they reach the message at their moment on the virtual clock, through the
  SendGrid Event Webhook's own code (`channels.webhooks.apply_sendgrid_events`),
  so a condition checked before the open does not see it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from channels.webhooks import apply_sendgrid_events
from loyalty.app import App
from loyalty.models import Member, Message
from loyalty.states import MessageState

__all__ = ["EngagementRates", "SimulatedEngagement", "parse_rates"]

#: The earliest and latest open after a send, and a click's delay after its open.
FIRST_OPEN = timedelta(minutes=5)
LAST_OPEN = timedelta(days=1)
CLICK_DELAY = (timedelta(minutes=1), timedelta(minutes=10))


@dataclass(frozen=True)
class EngagementRates:
    """Open and click rates of sent emails, global and per template, and the draw's seed."""

    opens: float = 0.0
    clicks: float = 0.0
    template_opens: Mapping[str, float] = field(default_factory=dict)
    template_clicks: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0

    @property
    def given(self) -> bool:
        rates = [self.opens, self.clicks, *self.template_opens.values()]
        return any(rate > 0 for rate in [*rates, *self.template_clicks.values()])

    def of(self, template: str | None) -> tuple[float, float]:
        """The open and click rates of a template's emails."""
        name = template or ""
        return (
            self.template_opens.get(name, self.opens),
            self.template_clicks.get(name, self.clicks),
        )


def parse_rates(opens: Iterable[str], clicks: Iterable[str], seed: int = 0) -> EngagementRates:
    """Rates as the command line takes them: `0.3` (every email) or `TEMPLATE=0.3`, repeated.

    Raises ValueError with a one-line message naming the option and the fix.
    """
    open_rate, template_opens = _rates("--open-rate", opens)
    click_rate, template_clicks = _rates("--click-rate", clicks)
    return EngagementRates(open_rate, click_rate, template_opens, template_clicks, seed)


def _rates(option: str, values: Iterable[str]) -> tuple[float, dict[str, float]]:
    overall = 0.0
    per_template: dict[str, float] = {}
    for value in values:
        template, _, text = value.rpartition("=")
        try:
            rate = float(text)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0 or (value.count("=") and not template.strip()):
            raise ValueError(
                f"{option} {value}: a rate is a share between 0 and 1, for every email "
                f"or one template, e.g. {option} 0.3 or {option} offer=0.3"
            )
        if template:
            per_template[template.strip()] = rate
        else:
            overall = rate
    return overall, per_template


@dataclass(frozen=True)
class _Engagement:
    at: datetime
    message_id: int
    kind: str  # SendGrid's event: "open" or "click"


class SimulatedEngagement:
    """Draws each sent email's open and click, and applies them when their time comes."""

    def __init__(self, app: App, rates: EngagementRates, start: datetime) -> None:
        self.app = app
        self.rates = rates
        #: Emails sent after this instant are still to be decided.
        self._decided_up_to = start - timedelta(microseconds=1)
        self._due: list[tuple[datetime, int, str]] = []

    def next_at(self) -> datetime | None:
        """When the next open or click is due, if any."""
        return self._due[0][0] if self._due else None

    def apply_due(self, now: datetime) -> int:
        """The opens and clicks due by `now`, applied as SendGrid's Event Webhook would;
        how many."""
        events: list[dict[str, Any]] = []
        while self._due and self._due[0][0] <= now:
            at, message_id, kind = heapq.heappop(self._due)
            events.append(
                {
                    "event": kind,
                    "sg_event_id": f"simulated-{kind}-{message_id}",
                    "message_id": str(message_id),
                    "timestamp": int(at.timestamp()),
                }
            )
        if events:
            with self.app.database.transaction() as session:
                apply_sendgrid_events(session, events, now=now)
        return len(events)

    def decide_sent(self, now: datetime) -> None:
        """Draw the open and click of each email sent since the last call (up to `now`)."""
        if not self.rates.given:
            return
        query = (
            select(Message.id, Message.journey_id, Message.step_id, Message.template)
            .add_columns(Message.sent_at, Member.external_id)
            .join(Member, Member.id == Message.member_id)
            .where(
                Message.channel == "email",
                Message.state == MessageState.SENT,
                Message.sent_at > self._decided_up_to,
                Message.sent_at <= now,
            )
        )
        with self.app.database.sessions() as session:
            rows = session.execute(query).all()
        self._decided_up_to = now
        for message_id, journey, step, template, sent_at, member in rows:
            for engagement in self._draw(message_id, journey, step, template, sent_at, member):
                heapq.heappush(self._due, (engagement.at, engagement.message_id, engagement.kind))

    def _draw(
        self,
        message_id: int,
        journey: str | None,
        step: str | None,
        template: str | None,
        sent_at: datetime,
        member: str,
    ) -> list[_Engagement]:
        sent = sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)
        open_rate, click_rate = self.rates.of(template)
        key = f"{self.rates.seed}|{member}|{journey}|{step}|{sent.isoformat()}"
        chance, delay, click_delay = _uniforms(key, 3)
        if chance >= max(open_rate, click_rate):
            return []
        # Whole seconds: the webhook's timestamps are.
        opened = _whole_second(sent + FIRST_OPEN + (LAST_OPEN - FIRST_OPEN) * delay**3)
        found = [_Engagement(opened, message_id, "open")]
        if chance < click_rate:
            low, high = CLICK_DELAY
            found.append(
                _Engagement(
                    _whole_second(opened + low + (high - low) * click_delay), message_id, "click"
                )
            )
        return found


def _uniforms(key: str, count: int) -> list[float]:
    """`count` numbers in [0, 1) drawn from the key (8 bytes of its SHA-256 each)."""
    digest = hashlib.sha256(key.encode()).digest()
    return [int.from_bytes(digest[8 * i : 8 * i + 8], "big") / 2**64 for i in range(count)]


def _whole_second(at: datetime) -> datetime:
    return at.replace(microsecond=0) + (timedelta(seconds=1) if at.microsecond else timedelta())
