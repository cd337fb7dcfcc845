"""GET /r/{CODE}: a member's referral link. Records the visit and sends the friend to the shop.

The friend lands on the storefront (SHOP_URL) with the referrer's friend discount
code applied (`shops.friend_codes.landing_url`); the code is made at the shop on
the first visit. The visit is kept as digests of the IP address and user agent,
never the values. An unknown or erased member's code gets a neutral 404 page that
names no one, in the visitor's browser language. HEAD (link previews, scanners) answers
the same way and records nothing.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from loyalty.app import App
from loyalty.referrals import CLICK_KEY, record_click, referrer_by_code
from loyalty.rewards import RedemptionState
from shops.friend_codes import friend_code, landing_url
from web.common import loyalty_app
from web.pages import PRIVATE_HEADERS, page, texts_for

__all__ = ["referral_link"]

log = logging.getLogger(__name__)

#: Referral codes are short; anything longer is not one (and is not looked up).
MAX_CODE_CHARS = 32


async def referral_link(request: Request) -> Response:
    app = loyalty_app(request)
    code = str(request.path_params["code"]).strip().upper()
    if not code or len(code) > MAX_CODE_CHARS or not code.isalnum():
        return _not_found(app, request)
    if request.method == "HEAD":
        known = await run_in_threadpool(_known, app, code)
        return _redirect(app, request, None) if known else _not_found(app, request)
    client = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")
    referrer_id = await run_in_threadpool(_record, app, code, client, user_agent)
    if referrer_id is None:
        return _not_found(app, request)
    friend = await run_in_threadpool(_friend_code, app, referrer_id)
    log.info("referral.click", extra={"referrer_id": referrer_id, "friend_code": bool(friend)})
    return _redirect(app, request, friend)


def _known(app: App, code: str) -> bool:
    with app.database.sessions() as session:
        return referrer_by_code(session, code) is not None


def _record(app: App, code: str, ip: str | None, user_agent: str | None) -> int | None:
    with app.database.transaction() as session:
        referrer = record_click(
            session,
            code,
            ip=ip,
            user_agent=user_agent,
            key=app.settings.reward_code_secret or CLICK_KEY,
            now=app.clock.now(),
        )
        return None if referrer is None else referrer.id


def _friend_code(app: App, referrer_id: int) -> str | None:
    """The friend's code to apply, or None (none configured, refused, or misconfigured)."""
    try:
        made = friend_code(app, referrer_id)
    except Exception as exc:  # the friend still reaches the shop; the log says why
        log.warning(
            "referral.friend_code_failed",
            extra={"referrer_id": referrer_id, "error": type(exc).__name__},
        )
        return None
    if made is None or made.state == RedemptionState.FAILED:
        return None
    return made.code  # pending too: the code is known, the next visit makes it at the shop


def _redirect(app: App, request: Request, code: str | None) -> Response:
    target = landing_url(app.settings, code)
    if target is None:
        log.warning("referral.no_shop_url", extra={})
        return _not_found(app, request)
    return RedirectResponse(target, status_code=303, headers=PRIVATE_HEADERS)


def _not_found(app: App, request: Request) -> Response:
    """Names no one, so it speaks the visitor's language (Accept-Language)."""
    texts = texts_for(app, None, request)
    program = app.settings.program_name
    return page(
        texts("referral.not_found_title", program=program),
        texts("referral.not_found", program=program),
        status=404,
        lang=texts.locale,
    )
