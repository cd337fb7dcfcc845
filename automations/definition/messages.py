"""Turn pydantic's validation errors into a message and a hint a marketer can act on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from loyalty.yaml_source import Document, child, is_absent

from . import conditions as c
from . import models as m
from .fields import suggest

__all__ = ["describe_error"]

_TRIGGERS: dict[str, type[BaseModel]] = {
    "event": m.EventTrigger,
    "schedule": m.ScheduleTrigger,
    "date": m.DateTrigger,
}
_STEPS: dict[str, type[BaseModel]] = {
    "award_points": m.AwardPoints,
    "send_email": m.SendEmail,
    "send_sms": m.SendSms,
    "wait": m.Wait,
    "branch": m.Branch,
    "split": m.Split,
    "update_crm": m.UpdateCrm,
    "send_survey": m.SendSurvey,
    "http": m.HttpCall,
    "crm_task": m.CrmTask,
    "exit": m.Exit,
}
_BY_KEY: dict[str, type[BaseModel]] = {
    "entry": m.Entry,
    "goal": m.Goal,
    "policy": m.ContactPolicy,
    "quiet_hours": m.QuietHours,
    "until_event": m.WaitForEvent,
    "variants": m.Variant,
    "owner": m.TaskOwner,
}
_CONDITIONS: dict[str, type[BaseModel]] = {
    "all": c.AllCondition,
    "any": c.AnyCondition,
    "not": c.NotCondition,
    "field": c.FieldCondition,
    "events": c.EventCountCondition,
    "consent": c.ConsentCondition,
    "engaged": c.EngagedCondition,
}

_CONDITION_HINT = "e.g. {field: tier, in: [silver, gold]} or {all: [...]}"


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(parent: Any, path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """Which model the mapping at ``path`` is meant to be, judging by where it sits."""
    if not path:
        return m.Journey
    named = [s for s in path if isinstance(s, str)]
    last = named[-1] if named else ""
    kind = parent.get("type") if isinstance(parent, dict) else None
    if path == ("trigger",):
        return _TRIGGERS.get(str(kind))
    if len(path) == 2 and path[0] == "steps":
        return _STEPS.get(str(kind))
    if last == "events" and path[-1] == "events":
        return c.EventCount
    if last == "engaged" and path[-1] == "engaged":
        return c.EmailEngagement
    if last in _BY_KEY:
        return _BY_KEY[last]
    if isinstance(parent, dict):
        found = next((k for k in _CONDITIONS if k in parent), None)
        if found:
            return _CONDITIONS[found]
    return None


def _tag(node: Any) -> str | None:
    """The union tag pydantic puts in an error's location after this mapping, if any."""
    if not isinstance(node, dict):
        return None
    if isinstance(node.get("type"), str):
        return str(node["type"])
    return next((k for k in _CONDITIONS if k in node), None)


def _data_path(doc: Document, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of ``loc`` that names real data (skipping pydantic's union tags)."""
    out: tuple[str | int, ...] = ()
    node: Any = doc.data
    tagged: Any = None
    for segment in loc:
        # A condition's tag (`field`) is also one of its keys: the first time it
        # follows the mapping it is the tag, the second time the key.
        if tagged is not node and segment == _tag(node):
            tagged = node
            continue
        inner = child(node, segment)
        if not is_absent(inner):
            node, out = inner, (*out, segment)
    return out


def _node(doc: Document, path: tuple[str | int, ...]) -> Any:
    node: Any = doc.data
    for segment in path:
        node = node[segment]
    return node


def describe_error(error: ErrorDetails, doc: Document) -> tuple[str, str]:
    """(message, hint) for one pydantic error on the document ``doc``."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    real = _data_path(doc, loc)
    field = next((s for s in reversed(real) if isinstance(s, str)), "")
    if kind == "missing" or not field:
        field = next((s for s in reversed(loc) if isinstance(s, str)), "")
    if kind == "extra_forbidden":
        parent_path = real[:-1]
        model = _model_at(_node(doc, parent_path), parent_path)
        return f"unknown key `{field}`", _key_hint(field, _keys(model) if model else [])
    if kind == "missing":
        return f"missing `{field}`", f"add `{field}: …`"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _tag_error(kind, loc, ctx)
    if kind == "condition":
        return error["msg"], _CONDITION_HINT
    if kind == "literal_error":
        return f"`{field}` cannot be {value!r}", f"use {ctx.get('expected', '')}"
    if field == "amount" and real[:1] == ("steps",):
        return "`amount` must be a whole number of points, or tier names with points", (
            "e.g. amount: 100, or amount: {bronze: 100, silver: 150, gold: 200}"
        )
    if "hint" in ctx:
        return error["msg"], str(ctx["hint"])
    message = error["msg"]
    message = message[0].lower() + message[1:] if message else message
    shown = value if isinstance(value, str | int | float | bool) or value is None else None
    suffix = f", got {shown!r}" if shown is not None or value is None else ""
    return f"`{field}`: {message}{suffix}", ""


#: Words people write for the comparison operators.
_OPERATOR_WORDS = {
    "equals": "eq",
    "equal": "eq",
    "is": "eq",
    "not_equals": "ne",
    "not_equal": "ne",
    "greater_than": "gt",
    "more_than": "gt",
    "at_least": "gte",
    "less_than": "lt",
    "fewer_than": "lt",
    "at_most": "lte",
    "one_of": "in",
    "includes": "contains",
}


def _key_hint(key: str, keys: list[str]) -> str:
    """Did-you-mean for a wrong key: a near spelling or a known synonym, else the keys."""
    if not keys:
        return "check the spelling"
    word = _OPERATOR_WORDS.get(key.lower())
    if word in keys:
        return f"did you mean `{word}`?"
    hint = suggest(key, keys)
    return hint if hint.startswith("did you mean") else "use one of: " + ", ".join(keys)


def _tag_error(kind: str, loc: tuple[str | int, ...], ctx: dict[str, Any]) -> tuple[str, str]:
    what = "step" if "steps" in loc else "trigger"
    expected = list(_STEPS if what == "step" else _TRIGGERS)
    if kind == "union_tag_not_found":
        return f"this {what} has no `type`", "use one of: " + ", ".join(expected)
    tag = str(ctx.get("tag", ""))
    return f"unknown {what} type `{tag}`", suggest(tag, expected)
