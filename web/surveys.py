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
from html import escape
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
from loyalty.app import App
from web.common import loyalty_app, read_body
from web.pages import PRIVATE_HEADERS, page

__all__ = ["survey_page"]

log = logging.getLogger(__name__)

#: A form with a score and a comment of MAX_COMMENT_CHARS, percent-encoded, fits easily.
MAX_BODY_BYTES = 32 * 1024

#: Per kind: the question and what the ends of the scale mean.
QUESTIONS = {
    "nps": (
        "How likely are you to recommend us to a friend?",
        "not at all likely",
        "extremely likely",
    ),
    "csat": ("How satisfied are you?", "very dissatisfied", "very satisfied"),
}

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
    """GET shows the question (or the score a link carries); POST records score and comment."""
    app = loyalty_app(request)
    token = request.path_params["token"]
    program = app.settings.program_name
    if request.method == "POST":
        body = await read_body(request, MAX_BODY_BYTES)
        if body is None:
            return page("Request too large", status=413)
        fields = _form(body)
        return await _answer(app, token, fields.get("score"), fields.get("comment"))

    def kind() -> str | None:
        with app.database.sessions() as session:
            survey = find_survey(session, token)
            return None if survey is None else survey.kind

    found = await run_in_threadpool(kind)
    if found is None:
        return _not_found(program)
    score = request.query_params.get("score")
    if score is None:
        return _question(program, found)
    try:
        chosen = checked_score(found, score)
    except InvalidAnswer as exc:
        return _question(program, found, error=str(exc), status=400)
    return _confirm(program, found, chosen, request.url.path)


async def _answer(app: App, token: str, score: str | None, comment: str | None) -> Response:
    def apply() -> Answer | InvalidAnswer | None:
        try:
            with app.database.transaction() as session:
                return answer_survey(
                    session, token, score, comment, settings=app.settings, now=app.clock.now()
                )
        except InvalidAnswer as exc:
            return exc

    outcome = await run_in_threadpool(apply)
    program = app.settings.program_name
    if outcome is None:
        return _not_found(program)
    if isinstance(outcome, InvalidAnswer):
        log.info("survey.refused", extra={"kind": outcome.kind})
        return _question(program, outcome.kind, error=str(outcome), status=400)
    return _thanks(program, outcome, commented=bool(comment and comment.strip()))


def _question(program: str, kind: str, *, error: str | None = None, status: int = 200) -> Response:
    question, low, high = QUESTIONS.get(kind, QUESTIONS["nps"])
    scale = SCALES.get(kind, SCALES["nps"])
    buttons = "".join(f'<button type="submit" name="score" value="{n}">{n}</button>' for n in scale)
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        f'{alert}<form method="post"><fieldset><legend>{escape(question)}</legend>'
        f'<p class="hint">{scale[0]} means {escape(low)}, {scale[-1]} means {escape(high)}. '
        "Choosing a number sends your answer, with the comment below if you write one.</p>"
        f'<div class="scale">{buttons}</div></fieldset>'
        f"{_comment_box()}</form>"
    )
    return _document(f"A quick question from {program}", body, status)


def _confirm(program: str, kind: str, score: int, path: str) -> Response:
    question = QUESTIONS.get(kind, QUESTIONS["nps"])[0]
    body = (
        f"<p>{escape(question)} You chose <strong>{score}</strong>.</p>"
        f'<form method="post"><input type="hidden" name="score" value="{score}">'
        f'<button type="submit">Send my answer: {score}</button></form>'
        f'<p class="hint"><a href="{escape(path)}">Choose another number</a></p>'
    )
    return _document(f"A quick question from {program}", body, 200)


def _thanks(program: str, answer: Answer, *, commented: bool) -> Response:
    if commented:
        body = "<p>Your answer and comment are saved.</p>"
    else:
        body = (
            "<p>Your answer is saved. Would you like to tell us more?</p>"
            f'<form method="post"><input type="hidden" name="score" value="{answer.score}">'
            f'{_comment_box()}<button type="submit">Send comment</button></form>'
        )
    return _document(f"Thank you from {program}", body, 200)


def _comment_box() -> str:
    return (
        '<p><label for="comment">Comment (optional)</label>'
        f'<textarea id="comment" name="comment" rows="4" maxlength="{MAX_COMMENT_CHARS}">'
        "</textarea></p>"
    )


def _not_found(program: str) -> Response:
    return page(
        "Survey not found",
        f"This survey link is not valid. Thank you for wanting to answer; "
        f"reply to any message from {program} to tell us what you think.",
        status=404,
    )


def _document(title: str, body: str, status: int) -> HTMLResponse:
    """A page like `web.pages.page`, with a form of our own; `body` is already escaped HTML."""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
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
