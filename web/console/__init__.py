"""The console (`/console`): journeys, members, messages and operations for signed-in users.

Server-rendered with Jinja2; sessions are signed cookies (CONSOLE_SECRET). Without
CONSOLE_SECRET the console is off and says so in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from loyalty.app import App
from web.console.auth import sign_in, sign_out
from web.console.journeys import journey_action, journey_page, journeys_page
from web.console.limits import SignInLimit
from web.console.members import member_page, members_page
from web.console.messages import message_page, messages_page
from web.console.operations import operations_page, replay_dead_letter
from web.console.previews import preview_page
from web.console.rendering import error_page
from web.console.simulations import simulate_page, simulation_page, start_simulation

__all__ = ["OFF_MESSAGE", "console_app"]

log = logging.getLogger("web.console")

OFF_MESSAGE = (
    "the console is off: set CONSOLE_SECRET (at least 32 random characters, e.g. "
    "`openssl rand -hex 32`) and restart `loyalty serve`"
)
#: Hours a console session lasts.
SESSION_HOURS = 8


async def _home(request: Request) -> Response:
    return RedirectResponse("/console/journeys", status_code=303)


async def _off(request: Request) -> Response:
    return PlainTextResponse(OFF_MESSAGE, status_code=503)


async def _database_down(request: Request, exc: Exception) -> Response:
    log.warning("console.database_error", extra={"error": type(exc).__name__})
    return error_page(
        request,
        503,
        "Database unavailable",
        "The console cannot reach the database just now; try again in a moment.",
    )


def console_app(app: App) -> Starlette:
    """The console for one App; a one-line 503 for every page when CONSOLE_SECRET is unset."""
    secret = app.settings.console_secret
    if secret is None:
        log.warning("console.off", extra={"reason": "CONSOLE_SECRET is not set"})
        return Starlette(routes=[Route("/{path:path}", _off, methods=["GET", "POST", "HEAD"])])
    routes = [
        Route("/", _home, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["GET", "POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
        Route("/journeys", journeys_page, methods=["GET"]),
        Route("/journeys/{journey_id}", journey_page, methods=["GET"]),
        Route(
            "/journeys/{journey_id}/{action:str}",
            journey_action,
            methods=["POST"],
        ),
        Route("/members", members_page, methods=["GET"]),
        Route("/members/{member_id:int}", member_page, methods=["GET"]),
        Route("/messages", messages_page, methods=["GET"]),
        Route("/messages/{message_id:int}", message_page, methods=["GET"]),
        Route("/preview", preview_page, methods=["GET"]),
        Route("/simulate", simulate_page, methods=["GET"]),
        Route("/simulate", start_simulation, methods=["POST"]),
        Route("/simulate/{run_id}", simulation_page, methods=["GET"]),
        Route("/operations", operations_page, methods=["GET"]),
        Route(
            "/operations/dead-letters/{dead_letter_id:int}/replay",
            replay_dead_letter,
            methods=["POST"],
        ),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
    console = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret.get_secret_value(),
                session_cookie="loyalty_console",
                max_age=SESSION_HOURS * 3600,
                path="/console",
                same_site="strict",
                https_only=app.settings.public_base_url.startswith("https://"),
            )
        ],
        exception_handlers={SQLAlchemyError: _database_down},
    )
    console.state.loyalty = app
    console.state.sign_in_limit = SignInLimit(app)
    return console
