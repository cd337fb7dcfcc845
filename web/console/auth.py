"""Console sign-in, sign-out, roles and form tokens.

The session cookie (Starlette's SessionMiddleware, signed with CONSOLE_SECRET)
holds the user's id and a per-session form token. Every request loads the user
again, so a disabled user is out at once. Every POST carries the form token,
compared in constant time; a form from another site cannot have it.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from loyalty.app import App
from loyalty.models import ConsoleUser
from loyalty.users import Role, check_password
from web.common import loyalty_app, read_body
from web.console.limits import SignInLimit
from web.console.rendering import error_page, render

__all__ = ["Signed", "form", "requires", "sign_in", "sign_out"]

log = logging.getLogger("web.console")

Handler = Callable[[Request], Awaitable[Response]]

#: Largest console form body.
FORM_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Signed:
    """The user behind a request."""

    id: int
    email: str
    role: Role

    @property
    def role_name(self) -> str:
        return self.role.label

    def may(self, role: str) -> bool:
        return self.role >= Role.named(role)


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    request.scope["console_csrf"] = token
    return token


async def form(request: Request) -> dict[str, str]:
    """The URL-encoded form of a POST (parsed once per request)."""
    cached = request.scope.get("console_form")
    if isinstance(cached, dict):
        return cached
    body = await read_body(request, FORM_LIMIT) or b""
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    fields = dict(pairs)
    request.scope["console_form"] = fields
    return fields


async def _token_ok(request: Request) -> bool:
    expected = _csrf(request)
    sent = (await form(request)).get("csrf", "")
    return hmac.compare_digest(sent.encode(), expected.encode())


def _load_user(app: App, user_id: int) -> Signed | None:
    with app.database.sessions() as session:
        row = session.get(ConsoleUser, user_id)
        if row is None or row.disabled_at is not None:
            return None
        return Signed(row.id, row.email, Role.named(row.role))


def requires(role: str) -> Callable[[Handler], Handler]:
    """The handler needs a signed-in user with at least `role`; a POST also the form token."""
    needed = Role.named(role)

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            _csrf(request)
            user_id = request.session.get("user_id")
            user = None
            if isinstance(user_id, int):
                user = await run_in_threadpool(_load_user, loyalty_app(request), user_id)
            if user is None:
                request.session.pop("user_id", None)
                if request.method != "GET":
                    return error_page(request, 401, "Signed out", "Sign in again, then retry.")
                target = quote(
                    request.url.path + ("?" + request.url.query if request.url.query else "")
                )
                return RedirectResponse(f"/console/sign-in?next={target}", status_code=303)
            request.scope["console_user"] = user
            if user.role < needed:
                return error_page(
                    request,
                    403,
                    "Not allowed",
                    f"This needs the {needed.label} role; you are signed in as a "
                    f"{user.role_name}. Ask an operator if you need more.",
                )
            if request.method == "POST" and not await _token_ok(request):
                return error_page(
                    request,
                    403,
                    "Form expired",
                    "The form was stale or not ours: reload the page and submit again.",
                )
            return await handler(request)

        return checked

    return wrap


def _safe_next(target: str | None) -> str:
    # Only our own pages: an open redirect would let a link send users anywhere.
    if target and target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return "/console/journeys"


async def sign_in(request: Request) -> Response:
    """GET: the sign-in form; POST: check the password, within the failed sign-in limit."""
    token = _csrf(request)
    if request.method == "GET":
        return render(
            request, "sign_in.html", {"next": _safe_next(request.query_params.get("next"))}
        )
    fields = await form(request)
    next_page = _safe_next(fields.get("next"))
    if not await _token_ok(request):
        return render(
            request,
            "sign_in.html",
            {"next": next_page, "error": "The form expired; please sign in again."},
            403,
        )
    email = fields.get("email", "").strip().lower()[:320]
    password = fields.get("password", "")[:1024]
    app = loyalty_app(request)
    limit: SignInLimit = request.app.state.sign_in_limit
    address = request.client.host if request.client else "unknown"
    key = limit.key(email, address)
    wait = await run_in_threadpool(limit.wait_seconds, key)
    if wait:
        log.warning("console.sign_in_limited", extra={"wait_s": wait})
        return render(
            request,
            "sign_in.html",
            {
                "next": next_page,
                "error": f"Too many failed sign-ins; try again in {limit.minutes(wait)} minute(s).",
            },
            429,
        )
    user = await run_in_threadpool(_check, app, email, password)
    if user is None:
        # Logs never carry the email: only that a sign-in failed.
        log.warning("console.sign_in_failed", extra={"limited_after": limit.attempts})
        await run_in_threadpool(limit.failed, key)
        return render(
            request, "sign_in.html", {"next": next_page, "error": "Wrong email or password."}, 401
        )
    await run_in_threadpool(limit.succeeded, key)
    log.info("console.signed_in", extra={"user_id": user})
    # A new session on sign-in: a token planted before it is worth nothing after.
    request.session.clear()
    request.session["user_id"] = user
    request.session["csrf"] = secrets.token_urlsafe(32)
    del token
    return RedirectResponse(next_page, status_code=303)


def _check(app: App, email: str, password: str) -> int | None:
    with app.database.transaction() as session:
        row = check_password(session, email, password, now=app.clock.now())
        return None if row is None else row.id


async def sign_out(request: Request) -> Response:
    """POST with the form token: end the session."""
    if await _token_ok(request):
        request.session.clear()
    return RedirectResponse("/console/sign-in", status_code=303)
