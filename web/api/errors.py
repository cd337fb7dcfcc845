"""One shape for every 4xx of /api/v1: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.

`loc` names where the fault is, FastAPI style: `["body", "events", 3, "at"]`,
`["path", "external_id"]`, `["header", "Authorization"]`. Values the caller sent
are never echoed back (they may be personal data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "Problem",
    "described",
    "error_response",
    "install",
]


class Problem(BaseModel):
    """One fault: where (`loc`), what (`msg`) and its kind (`type`)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: list[Problem]


class ApiError(Exception):
    """Answer `status` with one problem at `loc`."""

    def __init__(
        self,
        status: int,
        loc: Sequence[str | int],
        msg: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.problems = [Problem(loc=list(loc), msg=msg, type=kind)]
        self.headers = dict(headers or {})

    @classmethod
    def many(cls, status: int, problems: Sequence[Problem]) -> ApiError:
        """Answer `status` with every one of `problems` (at least one)."""
        first = problems[0]
        error = cls(status, first.loc, first.msg, first.type)
        error.problems = list(problems)
        return error


def error_response(
    status: int, problems: Sequence[Problem], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(detail=list(problems)).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def described(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these fault statuses."""
    what = {
        400: "The body is not JSON",
        401: "No valid bearer token (`Authorization: Bearer lj_…`)",
        403: "The token lacks the scope this route needs",
        404: "No such member",
        405: "Method not allowed",
        408: "The body did not arrive in time",
        409: "The member was erased",
        410: "The member was erased",
        413: "The body is too large",
        422: "A field is invalid: `loc` names it",
    }
    return {status: {"model": ErrorBody, "description": what[status]} for status in statuses}


#: The faults every authenticated route may answer.
ERROR_RESPONSES = described(400, 401, 403, 405, 408, 413, 422)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.problems, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        Problem(
            loc=[part for part in error.get("loc", ()) if isinstance(part, str | int)] or ["body"],
            msg=str(error.get("msg", "invalid")),
            type=str(error.get("type", "value_error")),
        )
        for error in exc.errors()
    ]
    return error_response(422, problems or [Problem(loc=["body"], msg="invalid", type="invalid")])


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    loc = {404: ["path"], 405: ["method"]}.get(exc.status_code, ["body"])
    msg = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    if exc.status_code == 400:
        msg = "the body is not JSON"
    problem = Problem(loc=list(loc), msg=msg, type="http")
    return error_response(exc.status_code, [problem], exc.headers)


def install(api: FastAPI) -> None:
    """Answer every fault of `api` in the one shape."""
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
