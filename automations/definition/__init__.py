"""Journey definitions: the YAML language, its typed models, conditions and validation."""

from __future__ import annotations

from channels.templates import TemplateSource, read_template, template_path

from .conditions import Condition, ConditionError, Context, evaluate
from .durations import Duration, DurationError, format_duration, parse_duration
from .models import (
    END,
    AwardPoints,
    Branch,
    ContactPolicy,
    CrmTask,
    DateTrigger,
    Entry,
    EventTrigger,
    Exit,
    Goal,
    HttpCall,
    Journey,
    QuietHours,
    ScheduleTrigger,
    SendEmail,
    SendSms,
    SendSurvey,
    Split,
    Step,
    Trigger,
    UpdateCrm,
    Variant,
    Wait,
    WaitForEvent,
)
from .program import Program
from .splits import choose_variant
from .validate import JourneyFile, Problem, journey_files, load_journeys, validate_paths
from .variables import provided_variables

__all__ = [
    "END",
    "AwardPoints",
    "Branch",
    "Condition",
    "ConditionError",
    "ContactPolicy",
    "Context",
    "CrmTask",
    "DateTrigger",
    "Duration",
    "DurationError",
    "Entry",
    "EventTrigger",
    "Exit",
    "Goal",
    "HttpCall",
    "Journey",
    "JourneyFile",
    "Problem",
    "Program",
    "QuietHours",
    "ScheduleTrigger",
    "SendEmail",
    "SendSms",
    "SendSurvey",
    "Split",
    "Step",
    "TemplateSource",
    "Trigger",
    "UpdateCrm",
    "Variant",
    "Wait",
    "WaitForEvent",
    "choose_variant",
    "evaluate",
    "format_duration",
    "journey_files",
    "load_journeys",
    "parse_duration",
    "provided_variables",
    "read_template",
    "template_path",
    "validate_paths",
]
