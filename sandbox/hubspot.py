"""HubSpot CRM v3 emulator: contacts, properties, search, gdpr-delete, tasks, rate limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig, RollingWindow
from sandbox.hubspot_shapes import (
    AUTH_MESSAGE,
    batch_inputs,
    batch_response,
    echoed,
    error_body,
    error_entry,
    not_found,
    rate_limited,
)
from sandbox.hubspot_store import CrmError, HubSpotStore, iso_now
from sandbox.hubspot_tasks import TaskStore

__all__ = ["HubSpotSandbox"]

#: Private-app token the sandbox accepts unless told otherwise.
DEFAULT_TOKEN = "pat-sandbox-0000"
HISTORY_BATCH_LIMIT = 50
SEARCH_PAGE_LIMIT = 200
SEARCH_RESULT_CAP = 10_000
CONTACTS = "/crm/v3/objects/contacts"
PROPERTIES = "/crm/v3/properties/contacts"
TASKS = "/crm/v3/objects/tasks"

Handler = Callable[[Request], Awaitable[Response]]


class HubSpotSandbox(Emulator):
    """Stateful HubSpot CRM v3 (contacts) speaking the real JSON and limits."""

    name = "hubspot"
    settings = ("tokens", "ten_secondly_limit", "daily_limit", "search_per_second")

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
        ten_secondly_limit: int | None = 190,
        daily_limit: int = 625_000,
        search_per_second: int | None = 5,
        faults: FaultConfig | None = None,
        port: int = 0,
    ) -> None:
        self.tokens = set(tokens)
        self.ten_secondly_limit = ten_secondly_limit
        self.daily_limit = daily_limit
        self.search_per_second = search_per_second
        self.store = HubSpotStore()
        super().__init__(faults=faults, port=port)

    @property
    def access_token(self) -> str:
        return next(iter(sorted(self.tokens)))

    def reset_state(self) -> None:
        self.store = HubSpotStore()
        self.task_store = TaskStore()
        self.apply_limits()

    def apply_limits(self) -> None:
        """Start fresh windows from the current limit settings (change them, then call this)."""
        limit = self.ten_secondly_limit
        self._ten_s = RollingWindow(limit, 10.0) if limit is not None else None
        self._search = (
            RollingWindow(self.search_per_second, 1.0) if self.search_per_second else None
        )
        self._daily_used = 0

    # -- Python accessors for tests ------------------------------------------------

    def contacts(self) -> list[dict[str, Any]]:
        """Every live contact as {id, properties, createdAt, updatedAt}."""
        with self.lock:
            return [
                {"id": c.id, **c.to_json(sorted(c.properties))}
                for c in self.store.contacts.values()
            ]

    def contact_by(self, prop: str, value: str) -> dict[str, Any] | None:
        with self.lock:
            for c in self.store.contacts.values():
                if c.properties.get(prop, "").lower() == value.lower():
                    return c.to_json(sorted(c.properties))
        return None

    def tasks(self) -> list[dict[str, Any]]:
        """Every task as {id, properties, contacts (associated contact ids)}."""
        with self.lock:
            return [
                {"id": t.id, "properties": dict(t.properties), "contacts": list(t.contacts)}
                for t in self.task_store.tasks.values()
            ]

    # -- provider error shapes -------------------------------------------------------

    def error_response(self, status: int) -> Response:
        body = error_body(
            "INTERNAL_ERROR" if status == 500 else "SERVICE_UNAVAILABLE", "internal error"
        )
        return JSONResponse(body, status_code=status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        return rate_limited("TEN_SECONDLY_ROLLING")

    # -- routing ---------------------------------------------------------------------

    def provider_routes(self) -> list[BaseRoute]:
        e = self._endpoint
        return [
            Route(f"{CONTACTS}/batch/create", e(self.batch_create), methods=["POST"]),
            Route(f"{CONTACTS}/batch/update", e(self.batch_update), methods=["POST"]),
            Route(f"{CONTACTS}/batch/upsert", e(self.batch_upsert), methods=["POST"]),
            Route(f"{CONTACTS}/batch/read", e(self.batch_read), methods=["POST"]),
            Route(f"{CONTACTS}/batch/archive", e(self.batch_archive), methods=["POST"]),
            Route(f"{CONTACTS}/search", e(self.search, search=True), methods=["POST"]),
            Route(f"{CONTACTS}/gdpr-delete", e(self.gdpr_delete), methods=["POST"]),
            Route(CONTACTS, e(self.create_one), methods=["POST"]),
            Route(f"{CONTACTS}/{{contact_id}}", e(self.one), methods=["GET", "PATCH", "DELETE"]),
            Route(f"{TASKS}/search", e(self.search_tasks, search=True), methods=["POST"]),
            Route(TASKS, e(self.create_task), methods=["POST"]),
            Route(f"{TASKS}/{{task_id}}", e(self.read_task), methods=["GET"]),
            Route(f"{PROPERTIES}/groups", e(self.groups), methods=["GET", "POST"]),
            Route(PROPERTIES, e(self.properties), methods=["GET", "POST"]),
            Route(
                f"{PROPERTIES}/{{name}}", e(self.property_one), methods=["GET", "PATCH", "DELETE"]
            ),
        ]

    def _endpoint(self, handler: Handler, *, search: bool = False) -> Handler:
        """Bearer auth, the rolling limits and their headers, and CrmError rendering."""

        async def endpoint(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
                return JSONResponse(error_body("INVALID_AUTHENTICATION", AUTH_MESSAGE), 401)
            remaining = None
            if self._ten_s is not None:
                allowed, remaining, _ = self._ten_s.hit()
            self._daily_used += 1
            if remaining is not None and not allowed:
                response = rate_limited("TEN_SECONDLY_ROLLING")
            elif self._daily_used > self.daily_limit:
                response = rate_limited("DAILY")
            elif search and self._search is not None and not self._search.hit()[0]:
                response = rate_limited("SECONDLY")
            else:
                response = await self._handle(handler, request)
            if remaining is not None and self.ten_secondly_limit is not None:
                response.headers["X-HubSpot-RateLimit-Max"] = str(self.ten_secondly_limit)
                response.headers["X-HubSpot-RateLimit-Remaining"] = str(remaining)
                response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
            response.headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            left = max(self.daily_limit - self._daily_used, 0)
            response.headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(left)
            response.headers["X-HubSpot-Correlation-Id"] = str(uuid.uuid4())
            return response

        return endpoint

    @staticmethod
    async def _handle(handler: Handler, request: Request) -> Response:
        try:
            return await handler(request)
        except CrmError as exc:
            return JSONResponse(error_body(exc.category, exc.message), exc.status)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse(error_body("VALIDATION_ERROR", f"Invalid input JSON: {exc}"), 400)

    # -- contacts ----------------------------------------------------------------------

    async def batch_create(self, request: Request) -> Response:
        inputs = batch_inputs(await request.json())
        started, results, errors = iso_now(), [], []
        with self.lock:
            for item in inputs:
                props = item.get("properties") or {}
                self.store.check_known(props)
            for item in inputs:
                props = item.get("properties") or {}
                problem = self._problems(props, None)
                if problem:
                    errors.append(problem)
                    continue
                results.append(self.store.create(props).to_json(echoed(props)))
        return batch_response(started, results, errors, ok_status=201)

    async def batch_update(self, request: Request) -> Response:
        body = await request.json()
        inputs = batch_inputs(body)
        started, results, errors = iso_now(), [], []
        with self.lock:
            for item in inputs:
                self.store.check_known(item.get("properties") or {})
            for item in inputs:
                props = item.get("properties") or {}
                contact = self.store.find(str(item["id"]), item.get("idProperty"))
                if contact is None:
                    errors.append(not_found([str(item["id"])]))
                    continue
                problem = self._problems(props, contact.id)
                if problem:
                    errors.append(problem)
                    continue
                self.store.write(contact, props)
                results.append(contact.to_json(echoed(props)))
        return batch_response(started, results, errors)

    async def batch_upsert(self, request: Request) -> Response:
        inputs = batch_inputs(await request.json())
        started, results, errors = iso_now(), [], []
        with self.lock:
            for item in inputs:
                self.store.check_known(item.get("properties") or {})
                if "id" not in item or "properties" not in item:
                    raise CrmError(400, "VALIDATION_ERROR", "Each input needs id and properties")
            for item in inputs:
                id_property = item.get("idProperty") or "hs_object_id"
                props = dict(item["properties"])
                contact = self.store.find(str(item["id"]), id_property)
                if contact is None and id_property != "hs_object_id":
                    props[id_property] = str(item["id"])
                problem = self._problems(props, contact.id if contact else None)
                if problem:
                    errors.append(problem)
                    continue
                created = contact is None
                if contact is None:
                    if id_property == "hs_object_id":
                        errors.append(not_found([str(item["id"])]))
                        continue
                    contact = self.store.create(props)
                else:
                    self.store.write(contact, props)
                results.append({**contact.to_json(echoed(props)), "new": created})
        return batch_response(started, results, errors)

    async def batch_read(self, request: Request) -> Response:
        body = await request.json()
        inputs, names = batch_inputs(body), body.get("properties") or None
        if body.get("propertiesWithHistory") and len(inputs) > HISTORY_BATCH_LIMIT:
            msg = f"Batch input is limited to {HISTORY_BATCH_LIMIT} inputs with property history"
            raise CrmError(400, "VALIDATION_ERROR", msg)
        started, results, missing = iso_now(), [], []
        with self.lock:
            for item in inputs:
                contact = self.store.find(str(item["id"]), body.get("idProperty"))
                if contact is None:
                    missing.append(str(item["id"]))
                else:
                    results.append(contact.to_json(names))
        return batch_response(started, results, [not_found(missing)] if missing else [])

    async def batch_archive(self, request: Request) -> Response:
        with self.lock:
            for item in batch_inputs(await request.json()):
                contact = self.store.contacts.get(str(item["id"]))
                if contact is not None:
                    self.store.delete(contact)
        return Response(status_code=204)

    async def create_one(self, request: Request) -> Response:
        props = (await request.json()).get("properties") or {}
        with self.lock:
            self.store.check_known(props)
            existing = self.store.conflict(props, None)
            if existing is not None:
                msg = f"Contact already exists. Existing ID: {existing}"
                raise CrmError(409, "CONFLICT", msg)
            problem = self.store.invalid_values(props)
            if problem:
                raise CrmError(400, "VALIDATION_ERROR", problem[0]["message"])
            contact = self.store.create(props)
            return JSONResponse(contact.to_json(echoed(props)), 201)

    async def one(self, request: Request) -> Response:
        q = request.query_params
        with self.lock:
            contact = self.store.find(request.path_params["contact_id"], q.get("idProperty"))
            if contact is None:
                raise CrmError(
                    404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric."
                )
            if request.method == "DELETE":
                self.store.delete(contact)
                return Response(status_code=204)
            if request.method == "PATCH":
                props = (await request.json()).get("properties") or {}
                self.store.check_known(props)
                problem = self._problems(props, contact.id)
                if problem:
                    raise CrmError(problem["_status"], problem["category"], problem["message"])
                self.store.write(contact, props)
                return JSONResponse(contact.to_json(echoed(props)))
            names = [n for n in q.get("properties", "").split(",") if n] or None
            return JSONResponse(contact.to_json(names))

    async def search(self, request: Request) -> Response:
        body = await request.json()
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
        if limit > SEARCH_PAGE_LIMIT:
            raise CrmError(400, "VALIDATION_ERROR", f"limit must be at most {SEARCH_PAGE_LIMIT}")
        if after >= SEARCH_RESULT_CAP:
            msg = f"Search results are capped at {SEARCH_RESULT_CAP}; narrow the query."
            raise CrmError(400, "VALIDATION_ERROR", msg)
        with self.lock:
            matches = self.store.search(body)
            page = matches[after : after + limit]
            names = body.get("properties") or None
            result: dict[str, Any] = {
                "total": len(matches),
                "results": [c.to_json(names) for c in page],
            }
        if after + limit < len(matches):
            result["paging"] = {"next": {"after": str(after + limit)}}
        return JSONResponse(result)

    async def gdpr_delete(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            contact = self.store.find(str(body["objectId"]), body.get("idProperty"))
            if contact is not None:
                self.store.delete(contact)
            elif body.get("idProperty") == "email":
                self.store.gdpr_blocklist.add(str(body["objectId"]).lower())
            else:
                raise CrmError(404, "OBJECT_NOT_FOUND", "Object not found.")
        return Response(status_code=204)

    # -- tasks ---------------------------------------------------------------------------

    async def create_task(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            task = self.task_store.create(body, lambda cid: cid in self.store.contacts)
            return JSONResponse(task.to_json(sorted(task.properties)), 201)

    async def read_task(self, request: Request) -> Response:
        names = [n for n in request.query_params.get("properties", "").split(",") if n] or None
        with self.lock:
            task = self.task_store.tasks.get(request.path_params["task_id"])
            if task is None:
                raise CrmError(404, "OBJECT_NOT_FOUND", "Object not found.")
            return JSONResponse(task.to_json(names))

    async def search_tasks(self, request: Request) -> Response:
        body = await request.json()
        limit, after = int(body.get("limit") or 10), int(body.get("after") or 0)
        if limit > SEARCH_PAGE_LIMIT:
            raise CrmError(400, "VALIDATION_ERROR", f"limit must be at most {SEARCH_PAGE_LIMIT}")
        with self.lock:
            matches = self.task_store.search(body)
            names = body.get("properties") or None
            result: dict[str, Any] = {
                "total": len(matches),
                "results": [t.to_json(names) for t in matches[after : after + limit]],
            }
        if after + limit < len(matches):
            result["paging"] = {"next": {"after": str(after + limit)}}
        return JSONResponse(result)

    def _problems(self, props: dict[str, Any], own_id: str | None) -> dict[str, Any] | None:
        """The 207 error entry for one input, or None when it is valid."""
        details = self.store.invalid_values(props)
        if details:
            msg = "Property values were not valid: " + json.dumps(details)
            return {**error_entry("VALIDATION_ERROR", msg, [], details), "_status": 400}
        existing = self.store.conflict(props, own_id)
        if existing is not None:
            msg = f"Contact already exists. Existing ID: {existing}"
            return {**error_entry("CONFLICT", msg, [existing], []), "_status": 409}
        return None

    # -- properties ----------------------------------------------------------------------

    async def groups(self, request: Request) -> Response:
        with self.lock:
            if request.method == "GET":
                return JSONResponse({"results": list(self.store.groups.values())})
            return JSONResponse(self.store.create_group(await request.json()), 201)

    async def properties(self, request: Request) -> Response:
        with self.lock:
            if request.method == "GET":
                return JSONResponse({"results": list(self.store.properties.values())})
            return JSONResponse(self.store.create_property(await request.json()), 201)

    async def property_one(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.json() if request.method == "PATCH" else {}
        with self.lock:
            if request.method == "PATCH":
                return JSONResponse(self.store.update_property(name, body))
            definition = self.store.properties.get(name)
            if definition is None:
                raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
            if request.method == "DELETE":
                del self.store.properties[name]
                return Response(status_code=204)
            return JSONResponse(definition)
