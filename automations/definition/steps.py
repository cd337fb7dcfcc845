"""Typed models of journey steps, and the contact-policy overrides send steps may carry."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Identifier, LocalTime, Name, StrictModel, Text, Zone, problem
from .conditions import Condition
from .durations import Duration
from .fields import MEMBER_FIELDS, suggest
from .program import program_of

__all__ = [
    "END",
    "AwardPoints",
    "Branch",
    "ContactPolicy",
    "CrmTask",
    "Exit",
    "HttpCall",
    "QuietHours",
    "SendEmail",
    "SendSms",
    "SendStep",
    "SendSurvey",
    "Split",
    "Step",
    "TaskOwner",
    "UpdateCrm",
    "Variant",
    "Wait",
    "WaitForEvent",
    "step_types",
]

#: The target that ends the journey (no step may use it as an id).
END = "end"

Points = Annotated[int, Field(gt=0, le=1_000_000)]
Percent = Annotated[int, Field(ge=0, le=100)]
Scalar = str | int | float | bool | None


# -- contact policy -----------------------------------------------------------------------------


class QuietHours(StrictModel):
    """Recipient-local hours when nothing is sent; sends are deferred, never dropped."""

    start: LocalTime
    end: LocalTime


class ContactPolicy(StrictModel):
    """Overrides of the contact-policy settings, for a journey or one send step."""

    quiet_hours: QuietHours | None = None
    frequency_cap: bool | None = Field(
        default=None, description="false: these sends ignore the cross-journey frequency caps"
    )
    max_emails_per_week: Annotated[int, Field(ge=0)] | None = None
    max_sms_per_day: Annotated[int, Field(ge=0)] | None = None


# -- steps --------------------------------------------------------------------------------------


class _Step(StrictModel):
    id: Identifier
    next: Identifier | None = Field(
        default=None, description="the step to go to afterwards; default: the following step"
    )


class AwardPoints(_Step):
    """Award points; ``amount`` is a number or a mapping of tier to number (``default`` allowed)."""

    type: Literal["award_points"]
    amount: Points | dict[str, Points]
    reason: Text
    expires_in: Duration | None = None

    def points_for(self, tier: str | None) -> int:
        """The amount for a member of ``tier`` (0 when the tier has no amount and no default)."""
        if isinstance(self.amount, int):
            return self.amount
        return self.amount.get(tier or "", self.amount.get("default", 0))


class SendEmail(_Step):
    """Send an email from a local template, or from a SendGrid dynamic template."""

    type: Literal["send_email"]
    template: Identifier | None = None
    template_id: str | dict[str, str] | None = Field(
        default=None, description="SendGrid dynamic template id, or one per locale"
    )
    transactional: bool = False
    policy: ContactPolicy | None = None

    @model_validator(mode="after")
    def _has_template(self) -> SendEmail:
        if self.template is None and self.template_id is None:
            raise problem(
                "template", "send_email needs a `template`", "e.g. template: birthday_bonus"
            )
        return self


class SendSms(_Step):
    """Send an SMS from a template."""

    type: Literal["send_sms"]
    template: Identifier
    transactional: bool = False
    max_segments: Annotated[int, Field(ge=1, le=10)] | None = None
    policy: ContactPolicy | None = None


class WaitForEvent(StrictModel):
    """Wait until the member has an event of this type, at most ``timeout``."""

    event: Name
    conditions: Condition | None = None
    timeout: Duration


class Wait(_Step):
    """Wait a duration, and/or until a local time; or until an event, with a timeout."""

    type: Literal["wait"]
    duration: Duration | None = None
    until: LocalTime | None = Field(default=None, description="next local time of day, HH:MM")
    zone: Zone = "member"
    until_event: WaitForEvent | None = None
    on_event: Identifier | None = None
    on_timeout: Identifier | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Wait:
        timed = self.duration is not None or self.until is not None
        if self.until_event is not None and timed:
            raise problem(
                "wait",
                "a wait is either timed (duration, until) or for an event (until_event)",
                "split it into two wait steps",
            )
        if self.until_event is None and not timed:
            raise problem(
                "wait", "a wait needs duration, until or until_event", "e.g. duration: 3d"
            )
        if self.until_event is None and (self.on_event or self.on_timeout):
            raise problem(
                "wait",
                "on_event and on_timeout need until_event",
                "add until_event, or use next",
            )
        return self


class Branch(_Step):
    """Go to ``then`` when the condition holds, else to ``else`` (default: the following step)."""

    type: Literal["branch"]
    if_: Condition = Field(alias="if")
    then: Identifier
    else_: Identifier | None = Field(default=None, alias="else")


class Variant(StrictModel):
    """One arm of a split: ``percent`` of members go to ``next``."""

    name: Identifier
    percent: Annotated[int, Field(ge=1, le=100)]
    next: Identifier


class Split(_Step):
    """Deterministic split by a hash of journey, step and member; the holdout is the control."""

    type: Literal["split"]
    variants: Annotated[list[Variant], Field(min_length=1)]
    holdout: Percent = 0

    @model_validator(mode="after")
    def _adds_up(self) -> Split:
        total = sum(v.percent for v in self.variants) + self.holdout
        if total != 100:
            raise problem(
                "split",
                f"variant percents plus holdout add up to {total}, not 100",
                "adjust the percents so they add up to 100",
            )
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise problem("split", "variant names must be unique", "rename one of the variants")
        return self


class UpdateCrm(_Step):
    """Set contact properties in the connected CRMs; text values may use template variables."""

    type: Literal["update_crm"]
    properties: Annotated[dict[str, Scalar], Field(min_length=1)]


class SendSurvey(_Step):
    """Send an NPS or CSAT survey; the template gets ``survey_url``."""

    type: Literal["send_survey"]
    survey: Literal["nps", "csat"]
    channel: Literal["email", "sms"]
    template: Identifier
    policy: ContactPolicy | None = None


class HttpCall(_Step):
    """POST a signed JSON body to an endpoint named in HTTP_ENDPOINTS, once per member and step.

    The body carries the journey and step ids, the chosen member fields, the event
    (when ``include_event``) and ``data``, whose text values may use template variables.
    """

    type: Literal["http"]
    endpoint: Identifier = Field(description="an endpoint name from the HTTP_ENDPOINTS setting")
    member_fields: list[str] = Field(
        default_factory=lambda: ["external_id"],
        description="member fields the body carries (external_id is always sent)",
    )
    include_event: bool = Field(
        default=True, description="send the data of the event that started the journey"
    )
    data: dict[str, Scalar] = Field(
        default_factory=dict, description="extra values; text may use template variables"
    )

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str, info: ValidationInfo) -> str:
        program = program_of(info)
        if program is None or program.http_endpoints is None or value in program.http_endpoints:
            return value
        if not program.http_endpoints:
            hint = 'configure it in HTTP_ENDPOINTS, e.g. {"' + value + '": {"url": …, "secret": …}}'
        else:
            hint = suggest(value, list(program.http_endpoints), listed="HTTP_ENDPOINTS")
        raise problem("endpoint", f"unknown http endpoint `{value}`", hint)

    @field_validator("member_fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in MEMBER_FIELDS and not name.startswith("attributes."):
                raise problem(
                    "member_field",
                    f"unknown member field `{name}`",
                    suggest(name, sorted(MEMBER_FIELDS)),
                )
        return value


CrmName = Literal["hubspot", "salesforce"]
_CRMS: tuple[CrmName, ...] = ("hubspot", "salesforce")


class TaskOwner(StrictModel):
    """Who the task is assigned to, per CRM (the CRM's user or owner id)."""

    hubspot: str | None = Field(default=None, description="HubSpot owner id (hubspot_owner_id)")
    salesforce: str | None = Field(default=None, description="Salesforce user id (OwnerId)")


class CrmTask(_Step):
    """Open a follow-up task on the member's contact in each connected CRM, once per step.

    ``subject`` and ``body`` may use template variables. A CRM that is not configured,
    or where the member has no contact yet, is skipped with the reason recorded.
    """

    type: Literal["crm_task"]
    subject: Annotated[str, Field(min_length=1, max_length=255)]
    body: str | None = None
    due_in: Duration = Field(default=timedelta(days=1), description="due this long after the step")
    priority: Literal["low", "medium", "high"] = "medium"
    owner: TaskOwner | None = None
    crms: Annotated[list[CrmName], Field(min_length=1)] = Field(
        default_factory=lambda: list(_CRMS),
        description="which CRMs get the task (default: every connected one)",
    )


class Exit(_Step):
    """End the journey here."""

    type: Literal["exit"]
    reason: str | None = None


Step = Annotated[
    AwardPoints
    | SendEmail
    | SendSms
    | Wait
    | Branch
    | Split
    | UpdateCrm
    | SendSurvey
    | HttpCall
    | CrmTask
    | Exit,
    Field(discriminator="type"),
]

#: Step kinds that send a message, with the channel of the template they use.
SendStep = SendEmail | SendSms | SendSurvey


def step_types() -> tuple[str, ...]:
    """The ``type`` names of all steps."""
    models: tuple[Any, ...] = (
        AwardPoints,
        SendEmail,
        SendSms,
        Wait,
        Branch,
        Split,
        UpdateCrm,
        SendSurvey,
        HttpCall,
        CrmTask,
        Exit,
    )
    return tuple(m.model_fields["type"].annotation.__args__[0] for m in models)
