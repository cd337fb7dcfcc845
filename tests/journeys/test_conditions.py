from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from automations.definition.conditions import (
    AllCondition,
    AnyCondition,
    Condition,
    ConditionError,
    Context,
    NotCondition,
    evaluate,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


def cond(data: Any) -> Condition:
    return CONDITION.validate_python(data)


def member(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "external_id": "c-1",
        "tier": "silver",
        "points_balance": 1200,
        "email_consent": True,
        "sms_consent": False,
        "orders_count": 3,
        "attributes": {"vip": True, "favourite": "tea", "tags": ["a", "b"]},
        "last_order_at": NOW - timedelta(days=10),
    }
    return base | fields


def ctx(**overrides: Any) -> Context:
    values: dict[str, Any] = {"member": member(), "now": NOW}
    return Context(**(values | overrides))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "tier", "eq": "silver"}, True),
        ({"field": "member.tier", "ne": "gold"}, True),
        ({"field": "tier", "gte": "silver"}, True),
        ({"field": "tier", "gt": "silver"}, False),
        ({"field": "tier", "lt": "gold"}, True),
        ({"field": "tier", "in": ["gold", "silver"]}, True),
        ({"field": "tier", "not_in": ["gold"]}, True),
        ({"field": "points_balance", "gte": 1000}, True),
        ({"field": "points_balance", "lt": 1000.5}, False),
        ({"field": "attributes.vip", "eq": True}, True),
        ({"field": "attributes.vip", "eq": 1}, False),
        ({"field": "attributes.favourite", "contains": "te"}, True),
        ({"field": "attributes.tags", "contains": "b"}, True),
        ({"field": "attributes.missing", "exists": False}, True),
        ({"field": "attributes.missing", "eq": None}, True),
        ({"field": "attributes.missing", "gt": 1}, False),
        ({"field": "email", "exists": True}, False),
        ({"field": "last_order_at", "within": "30d"}, True),
        ({"field": "last_order_at", "older_than": "7d"}, True),
        ({"field": "enrolled_at", "within": "30d"}, False),
        ({"consent": "email"}, True),
        ({"consent": "sms"}, False),
        ({"not": {"consent": "sms"}}, True),
        ({"all": []}, True),
        ({"any": []}, False),
        ({"any": [{"consent": "sms"}, {"field": "orders_count", "eq": 3}]}, True),
        ({"field": "event.total", "gt": 100}, False),
    ],
)
def test_member_conditions(condition: Any, expected: bool) -> None:
    assert evaluate(cond(condition), ctx()) is expected


def test_event_payload_fields_read_the_event() -> None:
    context = ctx(event={"total": 120.5, "items": [{"sku": "A1"}], "coupon": None})

    assert evaluate(cond({"field": "event.total", "gt": 100}), context)
    assert evaluate(cond({"field": "event.items.0.sku", "eq": "A1"}), context)
    assert evaluate(cond({"field": "event.coupon", "exists": False}), context)


def test_event_counts_ask_for_events_since_now_minus_the_window() -> None:
    asked: list[tuple[str, datetime]] = []

    def count_events(event_type: str, since: datetime) -> int:
        asked.append((event_type, since))
        return 2

    condition = cond({"events": {"type": "order_placed", "within": "30d"}, "gte": 2})

    assert evaluate(condition, ctx(count_events=count_events))
    assert asked == [("order_placed", NOW - timedelta(days=30))]


def test_event_counts_without_a_counter_are_a_programming_error() -> None:
    condition = cond({"events": {"type": "order_placed", "within": "30d"}, "eq": 0})

    with pytest.raises(ConditionError):
        evaluate(condition, ctx())


@pytest.mark.parametrize(
    ("data", "opened", "expected"),
    [
        ({"engaged": {"event": "opened", "within": "30d"}}, 1, True),
        ({"engaged": {"event": "opened", "within": "30d"}}, 0, False),
        ({"not": {"engaged": {"event": "clicked", "within": "7d"}}}, 0, True),
        ({"engaged": {"event": "opened", "within": "90d"}, "gte": 3}, 2, False),
        ({"engaged": {"event": "opened", "within": "90d"}, "gte": 3}, 3, True),
        ({"engaged": {"event": "opened", "within": "90d"}, "eq": 0}, 0, True),
    ],
)
def test_engagement_counts_emails_opened_or_clicked(data: Any, opened: int, expected: bool) -> None:
    def count_engagements(kind: str, journey: str | None, step: str | None, since: datetime) -> int:
        return opened

    assert evaluate(cond(data), ctx(count_engagements=count_engagements)) is expected


def test_engagement_asks_about_the_journey_and_step_since_the_window() -> None:
    asked: list[tuple[str, str | None, str | None, datetime]] = []

    def count_engagements(kind: str, journey: str | None, step: str | None, since: datetime) -> int:
        asked.append((kind, journey, step, since))
        return 0

    condition = cond(
        {"engaged": {"event": "clicked", "journey": "welcome", "step": "hi", "within": "3d"}}
    )

    assert not evaluate(condition, ctx(count_engagements=count_engagements))
    assert asked == [("clicked", "welcome", "hi", NOW - timedelta(days=3))]
    with pytest.raises(ConditionError):
        evaluate(condition, ctx())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"field": "tierr", "eq": 1}, "unknown field `tierr`"),
        (
            {"engaged": {"event": "opened", "within": "1d"}, "gte": 1, "lte": 3},
            "an engagement condition takes at most one comparison",
        ),
        ({"engaged": {"event": "opened"}}, "Field required"),
        ({"field": "tier"}, "a field condition needs exactly one operator, found none"),
        ({"field": "tier", "eq": 1, "ne": 2}, "exactly one operator, found eq, ne"),
        ({"colour": "red"}, "a condition needs one of the keys all, any"),
        ({"events": {"type": "x", "within": "1d"}}, "an event count needs exactly one comparison"),
        ({"field": "last_order_at", "within": "soon"}, '"soon" is not a duration'),
    ],
)
def test_invalid_conditions_are_rejected(data: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        cond(data)

    assert message in str(caught.value)


# -- properties ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["bronze", "silver", "gold", "", "tea", "x"]),
)
fields = st.sampled_from(
    ["tier", "points_balance", "email_consent", "attributes.vip", "event.total", "orders_count"]
)
ops = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "contains"])


@st.composite
def field_conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["in", "not_in", "exists", "scalar"]))
    name = draw(fields)
    if op in ("in", "not_in"):
        return {"field": name, op: draw(st.lists(scalars, max_size=3))}
    if op == "exists":
        return {"field": name, "exists": draw(st.booleans())}
    scalar_op = draw(ops)
    value = draw(scalars)
    if scalar_op in ("gt", "gte", "lt", "lte") and (value is None or isinstance(value, bool)):
        value = 0
    return {"field": name, scalar_op: value}


conditions = st.recursive(
    field_conditions() | st.sampled_from([{"consent": "email"}, {"consent": "sms"}]),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=8,
)
members = st.fixed_dictionaries(
    {},
    optional={
        "tier": scalars,
        "points_balance": scalars,
        "email_consent": scalars,
        "sms_consent": scalars,
        "orders_count": scalars,
        "attributes": st.dictionaries(st.sampled_from(["vip", "x"]), scalars, max_size=2),
    },
)
events = st.none() | st.dictionaries(st.sampled_from(["total", "y"]), scalars, max_size=2)


@given(conditions, members, events)
def test_evaluation_is_total_and_repeatable(data: Any, who: dict[str, Any], event: Any) -> None:
    condition = cond(data)
    context = Context(member=who, now=NOW, event=event)

    first = evaluate(condition, context)

    assert isinstance(first, bool)
    assert evaluate(condition, context) is first


@given(conditions, conditions, members, events)
def test_not_all_is_any_not(a: Any, b: Any, who: dict[str, Any], event: Any) -> None:
    context = Context(member=who, now=NOW, event=event)
    left = NotCondition.model_validate({"not": {"all": [a, b]}})
    right = AnyCondition.model_validate({"any": [{"not": a}, {"not": b}]})

    assert evaluate(left, context) is evaluate(right, context)


@given(conditions, members)
def test_all_of_one_is_the_condition_itself(data: Any, who: dict[str, Any]) -> None:
    context = Context(member=who, now=NOW)
    single = cond(data)

    assert evaluate(AllCondition.model_validate({"all": [data]}), context) is evaluate(
        single, context
    )


@given(fields, st.lists(scalars, max_size=4), members, events)
def test_in_is_any_eq_and_not_in_its_negation(
    name: str, values: list[Any], who: dict[str, Any], event: Any
) -> None:
    context = Context(member=who, now=NOW, event=event)
    is_in = evaluate(cond({"field": name, "in": values}), context)

    assert is_in is any(evaluate(cond({"field": name, "eq": v}), context) for v in values)
    assert evaluate(cond({"field": name, "not_in": values}), context) is (not is_in)


@given(fields, scalars, members, events)
def test_ne_is_the_negation_of_eq(name: str, value: Any, who: dict[str, Any], event: Any) -> None:
    context = Context(member=who, now=NOW, event=event)

    eq = evaluate(cond({"field": name, "eq": value}), context)

    assert evaluate(cond({"field": name, "ne": value}), context) is (not eq)
