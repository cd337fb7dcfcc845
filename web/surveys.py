"""GET and POST /s/{token}: the survey page that survey emails and texts link to.

GET shows the question (NPS 0-10 or CSAT 1-5) as buttons and an optional comment
box; the form posts back to the same URL, so no cookie is needed. A link may
carry the score (`/s/{token}?score=9`): GET shows that score with one button
that posts it, and records nothing, because mail scanners and link previews
follow links (a GET or HEAD never changes anything). Answering again replaces
the answer.

How the `survey.answered` event reaches the journeys: the first answer records
the event in the same transaction as the answer (`channels.surveys`), and the
request queues nothing. `loyalty serve` is its own process and builds no broker;
building one here would, on the embedded default, make an in-memory queue that no
worker reads, and queueing after the commit (as `automations.intake.emit` does)
would store the answer and its event in two transactions. A stored, unprocessed
event is what the scheduler's outbox relay tick looks for: it queues it to
`loyalty worker` (or `loyalty run`'s threads) on whichever broker they share,
once the event is EVENT_RELAY_AFTER_SECONDS old. The answer and its event
commit together or not at all, whatever runs next to this process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from channels.surveys import (
    MAX_COMMENT_CHARS,
    SCALES,
    Answer,
    InvalidAnswer,
    answer_survey,
    checked_score,
    find_survey,
)
from channels.system_texts import SystemTexts
from loyalty.app import App
from loyalty.models import Member
from web.common import loyalty_app, read_body
from web.pages import PRIVATE_HEADERS, page, texts_for

__all__ = ["survey_page"]

log = logging.getLogger(__name__)

#: A form with a score and a comment of MAX_COMMENT_CHARS, percent-encoded, fits easily.
MAX_BODY_BYTES = 32 * 1024

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}button{font:inherit;padding:.6rem 1.2rem;cursor:pointer}"
    "fieldset{border:0;margin:0 0 1.5rem;padding:0}legend{font-size:1.25rem;font-weight:600;"
    "margin-bottom:.5rem}.scale{display:flex;flex-wrap:wrap;gap:.4rem}.scale button{"
    "min-width:2.75rem;min-height:2.75rem;padding:.4rem}.hint{color:#555}"
    "label{display:block;font-weight:600;margin-bottom:.3rem}textarea{font:inherit;"
    "width:100%;box-sizing:border-box}.error{color:#a00;font-weight:600}"
)


async def survey_page(request: Request) -> Response:
    """GET shows the question (or the score a link carries); POST records score and comment.

    Pages come in the member's language (`channels.system_texts`).
    """
    app = loyalty_app(request)
    token = request.path_params["token"]
    if request.method == "POST":
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            texts = texts_for(app, None, request)
            return page(texts("page.too_large"), status=413, lang=texts.locale)
        fields = _form(body)
        return await _answer(app, request, token, fields.get("score"), fields.get("comment"))

    found = await run_in_threadpool(_find, app, token)
    if found is None:
        return _not_found(_Page(app, texts_for(app, None, request)))
    kind, locale = found
    view = _Page(app, texts_for(app, locale, request))
    score = request.query_params.get("score")
    if score is None:
        return _question(view, kind)
    try:
        chosen = checked_score(kind, score)
    except InvalidAnswer as exc:
        return _question(view, kind, error=exc, status=400)
    return _confirm(view, kind, chosen, request.url.path)


def _find(app: App, token: str) -> tuple[str, str | None] | None:
    """The survey's kind and its member's locale, or None for an unknown link."""
    with app.database.sessions() as session:
        survey = find_survey(session, token)
        if survey is None:
            return None
        member = session.get(Member, survey.member_id)
        return survey.kind, member.locale if member is not None else None


async def _answer(
    app: App, request: Request, token: str, score: str | None, comment: str | None
) -> Response:
    found = await run_in_threadpool(_find, app, token)

    def apply() -> Answer | InvalidAnswer | None:
        try:
            with app.database.transaction() as session:
                return answer_survey(
                    session, token, score, comment, settings=app.settings, now=app.clock.now()
                )
        except InvalidAnswer as exc:
            return exc

    outcome = await run_in_threadpool(apply)
    view = _Page(app, texts_for(app, found[1] if found else None, request))
    if outcome is None:
        return _not_found(view)
    if isinstance(outcome, InvalidAnswer):
        log.info("survey.refused", extra={"kind": outcome.kind})
        return _question(view, outcome.kind, error=outcome, status=400)
    return _thanks(view, outcome, commented=bool(comment and comment.strip()))


#: Stands for a value that the page sets in markup after escaping the text around it.
_MARK = "\ue000"


@dataclass(frozen=True)
class _Page:
    """The texts of one member's survey page, with the program's name at hand."""

    app: App
    texts: SystemTexts

    def __call__(self, key: str, **values: Any) -> str:
        return self.texts(key, program=self.app.settings.program_name, **values)


def _kind(kind: str) -> str:
    return kind if kind in SCALES else "nps"


def _error(view: _Page, error: InvalidAnswer, kind: str) -> str:
    if error.comment:
        return view("survey.long_comment", max_chars=view.texts.number(MAX_COMMENT_CHARS))
    scale = SCALES[_kind(kind)]
    return view("survey.bad_score", lowest=scale[0], highest=scale[-1])


def _question(
    view: _Page, kind: str, *, error: InvalidAnswer | None = None, status: int = 200
) -> Response:
    kind = _kind(kind)
    scale = SCALES[kind]
    buttons = "".join(f'<button type="submit" name="score" value="{n}">{n}</button>' for n in scale)
    alert = (
        f'<p class="error" role="alert">{escape(_error(view, error, kind))}</p>' if error else ""
    )
    hint = view(
        "survey.scale_hint",
        lowest=scale[0],
        highest=scale[-1],
        low=view(f"survey.{kind}.low"),
        high=view(f"survey.{kind}.high"),
    )
    body = (
        f'{alert}<form method="post"><fieldset><legend>'
        f"{escape(view(f'survey.{kind}.question'))}</legend>"
        f'<p class="hint">{escape(hint)}</p>'
        f'<div class="scale">{buttons}</div></fieldset>'
        f"{_comment_box(view)}</form>"
    )
    return _document(view, view("survey.title"), body, status)


def _confirm(view: _Page, kind: str, score: int, path: str) -> Response:
    question = view(f"survey.{_kind(kind)}.question")
    # The score is shown bold wherever the text puts it.
    chosen = escape(view("survey.chosen", score=_MARK)).replace(_MARK, f"<strong>{score}</strong>")
    body = (
        f"<p>{escape(question)} {chosen}</p>"
        f'<form method="post"><input type="hidden" name="score" value="{score}">'
        f'<button type="submit">{escape(view("survey.send_answer", score=score))}</button></form>'
        f'<p class="hint"><a href="{escape(path)}">{escape(view("survey.choose_another"))}</a></p>'
    )
    return _document(view, view("survey.title"), body, 200)


def _thanks(view: _Page, answer: Answer, *, commented: bool) -> Response:
    if commented:
        body = f"<p>{escape(view('survey.saved_with_comment'))}</p>"
    else:
        body = (
            f"<p>{escape(view('survey.saved'))}</p>"
            f'<form method="post"><input type="hidden" name="score" value="{answer.score}">'
            f'{_comment_box(view)}<button type="submit">{escape(view("survey.send_comment"))}'
            "</button></form>"
        )
    return _document(view, view("survey.thanks_title"), body, 200)


def _comment_box(view: _Page) -> str:
    return (
        f'<p><label for="comment">{escape(view("survey.comment_label"))}</label>'
        f'<textarea id="comment" name="comment" rows="4" maxlength="{MAX_COMMENT_CHARS}">'
        "</textarea></p>"
    )


def _not_found(view: _Page) -> Response:
    return page(
        view("survey.not_found_title"),
        view("survey.not_found"),
        status=404,
        lang=view.texts.locale,
    )


def _document(view: _Page, title: str, body: str, status: int) -> HTMLResponse:
    """A page like `web.pages.page`, with a form of our own; `body` is already escaped HTML."""
    html = (
        f'<!doctype html><html lang="{escape(view.texts.locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=PRIVATE_HEADERS)


def _form(body: bytes) -> dict[str, str]:
    """An urlencoded form: the first value of each field (none when the body is not one)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields
