"""Rendering console pages: Jinja2 templates (autoescaped), private headers, short error pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

__all__ = ["HEADERS", "HTMX", "error_page", "render"]

#: htmx, vendored from the npm package `htmx.org` (0BSD, see its LICENSE file beside it) and
#: served from the console's static files: the filters and the simulation's progress update
#: in place. Pages work without it (plain forms and a refresh).
HTMX = "htmx-2.0.11.min.js"

#: Console pages show personal data: never cached, framed, or sent in a referrer.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """The page `name` with the signed-in user and the form token in its context."""
    context = {
        "user": request.scope.get("console_user"),
        "csrf": request.scope.get("console_csrf", ""),
        "htmx": HTMX,
        **context,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def error_page(request: Request, status: int, title: str, text: str) -> Response:
    """A short page that says what went wrong and what to do; never a traceback."""
    try:
        return render(request, "error.html", {"title": title, "text": text}, status)
    except Exception:  # the error page must answer even when templates cannot
        return HTMLResponse(f"<h1>{title}</h1><p>{text}</p>", status_code=status, headers=HEADERS)
