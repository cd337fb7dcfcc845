"""Conditions: a small, safe expression language (all / any / not / comparisons) and its evaluator.

Conditions are data, never code: ``evaluate`` walks the model and reads plain
dicts, so a definition cannot run anything, and the same condition gives the
same answer for the same member, event and clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .base import Identifier, Name, StrictModel, problem
from .durations import Duration
from .fields import DEFAULT_TIERS, MEMBER_FIELDS, suggest
from .program import program_of

__all__ = [
    "AllCondition",
    "AnyCondition",
    "Condition",
    "ConditionError",
    "ConsentCondition",
    "Context",
    "EmailEngagement",
    "EngagedCondition",
    "EventCount",
    "EventCountCondition",
    "FieldCondition",
    "NotCondition",
    "evaluate",
    "iter_conditions",
]

Scalar = str | int | float | bool | None

FIELD_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains")
TIME_OPS = ("within", "older_than")
COUNT_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")


class ConditionError(Exception):
    """The evaluation context lacks something the condition needs (a programming error)."""


class AllCondition(StrictModel):
    """True when every condition is true (an empty list is true)."""

    all: list[Condition]


class AnyCondition(StrictModel):
    """True when at least one condition is true (an empty list is false)."""

    any: list[Condition]


class NotCondition(StrictModel):
    """True when the inner condition is false."""

    not_: Condition = Field(alias="not")


class FieldCondition(StrictModel):
    """Compare one field: a member field, ``attributes.X`` or ``event.X`` (the event payload)."""

    field: str
    eq: Scalar = None
    ne: Scalar = None
    gt: int | float | str | None = None
    gte: int | float | str | None = None
    lt: int | float | str | None = None
    lte: int | float | str | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    exists: bool | None = None
    contains: Scalar = None
    within: Duration | None = Field(default=None, description="datetime field within this long ago")
    older_than: Duration | None = Field(default=None, description="datetime field longer ago")

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if not _PATH.match(value):
            raise problem(
                "field", f"`{value}` is not a field path", "e.g. tier, attributes.vip, event.total"
            )
        root, _, rest = value.partition(".")
        if root in ("attributes", "event") and rest:
            return value
        name = rest if root == "member" and rest else value
        if name not in MEMBER_FIELDS or name == "attributes":
            hint = suggest(name, [*MEMBER_FIELDS, "attributes.<name>", "event.<name>"])
            raise problem("field", f"unknown field `{value}`", hint)
        return value

    @field_validator("eq", "ne", "gt", "gte", "lt", "lte", "in_", "not_in", "contains")
    @classmethod
    def _known_tier(cls, value: Any, info: ValidationInfo) -> Any:
        program = program_of(info)
        if program is None or info.data.get("field") not in ("tier", "member.tier"):
            return value
        for tier in value if isinstance(value, list) else [value]:
            if tier is not None and tier not in program.tiers:
                raise problem(
                    "tier",
                    f"unknown tier `{tier}`; the tiers are {', '.join(program.tiers)}",
                    _tier_hint(str(tier), program.tiers),
                )
        return value

    @model_validator(mode="after")
    def _one_operator(self) -> FieldCondition:
        ops = self.operators
        if len(ops) != 1:
            listed = ", ".join(ops) if ops else "none"
            raise problem(
                "operator",
                f"a field condition needs exactly one operator, found {listed}",
                "use one of: " + ", ".join((*FIELD_OPS, *TIME_OPS)),
            )
        return self

    @property
    def operators(self) -> list[str]:
        """The operators written (``in`` for the ``in_`` attribute)."""
        set_ = self.model_fields_set
        ops = [op for op in FIELD_OPS if ("in_" if op == "in" else op) in set_]
        return ops + [op for op in TIME_OPS if op in set_]

    @property
    def operator(self) -> str:
        return self.operators[0]

    @property
    def value(self) -> Any:
        return getattr(self, "in_" if self.operator == "in" else self.operator)


def _tier_hint(tier: str, tiers: Sequence[str]) -> str:
    close = suggest(tier, tuple(tiers))
    return close if close.startswith("did you mean") else "the tiers come from TIER_THRESHOLDS"


class EventCount(StrictModel):
    """Events of ``type`` for this member that occurred within the last ``within``."""

    type: Name
    within: Duration


class EventCountCondition(StrictModel):
    """Compare how many events of a type the member had in a window: ``{events: …, gte: 2}``."""

    events: EventCount
    eq: int | None = None
    ne: int | None = None
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> EventCountCondition:
        if len(self.operators) != 1:
            raise problem(
                "operator",
                "an event count needs exactly one comparison",
                "use one of: " + ", ".join(COUNT_OPS) + ", e.g. gte: 1",
            )
        return self

    @property
    def operators(self) -> list[str]:
        return [op for op in COUNT_OPS if op in self.model_fields_set]


class ConsentCondition(StrictModel):
    """True when the member consents to marketing on the channel."""

    consent: Literal["email", "sms"]


class EmailEngagement(StrictModel):
    """The member's emails opened (or clicked) within ``within``: any, a journey's, or a step's."""

    event: Literal["opened", "clicked"] = Field(
        description="opened (a click counts as an open) or clicked"
    )
    journey: Identifier | None = Field(default=None, description="only this journey's emails")
    step: Identifier | None = Field(
        default=None, description="only this send step's emails (needs `journey`)"
    )
    within: Duration


class EngagedCondition(StrictModel):
    """Email engagement: ``{engaged: {event: opened, journey: …, step: …, within: 30d}}``.

    True when at least one such email was opened (clicked) in the window, or
    when the count of them compares as written (``gte: 3``).
    """

    engaged: EmailEngagement
    eq: int | None = None
    ne: int | None = None
    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None

    @model_validator(mode="after")
    def _at_most_one_operator(self) -> EngagedCondition:
        if len(self.operators) > 1:
            raise problem(
                "operator",
                "an engagement condition takes at most one comparison",
                "none means at least one email; or one of: " + ", ".join(COUNT_OPS),
            )
        return self

    @property
    def operators(self) -> list[str]:
        return [op for op in COUNT_OPS if op in self.model_fields_set]


_KINDS = ("all", "any", "not", "field", "events", "consent", "engaged")


def _kind(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return next((k for k in _KINDS if k in value), None)
    for kind, model in zip(_KINDS, _MODELS, strict=True):
        if isinstance(value, model):
            return kind
    return None


Condition = Annotated[
    Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")]
    | Annotated[FieldCondition, Tag("field")]
    | Annotated[EventCountCondition, Tag("events")]
    | Annotated[ConsentCondition, Tag("consent")]
    | Annotated[EngagedCondition, Tag("engaged")],
    Discriminator(
        _kind,
        custom_error_type="condition",
        custom_error_message=(
            "a condition needs one of the keys all, any, not, field, events, consent, engaged"
        ),
    ),
]

_MODELS = (
    AllCondition,
    AnyCondition,
    NotCondition,
    FieldCondition,
    EventCountCondition,
    ConsentCondition,
    EngagedCondition,
)
for _model in _MODELS:
    _model.model_rebuild()


def iter_conditions(condition: Condition) -> list[Condition]:
    """The condition and every condition nested inside it, depth first."""
    out: list[Condition] = [condition]
    if isinstance(condition, AllCondition):
        children = condition.all
    elif isinstance(condition, AnyCondition):
        children = condition.any
    elif isinstance(condition, NotCondition):
        children = [condition.not_]
    else:
        children = []
    for child in children:
        out.extend(iter_conditions(child))
    return out


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """Everything a condition may read, as plain data.

    ``member`` holds the member fields (``attributes`` a dict); ``event`` the
    payload of the event being judged, if any; ``count_events(type, since)``
    counts the member's events of a type since an aware UTC instant;
    ``count_engagements(opened|clicked, journey, step, since)`` counts the
    member's emails (of that journey and step, when given) opened or clicked since.
    """

    member: Mapping[str, Any]
    now: datetime
    event: Mapping[str, Any] | None = None
    count_events: Callable[[str, datetime], int] | None = None
    tiers: Sequence[str] = DEFAULT_TIERS
    count_engagements: Callable[[str, str | None, str | None, datetime], int] | None = None


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def evaluate(condition: Condition, context: Context) -> bool:
    """Decide ``condition`` for ``context``; pure, and total over any member data."""
    if isinstance(condition, AllCondition):
        return all(evaluate(c, context) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return any(evaluate(c, context) for c in condition.any)
    if isinstance(condition, NotCondition):
        return not evaluate(condition.not_, context)
    if isinstance(condition, ConsentCondition):
        return context.member.get(f"{condition.consent}_consent") is True
    if isinstance(condition, EventCountCondition):
        if context.count_events is None:
            raise ConditionError("this condition counts events but the context cannot count them")
        since = context.now - condition.events.within
        count = context.count_events(condition.events.type, since)
        op = condition.operators[0]
        return _compare(count, op, getattr(condition, op), ())
    if isinstance(condition, EngagedCondition):
        return _engaged(condition, context)
    return _field(condition, context)


def _engaged(condition: EngagedCondition, context: Context) -> bool:
    if context.count_engagements is None:
        raise ConditionError("this condition reads email engagement but the context cannot")
    wanted = condition.engaged
    since = context.now - wanted.within
    count = context.count_engagements(wanted.event, wanted.journey, wanted.step, since)
    if not condition.operators:
        return count >= 1
    op = condition.operators[0]
    return _compare(count, op, getattr(condition, op), ())


def resolve(path: str, context: Context) -> Any:
    """The value at a field path, or MISSING."""
    root, _, rest = path.partition(".")
    node: Any
    if root == "event":
        node, segments = (context.event if context.event is not None else MISSING), rest.split(".")
    elif root == "member" and rest:
        node, segments = context.member, rest.split(".")
    else:
        node, segments = context.member, path.split(".")
    for segment in segments:
        if isinstance(node, Mapping) and segment in node:
            node = node[segment]
        elif isinstance(node, list | tuple) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return MISSING
    return node


def _field(condition: FieldCondition, context: Context) -> bool:
    value = resolve(condition.field, context)
    op, expected = condition.operator, condition.value
    if op == "exists":
        return (value is not MISSING and value is not None) is bool(expected)
    if op in TIME_OPS:
        moment = _instant(value)
        if moment is None:
            return False
        cutoff: datetime = context.now - expected
        return moment >= cutoff if op == "within" else moment < cutoff
    if value is MISSING:
        value = None
    is_tier = condition.field in ("tier", "member.tier")
    return _compare(value, op, expected, context.tiers if is_tier else ())


def _equal(a: Any, b: Any) -> bool:
    # True == 1 in Python; a consent flag must never equal a count.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return _as_decimal(a) == _as_decimal(b)
    return type(a) is type(b) and bool(a == b)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | Decimal) and not isinstance(x, bool)


def _numeric_text(x: Any) -> bool:
    if not isinstance(x, str):
        return False
    try:
        return Decimal(x.strip()).is_finite()
    except ArithmeticError:
        return False


def _as_decimal(x: Any) -> Decimal:
    if isinstance(x, Decimal):
        return x
    return Decimal(str(x).strip()) if isinstance(x, float | str) else Decimal(x)


def _compare(value: Any, op: str, expected: Any, tiers: Sequence[str]) -> bool:
    if op == "eq":
        return _equal(value, expected)
    if op == "ne":
        return not _equal(value, expected)
    if op == "in":
        return any(_equal(value, x) for x in expected)
    if op == "not_in":
        return not any(_equal(value, x) for x in expected)
    if op == "contains":
        if isinstance(value, str) and isinstance(expected, str):
            return expected in value
        if isinstance(value, list | tuple):
            return any(_equal(x, expected) for x in value)
        return isinstance(value, Mapping) and expected in value
    left, right = _ordered(value, expected, tiers)
    if left is None or right is None:
        return False
    if op == "gt":
        return bool(left > right)
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def _ordered(a: Any, b: Any, tiers: Sequence[str]) -> tuple[Any, Any]:
    """Make two values comparable, or (None, None) when they are not."""
    if tiers and a in tiers and b in tiers:
        return tiers.index(a), tiers.index(b)
    if _is_number(a) and _is_number(b):
        return _as_decimal(a), _as_decimal(b)
    # Shops often send money as text ("142.99"): compare it as the number it spells.
    if (_is_number(a) and _numeric_text(b)) or (_numeric_text(a) and _is_number(b)):
        return _as_decimal(a), _as_decimal(b)
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None, None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
