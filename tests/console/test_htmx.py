"""htmx is served from the console's own static files (vendored, pinned, no CDN), and the
filters and the simulation's progress are marked up for it while working without it."""

from __future__ import annotations

import hashlib
import re

from starlette.testclient import TestClient

from loyalty.app import App
from tests.console.support import make_user, sign_in
from web.console.rendering import HTMX

#: The sha256 of htmx.org 2.0.11's dist/htmx.min.js as published on npm.
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def test_pages_load_the_vendored_htmx_from_the_console_itself(
    console: App, client: TestClient
) -> None:
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")

    page = client.get("/console/messages")

    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == [f"/console/static/{HTMX}"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    served = client.get(scripts[0])
    assert served.status_code == 200
    assert "javascript" in served.headers["content-type"]
    assert hashlib.sha256(served.content).hexdigest() == HTMX_SHA256
    license_text = client.get(f"/console/static/{HTMX.removesuffix('.min.js')}.LICENSE").text
    assert "Zero-Clause BSD" in license_text


def test_the_message_filters_update_the_list_in_place_and_still_work_as_a_form(
    console: App, client: TestClient
) -> None:
    make_user(console, "vera@example.com", "viewer")
    sign_in(client, "vera@example.com")

    page = client.get("/console/messages", params={"state": "sent"}).text

    form = re.search(r'<form method="get" action="/console/messages"([^>]*)>', page)
    assert form is not None
    assert 'hx-select="#results"' in form.group(1) and 'hx-target="#results"' in form.group(1)
    assert '<div id="results">' in page
    assert re.search(r"<option selected>sent</option>", page)
