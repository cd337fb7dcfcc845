"""Small HTML pages for customers: plain, self-contained, no scripts, no tracking."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

__all__ = ["page"]

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


def page(
    title: str, *paragraphs: str, button: str | None = None, status: int = 200
) -> HTMLResponse:
    """A page with a heading, escaped paragraphs and an optional POST-to-self button."""
    body = "".join(f"<p>{escape(text)}</p>" for text in paragraphs)
    if button is not None:
        # No action attribute: the form posts back to the URL the page was loaded from.
        body += f'<form method="post"><button type="submit">{escape(button)}</button></form>'
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=PRIVATE_HEADERS)
