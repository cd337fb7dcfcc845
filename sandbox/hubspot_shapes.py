"""HubSpot response shapes: errors, 429s, batch results and their 207 form."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

from sandbox.hubspot_store import CrmError, iso_now

__all__ = [
    "AUTH_MESSAGE",
    "BATCH_LIMIT",
    "batch_inputs",
    "batch_response",
    "echoed",
    "error_body",
    "error_entry",
    "not_found",
    "rate_limited",
]

BATCH_LIMIT = 100

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


def error_body(category: str, message: str) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }


def rate_limited(policy: str) -> Response:
    body = {
        "status": "error",
        "message": f"You have reached your {policy.lower()} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
    }
    return JSONResponse(body, 429)


def batch_inputs(body: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise CrmError(400, "VALIDATION_ERROR", "inputs must be an array")
    if len(inputs) > BATCH_LIMIT:
        raise CrmError(400, "VALIDATION_ERROR", f"Batch input is limited to {BATCH_LIMIT} inputs")
    return inputs


def error_entry(
    category: str, message: str, ids: list[str], details: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": {"ids": ids} if ids else {},
        "errors": details,
        "links": {},
    }


def not_found(ids: list[str]) -> dict[str, Any]:
    msg = (
        "Could not get some CONTACT objects, they may be deleted or not exist. "
        "Check that ids are valid."
    )
    return {**error_entry("OBJECT_NOT_FOUND", msg, ids, []), "_status": 404}


def batch_response(
    started: str, results: list[dict[str, Any]], errors: list[dict[str, Any]], ok_status: int = 200
) -> Response:
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": iso_now(),
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = [{k: v for k, v in e.items() if k != "_status"} for e in errors]
        return JSONResponse(body, 207)
    return JSONResponse(body, ok_status)


def echoed(props: dict[str, Any]) -> list[str]:
    """Write responses carry the written properties plus the ones HubSpot maintains."""
    return [
        *props,
        *(n for n in ("createdate", "hs_object_id", "lastmodifieddate") if n not in props),
    ]
