"""What the soak feeds the program: a member file and a stream of shop events.

Members live in time zones where it is day now (so SMS are outside quiet hours)
and a share of them has a birthday today in their own zone (the birthday
journey sends an email and an SMS). Events enrol members, complete orders,
refund part of them, redeem points, and repeat some of themselves: the same
event id twice, and the same order under another event id.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loyalty.member_rows import KNOWN_COLUMNS

__all__ = [
    "EventStream",
    "OrderLog",
    "SoakMember",
    "day_zones",
    "members",
    "write_events",
    "write_members",
]

#: Zones spread over the offsets of the world; those where it is day now are used.
ZONES = (
    "Pacific/Pago_Pago",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Noumea",
    "Pacific/Auckland",
    "Pacific/Tongatapu",
    "Pacific/Kiritimati",
)
#: Local hours a member's zone must be in for the whole soak: past the birthday journey's
#: 09:00 and the SMS quiet hours (21:00-09:00), with half an hour to spare on each side.
DAY = (time(9, 30), time(20, 0))
#: The import columns the program knows (loyalty.member_rows).
CSV_COLUMNS = KNOWN_COLUMNS


def day_zones(now: datetime) -> list[str]:
    """The zones where the local time is within DAY at `now`."""
    return [z for z in ZONES if DAY[0] <= now.astimezone(ZoneInfo(z)).time() <= DAY[1]]


@dataclass(frozen=True)
class SoakMember:
    external_id: str
    email: str
    phone: str
    zone: str
    birthday: date
    email_consent: bool
    sms_consent: bool
    referred_by: str | None = None

    @property
    def birthday_today(self) -> bool:
        today = datetime.now(UTC).astimezone(ZoneInfo(self.zone)).date()
        return (self.birthday.month, self.birthday.day) == (today.month, today.day)


def members(
    rng: random.Random,
    count: int,
    *,
    prefix: str = "m",
    start: int = 0,
    birthday_share: float = 0.25,
    now: datetime | None = None,
) -> list[SoakMember]:
    """`count` members; `birthday_share` of them have their birthday today, locally."""
    now = now or datetime.now(UTC)
    zones = day_zones(now)
    out = []
    for n in range(start, start + count):
        zone = rng.choice(zones)
        today = now.astimezone(ZoneInfo(zone)).date()
        year = rng.randint(1960, 2004)
        if rng.random() < birthday_share:
            month, day = today.month, today.day
            if (month, day) == (2, 29):
                year = 2000  # a leap year, so the date exists
        else:  # at least a few days away from today everywhere
            other = today + timedelta(days=rng.randint(5, 350))
            month, day = other.month, min(other.day, 28)
        local = f"{prefix}{n:05d}"
        tag = rng.choices(["", "+open", "+bounce"], weights=[94, 4, 2])[0]
        out.append(
            SoakMember(
                external_id=f"soak-{local}",
                email=f"{local}{tag}@example.com",
                phone=f"+4860{n:07d}",
                zone=zone,
                birthday=date(year, month, day),
                email_consent=rng.random() < 0.9,
                sms_consent=rng.random() < 0.7,
            )
        )
    return out


def write_members(path: Path, rows: list[SoakMember], codes: dict[str, str] | None = None) -> None:
    """A CSV for `loyalty members import`; `codes` maps a referrer's external id to its code."""
    codes = codes or {}
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for m in rows:
            writer.writerow(
                [
                    m.external_id,
                    m.email,
                    m.phone,
                    m.external_id.split("-")[-1].title(),
                    "Soak",
                    "pl" if m.zone == "Europe/Warsaw" else "en",
                    m.zone,
                    m.birthday.isoformat(),
                    "yes" if m.email_consent else "no",
                    "yes" if m.sms_consent else "no",
                    codes.get(m.referred_by or "", ""),
                ]
            )


@dataclass
class OrderLog:
    """One order as the shop sent it, and the refunds sent for it."""

    order_id: str
    member: str
    total: Decimal
    refunds: list[Decimal] = field(default_factory=list)
    full_refund: bool = False

    @property
    def refunded(self) -> Decimal:
        return sum(self.refunds, Decimal(0))

    def clawback_ceiling(self, earned: int) -> int:
        """The most points its refunds may take back from the `earned` points of the order."""
        if self.full_refund:
            return earned
        share = min(self.refunded / self.total, Decimal(1))
        return int((earned * share).to_integral_value(rounding="ROUND_FLOOR"))


class EventStream:
    """Batches of JSONL event lines, with the repeats a real shop integration produces."""

    def __init__(self, rng: random.Random, members: list[SoakMember], referees: list[str]) -> None:
        self.rng = rng
        self._to_enrol = [m.external_id for m in members]
        rng.shuffle(self._to_enrol)
        self._members = [m.external_id for m in members]
        self._referees = list(referees)
        self.orders: dict[str, OrderLog] = {}
        self._sent: list[dict[str, Any]] = []
        self._seq = 0

    def _id(self, kind: str) -> str:
        self._seq += 1
        return f"soak-{kind}-{self._seq:06d}"

    def _order(self, member: str) -> dict[str, Any]:
        order_id = f"S-{self._seq + 1:06d}"
        total = Decimal(self.rng.randint(500, 40_000)) / 100
        self.orders[order_id] = OrderLog(order_id, member, total)
        data = {"order_id": order_id, "total": str(total), "currency": "USD"}
        return {"type": "order.completed", "member": member, "id": self._id("o"), "data": data}

    def _refund(self) -> dict[str, Any] | None:
        open_orders = [
            o for o in self.orders.values() if not o.full_refund and o.refunded < o.total
        ]
        if not open_orders:
            return None
        order = self.rng.choice(open_orders)
        data: dict[str, Any] = {"order_id": order.order_id}
        if self.rng.random() < 0.15 and not order.refunds:
            order.full_refund = True
        else:
            left = order.total - order.refunded
            share = Decimal(self.rng.randint(20, 60)) / 100
            amount = min(left, (order.total * share).quantize(Decimal("0.01")))
            order.refunds.append(amount)
            data["total"] = str(amount)
        return {"type": "order.refunded", "member": order.member, "id": self._id("r"), "data": data}

    @property
    def left_to_enrol(self) -> int:
        return len(self._to_enrol)

    def batch(self, size: int, enrol: int) -> list[dict[str, Any]]:
        """About `size` events, `enrol` of them sign-ups; refunds only for earlier batches."""
        lines: list[dict[str, Any]] = []
        for _ in range(min(enrol, len(self._to_enrol))):
            member = self._to_enrol.pop()
            lines.append({"type": "member.enrolled", "member": member, "id": self._id("e")})
        if self._referees and self.rng.random() < 0.5:
            lines.append(self._order(self._referees.pop()))  # a referee's first order
        refundable = bool(self.orders)
        while len(lines) < size:
            roll = self.rng.random()
            if roll < 0.6:
                lines.append(self._order(self.rng.choice(self._members)))
            elif roll < 0.8 and refundable:
                refund = self._refund()
                if refund is not None:
                    lines.append(refund)
            elif roll < 0.88:
                data = {"points": self.rng.randint(5, 40), "reward": "coffee"}
                member = self.rng.choice(self._members)
                lines.append(
                    {"type": "reward.redeemed", "member": member, "id": self._id("d"), "data": data}
                )
            elif roll < 0.94 and self._sent:
                lines.append(self.rng.choice(self._sent))  # the same event id again
            elif self.orders:
                # The same order under another event id (a retried webhook from the shop).
                order = self.orders[self.rng.choice(list(self.orders))]
                data = {"order_id": order.order_id, "total": str(order.total), "currency": "USD"}
                lines.append(
                    {
                        "type": "order.completed",
                        "member": order.member,
                        "id": self._id("o"),
                        "data": data,
                    }
                )
        self._sent.extend(lines)
        return lines

    def rest(self) -> list[dict[str, Any]]:
        """Whatever must still go out: the remaining sign-ups and referees' first orders."""
        lines = [
            {"type": "member.enrolled", "member": m, "id": self._id("e")} for m in self._to_enrol
        ]
        self._to_enrol.clear()
        lines += [self._order(r) for r in self._referees]
        self._referees.clear()
        self._sent.extend(lines)
        return lines


def write_events(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
