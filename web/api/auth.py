"""Bearer tokens on every route: 401 without a live token, 403 outside its scopes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from loyalty.tokens import authenticate
from web.api.errors import ApiError
from web.common import loyalty_app

__all__ = ["Caller", "require"]

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="lj_…",
    description="An API token from `loyalty tokens create --name NAME --scope …`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """Who calls: the token's name (the source of its events) and its scopes."""

    name: str
    scopes: frozenset[str]


def _unauthorized(msg: str) -> ApiError:
    return ApiError(401, ["header", "Authorization"], msg, "unauthorized", _CHALLENGE)


def require(scope: str) -> Callable[..., Caller]:
    """A dependency: the caller, whose token must grant `scope`."""

    def caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        if credentials is None:
            raise _unauthorized("send an API token: Authorization: Bearer lj_…")
        app = loyalty_app(request)
        with app.database.transaction() as session:
            token = authenticate(session, credentials.credentials, now=app.clock.now())
            found = None if token is None else Caller(token.name, frozenset(token.scopes))
        if found is None:
            raise _unauthorized("the token is unknown or revoked")
        if scope not in found.scopes:
            raise ApiError(
                403,
                ["header", "Authorization"],
                f"the token {found.name!r} lacks the scope {scope}",
                "missing_scope",
            )
        return found

    return caller
