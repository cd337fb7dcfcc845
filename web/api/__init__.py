"""The HTTP API `/api/v1` (FastAPI): events in, members in and out, behind bearer tokens.

One router module per resource; a new one is added to ROUTERS. Every route
needs a token with the route's scope (`web.api.auth`); bodies are size- and
deadline-limited before parsing (`web.api.limits`); every fault is answered in
one shape that names the field (`web.api.errors`). The OpenAPI document is at
`/api/v1/openapi.json`, a reference page at `/api/v1/docs`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from loyalty.app import App
from web.api import events, members, rewards
from web.api.docs import docs_page
from web.api.errors import install
from web.api.limits import BodyLimit
from web.api.workers import EventQueue

__all__ = ["PREFIX", "ROUTERS", "create_api", "mount_api"]

#: Every resource's routes.
ROUTERS: tuple[APIRouter, ...] = (events.router, members.router, rewards.router)

#: Where the API is mounted in `loyalty serve`.
PREFIX = "/api/v1"
TITLE = "Loyalty journeys API"
VERSION = "1"
DESCRIPTION = (
    "Send events (orders, refunds, sign-ups), create and read members and their points. "
    "Every route needs `Authorization: Bearer <token>` from `loyalty tokens create`, "
    "with the scope the route names."
)


def mount_api(app: App) -> Mount:
    """The API for one App, mounted at PREFIX.

    Every path under the prefix reaches the API, even one whose member id holds a line
    break (a plain Mount's `.*` stops at one), so that every answer is the API's own.
    """
    mount = Mount(PREFIX, app=create_api(app))
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount


def create_api(app: App) -> FastAPI:
    """The API for one App, to be mounted at PREFIX."""
    api = FastAPI(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    api.state.loyalty = app
    api.state.event_queue = EventQueue(app.settings)
    install(api)
    api.add_middleware(BodyLimit)
    for router in ROUTERS:
        api.include_router(router)

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            body = events.schemas()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["EventBody"] = {"title": "EventBody", **body}
            document["servers"] = [{"url": PREFIX}]
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]

    async def docs(request: Request) -> Response:
        return docs_page(openapi(), f"{PREFIX}/openapi.json")

    api.add_route("/docs", docs, methods=["GET"], include_in_schema=False)
    return api
