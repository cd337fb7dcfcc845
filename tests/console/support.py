"""Signing in to the console in tests: users made as the CLI makes them, forms with their token."""

from __future__ import annotations

import re
from html import unescape

import httpx
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.users import create_user

PASSWORD = "correct horse battery staple"
SECRET = "s" * 48


def make_user(app: App, email: str, role: str, password: str = PASSWORD) -> None:
    with app.database.transaction() as session:
        create_user(session, email, role, password, now=app.clock.now())


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> httpx.Response:
    token = form_token(client.get("/console/sign-in").text)
    answer: httpx.Response = client.post(
        "/console/sign-in",
        data={"csrf": token, "email": email, "password": password, "next": "/console/journeys"},
        follow_redirects=False,
    )
    return answer


def post_form(client: TestClient, path: str, page: str = "/console/journeys") -> httpx.Response:
    """POST to `path` with the form token of the signed-in session (read from `page`)."""
    token = form_token(client.get(page).text)
    answer: httpx.Response = client.post(path, data={"csrf": token}, follow_redirects=False)
    return answer


def text_of(html: str) -> str:
    """The page's visible text, tags removed and spaces collapsed."""
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip())
