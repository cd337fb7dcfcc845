"""POST /webhooks/twilio/status and /webhooks/twilio/inbound: signed form posts from Twilio."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response
from twilio.twiml.messaging_response import MessagingResponse

from channels.system_texts import SystemTexts
from channels.webhooks import (
    BatchOutcome,
    InboundOutcome,
    Keyword,
    apply_twilio_inbound,
    apply_twilio_status,
    phone_locale,
)
from loyalty.app import App
from loyalty.settings import Settings
from web.common import loyalty_app, public_url, read_body, refused
from web.pages import texts_for
from web.signatures import twilio_signature_ok

__all__ = ["keyword_reply", "twilio_inbound", "twilio_status", "twiml"]

log = logging.getLogger(__name__)

#: Twilio's form posts are small; an inbound SMS body is at most 1600 characters.
MAX_BODY_BYTES = 64 * 1024

Form = ImmutableMultiDict[str, str]


async def twilio_status(request: Request) -> Response:
    app = loyalty_app(request)
    params = await _signed_form(app, request)
    if isinstance(params, Response):
        return params
    if not params.get("MessageSid") or not params.get("MessageStatus"):
        return refused("twilio", "malformed", 400)
    message_id = _message_id(request.query_params.get("message_id"))
    fields = dict(params)

    def apply() -> BatchOutcome:
        with app.database.transaction() as session:
            return apply_twilio_status(session, fields, message_id=message_id, now=app.clock.now())

    outcome = await run_in_threadpool(apply)
    log.info(
        "twilio.status",
        extra={
            "message_id": message_id,
            "status": fields["MessageStatus"],
            "applied": outcome.applied,
            "duplicate": bool(outcome.duplicates),
        },
    )
    return Response(status_code=200)


async def twilio_inbound(request: Request) -> Response:
    app = loyalty_app(request)
    params = await _signed_form(app, request)
    if isinstance(params, Response):
        return params
    if not params.get("MessageSid") or not params.get("From"):
        return refused("twilio", "malformed", 400)
    fields = dict(params)

    def apply() -> tuple[InboundOutcome, str | None]:
        with app.database.transaction() as session:
            outcome = apply_twilio_inbound(
                session, fields, settings=app.settings, now=app.clock.now()
            )
            return outcome, phone_locale(session, fields["From"])

    outcome, locale = await run_in_threadpool(apply)
    log.info(
        "twilio.inbound",
        extra={
            "keyword": outcome.keyword,
            "duplicate": outcome.duplicate,
            "changed": outcome.changed,
            "member_ids": list(outcome.member_ids),
            "survey_id": outcome.survey_id,
        },
    )
    texts = texts_for(app, locale)
    if outcome.survey_id is not None:
        return twiml(texts("survey.sms_thanks", program=app.settings.program_name))
    if outcome.keyword is None or outcome.duplicate or "OptOutType" in params:
        # With Advanced Opt-Out on (OptOutType present) Twilio has answered already.
        return twiml(None)
    if outcome.keyword == "stop" and not outcome.changed:
        return twiml(None)  # STOP is confirmed once; a repeat gets silence.
    return twiml(keyword_reply(outcome.keyword, app.settings, texts))


def keyword_reply(keyword: Keyword, settings: Settings, texts: SystemTexts) -> str:
    """The text that answers STOP, START or HELP, in the language of the number's member."""
    return texts(
        f"sms.{keyword}",
        program=settings.program_name,
        support=settings.support_contact,
        frequency=settings.sms_frequency,
    )


def twiml(text: str | None) -> Response:
    """A TwiML answer: one reply message, or an empty <Response/>."""
    response = MessagingResponse()
    if text is not None:
        response.message(text)
    return Response(str(response), media_type="application/xml")


async def _signed_form(app: App, request: Request) -> Form | Response:
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        return refused("twilio", "too_large", 413)
    try:
        params: Form = ImmutableMultiDict(
            parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        )
    except (UnicodeDecodeError, ValueError):
        params = ImmutableMultiDict()
    signed = twilio_signature_ok(
        app.settings.twilio_auth_token,
        public_url(app.settings, request),
        params,
        request.headers.get("X-Twilio-Signature"),
        request.headers.get("X-Twilio-Webhooks-Signature-Settings"),
    )
    if not signed:
        return refused("twilio", "signature", 403)
    return params


def _message_id(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value) or None
