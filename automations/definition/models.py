"""Typed models of a journey definition (one YAML file, one journey).

Steps live in ``steps``; this module holds the journey and its trigger, entry and
goal, and re-exports the steps. The models check each value on its own (types,
durations, cron, zones); how the parts fit together (step references, templates,
variables) is checked by ``structure`` and ``validate``, which know the file and
the templates folder.
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from .base import Identifier, LocalTime, Name, StrictModel, Text, Zone, problem
from .conditions import Condition
from .durations import Duration
from .steps import (
    END,
    AwardPoints,
    Branch,
    ContactPolicy,
    CrmTask,
    Exit,
    HttpCall,
    QuietHours,
    SendEmail,
    SendSms,
    SendStep,
    SendSurvey,
    Split,
    Step,
    TaskOwner,
    UpdateCrm,
    Variant,
    Wait,
    WaitForEvent,
    step_types,
)

__all__ = [
    "END",
    "AwardPoints",
    "Branch",
    "ContactPolicy",
    "CrmTask",
    "DateTrigger",
    "Entry",
    "EventTrigger",
    "Exit",
    "Goal",
    "HttpCall",
    "Journey",
    "QuietHours",
    "ScheduleTrigger",
    "SendEmail",
    "SendSms",
    "SendStep",
    "SendSurvey",
    "Split",
    "Step",
    "TaskOwner",
    "Trigger",
    "UpdateCrm",
    "Variant",
    "Wait",
    "WaitForEvent",
    "step_types",
]


def _cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise problem(
            "cron",
            f"invalid cron expression `{value}`: {exc}",
            'five fields: minute hour day month weekday, e.g. "0 10 * * mon"',
        ) from None
    return value


Cron = Annotated[str, AfterValidator(_cron), WithJsonSchema({"type": "string"})]
Locale = Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$", examples=["en", "pl"])]


# -- triggers -----------------------------------------------------------------------------------


class EventTrigger(StrictModel):
    """Enter when the member has an event of this type (and the conditions hold)."""

    type: Literal["event"]
    event: Name
    conditions: Condition | None = None


class ScheduleTrigger(StrictModel):
    """Enter the audience on a cron schedule, read in each member's zone or a fixed one."""

    type: Literal["schedule"]
    cron: Cron
    zone: Zone = "member"


class DateTrigger(StrictModel):
    """Enter ``days_before`` a member date at local time ``at`` in the member's zone.

    ``last_order_at`` (inactivity, win-back) counts ``days_after`` the last order
    instead, once per lapse: a new order starts a new one.
    """

    type: Literal["date"]
    field: Literal["birthday", "enrolled_at", "points_expiry", "last_order_at"]
    days_before: Annotated[int, Field(ge=0, le=366)] = 0
    days_after: Annotated[int, Field(ge=1, le=3660)] | None = None
    at: LocalTime = time(9, 0)

    @model_validator(mode="after")
    def _days(self) -> DateTrigger:
        if self.field == "last_order_at":
            if self.days_after is None:
                raise problem(
                    "days_after",
                    "a last_order_at trigger needs `days_after`: the days without an order",
                    "e.g. days_after: 60 for members who have not ordered for 60 days",
                )
            if self.days_before:
                raise problem(
                    "days_before",
                    "the last order lies in the past: count `days_after` it, not days_before",
                    "remove days_before",
                )
        elif self.days_after is not None:
            raise problem(
                "days_after",
                f"`days_after` counts from the last order; {self.field} counts `days_before`",
                "use days_before, or field: last_order_at for inactivity",
            )
        return self


Trigger = Annotated[EventTrigger | ScheduleTrigger | DateTrigger, Field(discriminator="type")]


class Entry(StrictModel):
    """Who may enter again: exactly one of ``once``, ``once_per`` or ``every_time``."""

    once: Literal[True] | None = None
    once_per: Literal["year", "month"] | None = None
    every_time: Literal[True] | None = None
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> Entry:
        rules = [r for r in ("once", "once_per", "every_time") if getattr(self, r) is not None]
        if len(rules) != 1:
            raise problem(
                "entry",
                "entry needs exactly one of once, once_per, every_time",
                "e.g. `once_per: year` for a birthday, `every_time: true` for orders",
            )
        if self.once and self.cooldown is not None:
            raise problem("entry", "a cooldown has no effect with `once`", "remove the cooldown")
        return self

    @property
    def rule(self) -> Literal["once", "once_per", "every_time"]:
        if self.once:
            return "once"
        return "once_per" if self.once_per else "every_time"


class Goal(StrictModel):
    """An event within ``within`` of entering ends the journey and counts a conversion."""

    event: Name
    conditions: Condition | None = None
    within: Duration


# -- journey ------------------------------------------------------------------------------------


class Journey(StrictModel):
    """One journey: who enters, when, how often, and the steps they go through."""

    id: Identifier
    name: Text
    description: str | None = None
    status: Literal["draft", "active", "paused"] = "draft"
    locale: Locale = Field(default="en", description="default locale, the fallback for members")
    locales: list[Locale] | None = Field(
        default=None, description="locales every template must exist in; default: [locale]"
    )
    trigger: Trigger
    audience: Condition | None = None
    entry: Entry
    goal: Goal | None = None
    policy: ContactPolicy | None = None
    steps: Annotated[list[Step], Field(min_length=1)]

    @model_validator(mode="after")
    def _default_locale_declared(self) -> Journey:
        if self.locales is not None and self.locale not in self.locales:
            raise problem(
                "locale",
                f"the default locale `{self.locale}` is not among locales {self.locales}",
                f"add {self.locale} to locales",
            )
        return self

    @property
    def all_locales(self) -> list[str]:
        """The locales every template must exist in."""
        return list(self.locales) if self.locales else [self.locale]

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError when there is none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def following(self, step_id: str) -> str:
        """Where a step goes when it does not say: its ``next``, else the next step, else END."""
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                if step.next:
                    return step.next
                return self.steps[index + 1].id if index + 1 < len(self.steps) else END
        raise KeyError(step_id)
