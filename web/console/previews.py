"""Preview: a journey's send steps rendered for one member, as they would get them now.

The email body is shown in a sandboxed frame (no scripts, no forms, no navigation
of this page); the SMS with its segments, encoding and cost.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from automations.preview import OutsideAudience, preview
from automations.versions import latest_versions
from loyalty.app import App
from web.common import loyalty_app
from web.console.auth import requires
from web.console.rendering import render

__all__ = ["preview_page"]

#: The preview page frames the member's email: its own styles and pictures may load there.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _journey_ids(app: App) -> list[str]:
    with app.database.sessions() as session:
        return [row.journey_id for row in latest_versions(session)]


def preview_view(app: App, journey_id: str, member: str, step: str) -> dict[str, Any]:
    view: dict[str, Any] = {
        "journeys": _journey_ids(app),
        "journey_id": journey_id,
        "member": member,
        "step": step,
        "items": [],
        "problem": None,
    }
    if not (journey_id and member):
        return view
    try:
        view["items"] = preview(app, journey_id, member, step or None)
    except (OutsideAudience, LookupError) as exc:
        view["problem"] = str(exc).strip("'\"")
    return view


@requires("viewer")
async def preview_page(request: Request) -> Response:
    params = request.query_params
    view = await run_in_threadpool(
        preview_view,
        loyalty_app(request),
        params.get("journey", "")[:128],
        params.get("member", "")[:255],
        params.get("step", "")[:128],
    )
    response = render(request, "preview.html", view)
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    return response
