"""POST /api/v1/events: one event or a batch, each stored once per (source, id), answered 202.

Every item is checked on its own, so one bad item never rejects the others: the
answer holds a result per item, in order. The events are stored in one
transaction (a savepoint each) and handed to the workers after the commit
(`web.api.workers`). An event's source is the token's name unless the event
names one.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from automations.intake import store_batch
from loyalty.errors import SkippableError, UnknownEventTypeError, UnknownMemberError
from loyalty.event_types import EventInput
from loyalty.events import Recorded
from loyalty.member_upsert import InvalidProfileError
from web.api.auth import Caller, require
from web.api.errors import ERROR_RESPONSES, ApiError
from web.api.profiles import FieldWarning, Profile, warnings_of
from web.common import BadBody, loyalty_app, parse_json

__all__ = ["EventBatch", "EventIn", "EventResults", "router", "schemas"]

log = logging.getLogger(__name__)

#: Events in one batch.
MAX_BATCH = 1000


class EventIn(BaseModel):
    """Something that happened to a member: an order, a refund, a sign-up, a custom type."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1,
        max_length=64,
        description="a built-in type (order.completed, order.refunded, reward.redeemed, "
        "member.enrolled, …) or one declared in EVENT_TYPES",
        examples=["order.completed"],
    )
    member: str = Field(
        min_length=1, max_length=255, description="the member's external_id (the shop's id)"
    )
    id: Annotated[str, Field(min_length=1, max_length=255)] | int | None = Field(
        default=None,
        description="the sender's id of the event: the same (source, id) is stored once",
    )
    at: AwareDatetime | None = Field(default=None, description="when it happened; default: now")
    data: dict[str, Any] = Field(
        default_factory=dict, description="the payload, e.g. order_id, total, currency"
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="who sent it; default: the token's name",
    )
    profile: Profile | None = Field(
        default=None, description="the member's profile: an unknown member is created from it"
    )


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(max_length=MAX_BATCH)


class EventResult(BaseModel):
    index: int = Field(description="the item's position in the batch (0 for one event)")
    status: Literal["stored", "duplicate", "rejected"]
    event_id: str | None = Field(
        default=None, description="the event's id (generated when none was sent)"
    )
    source: str | None = None
    member_created: bool = Field(
        default=False, description="the member was created from the profile"
    )
    field: str | None = Field(default=None, description="rejected: the field at fault")
    reason: str | None = Field(default=None, description="rejected: why")
    warnings: list[FieldWarning] = Field(
        default_factory=list, description="profile fields left out of the new member"
    )


class EventResults(BaseModel):
    stored: int
    duplicates: int
    rejected: int
    results: list[EventResult]


_ITEM = TypeAdapter(EventIn)
_BODY = TypeAdapter(EventIn | EventBatch)
_FIELDS = frozenset(EventIn.model_fields)
_LEADING_FIELD = re.compile(r"^'?([a-z_]+(?:\.[\w-]+)*)'?")


def schemas() -> dict[str, Any]:
    """The request body's JSON Schema and the components it refers to."""
    return _BODY.json_schema(ref_template="#/components/schemas/{model}")


router = APIRouter(tags=["events"])


@router.post(
    "/events",
    status_code=202,
    response_model=EventResults,
    summary="Send one event or a batch of up to 1,000 (scope events:write)",
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBody"}}},
        }
    },
)
async def post_events(
    request: Request, caller: Annotated[Caller, Depends(require("events:write"))]
) -> EventResults:
    """Store each event once per (source, id) and queue it for the workers.

    Answers 202 with a result per item: `stored`, `duplicate` (already stored, nothing
    changed) or `rejected` with the field at fault and why. An event for a member
    nobody knows is rejected, unless it carries the member's `profile`: then the
    member is created from it.
    """
    items = _items(await request.body())
    app = loyalty_app(request)
    queue = request.app.state.event_queue
    results: list[EventResult | None] = [None] * len(items)
    events: list[tuple[int, EventInput]] = []
    for index, item in enumerate(items):
        if isinstance(item, EventResult):
            results[index] = item
        else:
            events.append((index, _event_input(item, caller)))
    stored = await run_in_threadpool(store_batch, app, [event for _, event in events])
    created = []
    for (index, event), outcome in zip(events, stored, strict=True):
        results[index] = _result(index, event, outcome)
        if isinstance(outcome, Recorded) and outcome.created:
            created.append(outcome.row.id)
    await run_in_threadpool(queue.send, created)
    answer = [result for result in results if result is not None]
    counts = {status: sum(r.status == status for r in answer) for status in _STATUSES}
    log.info("api.events", extra={"token": caller.name, **counts})
    return EventResults(
        stored=counts["stored"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        results=answer,
    )


_STATUSES = ("stored", "duplicate", "rejected")


def _items(body: bytes) -> list[EventIn | EventResult]:
    """Each item checked on its own: an EventIn, or the result that rejects it."""
    try:
        value = parse_json(body)
    except BadBody:
        raise ApiError(400, ["body"], "the body is not JSON", "json_invalid") from None
    if not isinstance(value, dict):
        raise ApiError(
            422, ["body"], 'expected an event object or {"events": [...]}', "object_type"
        )
    if "events" not in value:
        return [_item(0, value)]
    unknown = sorted(set(value) - {"events"})
    if unknown:
        raise ApiError(422, ["body", unknown[0]], "unknown field beside events", "extra_forbidden")
    batch = value["events"]
    if not isinstance(batch, list):
        raise ApiError(422, ["body", "events"], "events must be a JSON array", "list_type")
    if len(batch) > MAX_BATCH:
        raise ApiError(
            422, ["body", "events"], f"at most {MAX_BATCH} events in one batch", "too_long"
        )
    return [_item(index, item) for index, item in enumerate(batch)]


def _item(index: int, value: Any) -> EventIn | EventResult:
    try:
        # Lone surrogates ("\ud800") parse as JSON but are no text any database stores.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return _rejected(index, None, "holds text that is not UTF-8")
    except RecursionError:
        return _rejected(index, None, "nests too deeply")
    try:
        return _ITEM.validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        return _rejected(index, _where(error["loc"]), str(error["msg"]))


#: Parts of a validation error's location that name a type tried, not a field.
_TYPE_TAGS = re.compile(r"^(str|int|float|bool|none|dict|list|constrained-str|.*\[.*)$")


def _where(loc: tuple[int | str, ...]) -> str | None:
    parts = [str(part) for part in loc if not _TYPE_TAGS.match(str(part))]
    return ".".join(parts) or None


def _rejected(index: int, field: str | None, reason: str) -> EventResult:
    return EventResult(index=index, status="rejected", field=field, reason=reason)


def _event_input(item: EventIn, caller: Caller) -> EventInput:
    at: datetime | None = item.at
    return EventInput(
        type=item.type,
        member=item.member,
        id=None if item.id is None else str(item.id),
        at=at,
        data=item.data,
        source=item.source or caller.name,
        profile=None if item.profile is None else item.profile.as_columns(),
    )


def _result(index: int, event: EventInput, outcome: Recorded | SkippableError) -> EventResult:
    if isinstance(outcome, SkippableError):
        return _rejected(index, _field_of(outcome), str(outcome))
    return EventResult(
        index=index,
        status="stored" if outcome.created else "duplicate",
        event_id=outcome.row.external_id,
        source=outcome.row.source,
        member_created=outcome.member_created,
        warnings=warnings_of(list(outcome.warnings), "profile."),
    )


def _field_of(error: SkippableError) -> str | None:
    """The field an intake error is about (its message starts by naming it)."""
    if isinstance(error, UnknownEventTypeError):
        return "type"
    if isinstance(error, UnknownMemberError):
        return "member"
    if isinstance(error, InvalidProfileError):
        return "member" if error.field == "external_id" else f"profile.{error.field}"
    match = _LEADING_FIELD.match(str(error))
    if match and match[1].split(".")[0] in _FIELDS:
        return match[1]
    return None
