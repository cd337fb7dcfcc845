"""What the engine reads from a valid journey."""

from __future__ import annotations

from collections import Counter
from datetime import time, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from automations.definition import (
    END,
    AwardPoints,
    DateTrigger,
    Journey,
    Split,
    Wait,
    choose_variant,
    load_journeys,
    provided_variables,
)
from loyalty.yaml_source import parse_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_birthday_bonus_reads_as_the_marketer_wrote_it() -> None:
    journey = load_journeys([ROOT / "journeys" / "birthday_bonus.yaml"])[0][0].journey

    assert isinstance(journey.trigger, DateTrigger)
    assert (journey.trigger.field, journey.trigger.at) == ("birthday", time(9, 0))
    assert (journey.entry.rule, journey.entry.once_per) == ("once_per", "year")
    bonus = journey.step("bonus")
    assert isinstance(bonus, AwardPoints)
    assert [bonus.points_for(t) for t in ("bronze", "silver", "gold")] == [100, 150, 250]
    assert bonus.expires_in == timedelta(days=30)
    assert journey.following("bonus") == "birthday_email"
    assert journey.following("birthday_sms") == END
    assert journey.all_locales == ["en", "pl"]


def test_waits_carry_durations_local_times_and_events() -> None:
    journey = load_journeys([ROOT / "journeys" / "post_purchase_nps.yaml"])[0][0].journey

    settle = journey.step("settle_in")
    answer = journey.step("await_answer")
    assert isinstance(settle, Wait) and isinstance(answer, Wait)
    assert (settle.duration, settle.until, settle.zone) == (timedelta(days=7), time(10), "member")
    assert answer.until_event is not None
    assert (answer.until_event.event, answer.until_event.timeout) == (
        "survey.answered",
        timedelta(days=3),
    )
    assert (answer.on_event, answer.on_timeout) == (END, "reminder")


def test_the_variable_contract_of_a_points_expiry_email() -> None:
    journey = load_journeys([ROOT / "journeys" / "points_expiring.yaml"])[0][0].journey

    assert sorted(provided_variables(journey, "email")) == [
        "journey",
        "member",
        "occurrence",
        "points_expiring",
        "points_expiring_at",
        "tier_name",
        "unsubscribe_url",
    ]


SPLIT = Split.model_validate(
    {
        "id": "ab",
        "type": "split",
        "variants": [
            {"name": "a", "percent": 45, "next": "x"},
            {"name": "b", "percent": 45, "next": "y"},
        ],
        "holdout": 10,
    }
)


@given(st.text(min_size=1, max_size=20))
def test_a_member_always_lands_in_the_same_arm(member: str) -> None:
    first = choose_variant(SPLIT, "journey", member)

    assert choose_variant(SPLIT, "journey", member) == first


def test_arms_follow_the_percents() -> None:
    arms = Counter(
        (v.name if (v := choose_variant(SPLIT, "journey", f"m{i}")) else "holdout")
        for i in range(20_000)
    )

    assert 0.43 < arms["a"] / 20_000 < 0.47
    assert 0.43 < arms["b"] / 20_000 < 0.47
    assert 0.08 < arms["holdout"] / 20_000 < 0.12


def test_the_readme_example_journey_is_valid() -> None:
    readme = (ROOT / "journeys" / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A whole journey", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]

    journey = Journey.model_validate(parse_yaml(example).data)

    assert [s.id for s in journey.steps] == ["bonus", "birthday_email"]
