"""Small HTML pages for customers: plain, self-contained, no scripts, no tracking."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse

from channels.system_texts import SystemTexts, system_texts
from loyalty.app import App

__all__ = ["PRIVATE_HEADERS", "page", "texts_for"]

#: Pages name members by link token only: keep them out of caches, indexes and referrers.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}button{font:inherit;padding:.6rem 1.2rem;cursor:pointer}"
)


def texts_for(app: App, locale: str | None, request: Request | None = None) -> SystemTexts:
    """The page texts for a member of ``locale``; for no member, the visitor's browser
    language (Accept-Language) among those with texts, else DEFAULT_LOCALE."""
    accept = request.headers.get("accept-language") if request is not None else None
    return system_texts(
        app.settings.journeys_dir / "templates",
        locale,
        app.settings.default_locale,
        accept_language=accept,
    )


def page(
    title: str,
    *paragraphs: str,
    button: str | None = None,
    status: int = 200,
    lang: str = "en",
) -> HTMLResponse:
    """A page with a heading, escaped paragraphs and an optional POST-to-self button."""
    body = "".join(f"<p>{escape(text)}</p>" for text in paragraphs)
    if button is not None:
        # No action attribute: the form posts back to the URL the page was loaded from.
        body += f'<form method="post"><button type="submit">{escape(button)}</button></form>'
    html = (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=PRIVATE_HEADERS)
