"""Survey answers, from the survey page, a score link or an SMS reply.

An answer sets the survey's score, comment and `answered_at`; answering again
replaces it (the last answer wins). The first answer also records a
`survey.answered` event in the caller's transaction, once per survey
(source "loyalty", id `survey:<id>`), so journeys can wait for it, branch on
it or count it as a goal. The event is stored, not queued: the caller commits,
and whoever runs the workers queues it (see `web.surveys`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.errors import SkippableError
from loyalty.event_types import INTERNAL_SOURCE, EventInput
from loyalty.events import record_event
from loyalty.models import Member, Survey
from loyalty.settings import Settings

__all__ = [
    "MAX_COMMENT_CHARS",
    "SCALES",
    "SMS_REPLY_WINDOW",
    "Answer",
    "InvalidAnswer",
    "NpsCategory",
    "answer_sms_reply",
    "answer_survey",
    "checked_score",
    "find_open_sms_survey",
    "find_survey",
    "nps_category",
    "parse_score",
    "record_answer",
]

log = logging.getLogger(__name__)

NpsCategory = Literal["promoter", "passive", "detractor"]

#: The scores each kind of survey accepts, lowest to highest.
SCALES: dict[str, range] = {"nps": range(0, 11), "csat": range(1, 6)}

#: Longest comment kept, in characters.
MAX_COMMENT_CHARS = 2000

#: How long after sending an SMS survey a bare number in a reply counts as its answer.
SMS_REPLY_WINDOW = timedelta(days=7)

_TOKEN_MAX = 64
# PostgreSQL text cannot hold NUL; other control characters have no place in a comment.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class InvalidAnswer(SkippableError):
    """The score is not a whole number on the survey's scale, or the comment is too long."""

    def __init__(self, message: str, kind: str, *, comment: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        #: The comment was refused (too long), not the score.
        self.comment = comment


@dataclass(frozen=True)
class Answer:
    """An answer as recorded; `first` when it was the survey's first (and made the event)."""

    survey_id: int
    member_id: int
    kind: str
    score: int
    first: bool
    event_id: int | None = None


def nps_category(score: int) -> NpsCategory:
    """Promoters score 9-10, passives 7-8, detractors 0-6."""
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def parse_score(kind: str, value: int | str | None) -> int | None:
    """`value` as a score when it is a whole number on the scale of `kind` (" 9 " will do)."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 2):
            return None
        value = int(text)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if value in SCALES.get(kind, range(0)) else None


def checked_score(kind: str, value: int | str | None) -> int:
    """`value` as a score on the scale of `kind`; raises InvalidAnswer when it is not one."""
    checked = parse_score(kind, value)
    if checked is None:
        scale = SCALES.get(kind, range(0))
        raise InvalidAnswer(f"Choose a whole number from {scale[0]} to {scale[-1]}.", kind)
    return checked


def find_survey(session: Session, token: str, *, lock: bool = False) -> Survey | None:
    """The survey a link names, or None for an unknown token or an erased member."""
    if not token or len(token) > _TOKEN_MAX:
        return None
    query = (
        select(Survey)
        .join(Member, Member.id == Survey.member_id)
        .where(Survey.token == token, Member.erased_at.is_(None))
    )
    return session.scalar(query.with_for_update(of=Survey) if lock else query)


def answer_survey(
    session: Session,
    token: str,
    score: int | str | None,
    comment: str | None,
    *,
    settings: Settings,
    now: datetime,
) -> Answer | None:
    """Record an answer to the survey a link names; None for an unknown token.

    `comment` None keeps the comment already given (a score link carries none);
    an empty one clears it. Raises InvalidAnswer, having changed nothing.
    """
    survey = find_survey(session, token, lock=True)
    if survey is None:
        return None
    return record_answer(session, survey, score, comment, settings=settings, now=now)


def record_answer(
    session: Session,
    survey: Survey,
    score: int | str | None,
    comment: str | None,
    *,
    settings: Settings,
    now: datetime,
) -> Answer:
    """Set the answer of a survey (locked by the caller); the first one records the event."""
    checked = checked_score(survey.kind, score)
    if comment is not None:
        comment = _CONTROL.sub("", comment).strip()
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidAnswer(
                f"Comments can be at most {MAX_COMMENT_CHARS} characters long.",
                survey.kind,
                comment=True,
            )
        survey.comment = comment or None
    first = survey.answered_at is None
    survey.score = checked
    survey.answered_at = now
    event_id = _record_answered(session, survey, settings, now) if first else None
    log.info(
        "survey.answered",
        extra={
            "member_id": survey.member_id,
            "survey_id": survey.id,
            "kind": survey.kind,
            "first": first,
        },
    )
    return Answer(survey.id, survey.member_id, survey.kind, checked, first, event_id)


def find_open_sms_survey(
    session: Session, phone: str, *, now: datetime, lock: bool = False
) -> Survey | None:
    """The newest unanswered SMS survey sent to this number within the reply window."""
    if not phone:
        return None
    query = (
        select(Survey)
        .join(Member, Member.id == Survey.member_id)
        .where(
            Member.phone == phone,
            Member.erased_at.is_(None),
            Survey.channel == "sms",
            Survey.answered_at.is_(None),
            Survey.sent_at >= now - SMS_REPLY_WINDOW,
        )
        .order_by(Survey.sent_at.desc(), Survey.id.desc())
        .limit(1)
    )
    return session.scalar(query.with_for_update(of=Survey) if lock else query)


def answer_sms_reply(
    session: Session, phone: str, body: str | None, *, settings: Settings, now: datetime
) -> Answer | None:
    """Take a bare number on the scale as the answer to the newest open SMS survey, if any.

    Anything else (words, a number off the scale, no open survey) is not an answer.
    """
    if parse_score("nps", body) is None and parse_score("csat", body) is None:
        return None  # not a number on any scale: spare the lookup
    survey = find_open_sms_survey(session, phone, now=now, lock=True)
    if survey is None or parse_score(survey.kind, body) is None:
        return None
    return record_answer(session, survey, body, None, settings=settings, now=now)


def _record_answered(session: Session, survey: Survey, settings: Settings, now: datetime) -> int:
    external_id = session.scalar(select(Member.external_id).where(Member.id == survey.member_id))
    assert external_id is not None  # the survey's foreign key
    assert survey.score is not None
    data: dict[str, Any] = {"kind": survey.kind, "score": survey.score, "survey_id": survey.id}
    if survey.kind == "nps":
        data["category"] = nps_category(survey.score)
    event, _ = record_event(
        session,
        EventInput(
            type="survey.answered",
            member=external_id,
            id=f"survey:{survey.id}",
            at=now,
            data=data,
            source=INTERNAL_SOURCE,
        ),
        settings=settings,
        now=now,
    )
    return event.id
