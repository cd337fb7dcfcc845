"""Salesforce REST emulator over TLS: Contact upserts, Tasks, describe, SOQL, Bulk 2.0, limits."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig
from sandbox.salesforce_bulk import BulkIngest
from sandbox.salesforce_store import FieldSpec, SalesforceStore, SfError, default_custom_fields
from sandbox.salesforce_tasks import TaskStore
from sandbox.soql import parse_soql, run_query
from sandbox.tls import LoopbackTLS

__all__ = ["FieldSpec", "SalesforceSandbox"]

DEFAULT_TOKEN = "00Dsandbox!sandbox-session"
DATA = "/services/data/v{version}"
COLLECTION_LIMIT = 200
QUERY_PAGE = 2000

Handler = Callable[[Request], Awaitable[Response]]


class SalesforceSandbox(Emulator):
    """A Salesforce org with one sObject (Contact), served over HTTPS with a throwaway CA."""

    name = "salesforce"
    settings = ("custom_fields", "daily_api_limit", "query_page_size", "bulk_processing_delay_s")
    scheme = "https"

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
        custom_fields: tuple[FieldSpec, ...] | None = None,
        daily_api_limit: int = 100_000,
        query_page_size: int = QUERY_PAGE,
        bulk_processing_delay_s: float = 0.0,
        tls: LoopbackTLS | None = None,
        faults: FaultConfig | None = None,
        port: int = 0,
    ) -> None:
        self.tokens = set(tokens)
        self._initial_tokens = set(tokens)
        self.custom_fields = default_custom_fields() if custom_fields is None else custom_fields
        self.daily_api_limit = daily_api_limit
        self.query_page_size = query_page_size
        self.bulk_processing_delay_s = bulk_processing_delay_s
        self.tls = tls or LoopbackTLS()
        super().__init__(faults=faults, port=port)

    @property
    def access_token(self) -> str:
        return next(iter(sorted(self._initial_tokens)))

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the server certificate (pass as `verify=`)."""
        return self.tls.ca_file

    def tls_files(self) -> tuple[Path, Path]:
        if not self.tls.cert_file.exists():  # cleaned up by an earlier stop()
            self.tls = LoopbackTLS()
        return self.tls.cert_file, self.tls.key_file

    def close(self) -> None:
        self.tls.cleanup()

    def reset_state(self) -> None:
        self.tokens = set(self._initial_tokens)
        self.store = SalesforceStore(self.custom_fields)
        self.task_store = TaskStore()
        self.bulk = BulkIngest(self.store, self.bulk_processing_delay_s)
        self.api_used = 0
        self._cursors: dict[str, list[dict[str, Any]]] = {}

    # -- Python accessors ------------------------------------------------------------------

    def set_custom_fields(self, fields: tuple[FieldSpec, ...]) -> None:
        """Replace which custom fields exist (and forget the data), e.g. to test a missing one."""
        self.custom_fields = fields
        with self.lock:
            self.reset_state()

    def expire_sessions(self) -> None:
        """Every current token now gets 401 INVALID_SESSION_ID."""
        with self.lock:
            self.tokens.clear()

    def contacts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.store.records.values()]

    def tasks(self) -> list[dict[str, Any]]:
        """Every Task record as stored."""
        with self.lock:
            return [dict(r) for r in self.task_store.records.values()]

    def add_contact(self, **values: Any) -> str:
        with self.lock:
            return self.store.write(None, values)[0]

    # -- provider shapes ---------------------------------------------------------------------

    def error_response(self, status: int) -> Response:
        if status == 503:
            body = [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
        else:
            message = (
                "An unexpected error occurred. Please include this ErrorId if you contact "
                "support: 0000-0000 (0)"
            )
            body = [{"message": message, "errorCode": "UNKNOWN_EXCEPTION"}]
        return JSONResponse(body, status_code=status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        body = [
            {
                "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ]
        return JSONResponse(body, status_code=403)

    def provider_routes(self) -> list[BaseRoute]:
        e, d = self._endpoint, DATA
        jobs = f"{d}/jobs/ingest"
        return [
            Route(
                f"{d}/composite/sobjects/{{sobject}}/{{field}}",
                e(self.collection_upsert),
                methods=["PATCH"],
            ),
            Route(f"{d}/sobjects/Task", e(self.create_task), methods=["POST"]),
            Route(f"{d}/sobjects/Task/", e(self.create_task), methods=["POST"]),
            Route(f"{d}/sobjects/{{sobject}}/describe", e(self.describe), methods=["GET"]),
            Route(f"{d}/sobjects/{{sobject}}/describe/", e(self.describe), methods=["GET"]),
            Route(
                f"{d}/sobjects/{{sobject}}/{{field}}/{{value}}",
                e(self.single_upsert),
                methods=["PATCH", "GET"],
            ),
            Route(f"{d}/sobjects/{{sobject}}/{{record_id}}", e(self.get_record), methods=["GET"]),
            Route(f"{d}/query", e(self.query), methods=["GET"]),
            Route(f"{d}/query/", e(self.query), methods=["GET"]),
            Route(f"{d}/query/{{locator}}", e(self.query_more), methods=["GET"]),
            Route(f"{d}/limits", e(self.limits), methods=["GET"]),
            Route(f"{d}/limits/", e(self.limits), methods=["GET"]),
            Route(jobs, e(self.create_job), methods=["POST"]),
            Route(f"{jobs}/{{job_id}}", e(self.job), methods=["GET", "PATCH", "DELETE"]),
            Route(f"{jobs}/{{job_id}}/batches", e(self.upload), methods=["PUT"]),
            Route(f"{jobs}/{{job_id}}/{{kind}}", e(self.job_results), methods=["GET"]),
            Route(f"{jobs}/{{job_id}}/{{kind}}/", e(self.job_results), methods=["GET"]),
        ]

    def _endpoint(self, handler: Handler) -> Handler:
        """Session check, the daily allocation with its header, and SfError rendering."""

        async def endpoint(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else ""
            if token not in self.tokens:
                body = [
                    {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
                ]
                return JSONResponse(body, status_code=401)
            with self.lock:
                self.api_used += 1
                used = self.api_used
            if used > self.daily_api_limit:
                response: Response = JSONResponse(
                    SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.").body(),
                    403,
                )
            else:
                sobject = request.path_params.get("sobject")
                try:
                    if sobject is not None and sobject != "Contact":
                        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
                    response = await handler(request)
                except SfError as exc:
                    response = JSONResponse(exc.body(), status_code=exc.status)
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    body = SfError(400, "JSON_PARSER_ERROR", f"Unexpected input: {exc}").body()
                    response = JSONResponse(body, status_code=400)
            response.headers["Sforce-Limit-Info"] = (
                f"api-usage={min(used, self.daily_api_limit)}/{self.daily_api_limit}"
            )
            return response

        return endpoint

    # -- sObjects ------------------------------------------------------------------------------

    async def collection_upsert(self, request: Request) -> Response:
        body = await request.json()
        field, records = request.path_params["field"], body.get("records")
        if not isinstance(records, list):
            raise SfError(400, "JSON_PARSER_ERROR", "records must be an array")
        if len(records) > COLLECTION_LIMIT:
            msg = (
                "EXCEEDED_ID_LIMIT: record limit reached. cannot submit more than "
                f"{COLLECTION_LIMIT} records into this call"
            )
            raise SfError(400, "EXCEEDED_ID_LIMIT", msg)
        all_or_none = bool(body.get("allOrNone"))
        with self.lock:
            self.store.external_field(field)
            for record in records:
                if (record.get("attributes") or {}).get("type") != request.path_params["sobject"]:
                    raise SfError(
                        400, "INVALID_TYPE", "Each record needs attributes.type = Contact"
                    )
                self.store.check_columns(list(record))
            plans = [self._plan(field, record) for record in records]
            if all_or_none and any(errors for _, errors in plans):
                return JSONResponse([_rolled_back(errors) for _, errors in plans])
            results = []
            for record, (existing, errors) in zip(records, plans, strict=True):
                if not errors:
                    existing, errors = self.store.plan_upsert(
                        field, record.get(field), _values(record)
                    )
                if errors:
                    results.append({"success": False, "errors": errors})
                    continue
                rid, created = self.store.write(existing, _values(record))
                results.append({"id": rid, "success": True, "errors": [], "created": created})
        return JSONResponse(results)

    def _plan(self, field: str, record: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        if "Id" in record and field != "Id":
            error = {
                "statusCode": "INVALID_FIELD",
                "message": "Id is not allowed in an upsert by external id",
                "fields": ["Id"],
            }
            return None, [error]
        return self.store.plan_upsert(field, record.get(field), _values(record))

    async def single_upsert(self, request: Request) -> Response:
        field, value = request.path_params["field"], request.path_params["value"]
        with self.lock:
            self.store.external_field(field)
            found = self.store.matches(field, value)
            if request.method == "GET":
                if not found:
                    raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
                return JSONResponse(self._record_json(self.store.records[found[0]], request))
            if len(found) > 1:
                urls = [
                    f"/services/data/v{request.path_params['version']}/sobjects/Contact/{rid}"
                    for rid in found
                ]
                return JSONResponse(urls, status_code=300)
            values = await request.json()
            self.store.check_columns(list(values))
            existing, errors = self.store.plan_upsert(field, value, values)
            if errors:
                raise SfError(
                    400, errors[0]["statusCode"], errors[0]["message"], errors[0]["fields"]
                )
            rid, created = self.store.write(existing, {**values, field: value})
        body = {"id": rid, "success": True, "errors": [], "created": created}
        return JSONResponse(body, status_code=201 if created else 200)

    async def get_record(self, request: Request) -> Response:
        with self.lock:
            record = self.store.records.get(request.path_params["record_id"])
            if record is None:
                raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
            return JSONResponse(self._record_json(record, request))

    def _record_json(self, record: dict[str, Any], request: Request) -> dict[str, Any]:
        url = f"/services/data/v{request.path_params['version']}/sobjects/Contact/{record['Id']}"
        return {"attributes": {"type": "Contact", "url": url}, **record}

    async def describe(self, request: Request) -> Response:
        with self.lock:
            fields = [spec.describe() for spec in self.store.fields.values()]
        return JSONResponse(
            {
                "name": "Contact",
                "label": "Contact",
                "keyPrefix": "003",
                "custom": False,
                "createable": True,
                "updateable": True,
                "queryable": True,
                "fields": fields,
                "urls": {
                    "sobject": f"/services/data/v{request.path_params['version']}/sobjects/Contact"
                },
            }
        )

    # -- SOQL ------------------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        soql = request.query_params.get("q", "")
        parsed = parse_soql(soql)
        if parsed.sobject == "Task":
            with self.lock:
                rows = self.task_store.query(parsed)
            return self._records_page(rows, parsed.fields, "Task", request)
        if parsed.sobject != "Contact":
            raise SfError(400, "INVALID_TYPE", f"sObject type '{parsed.sobject}' is not supported.")
        with self.lock:
            rows = run_query(parsed, list(self.store.records.values()), set(self.store.fields))
        page = _batch_size(request.headers.get("sforce-query-options"), self.query_page_size)
        version = request.path_params["version"]
        selected = set(parsed.fields)
        records = []
        for row in rows:
            url = f"/services/data/v{version}/sobjects/Contact/{row['Id']}"
            fields = {k: v for k, v in row.items() if k in selected}
            records.append({"attributes": {"type": "Contact", "url": url}, **fields})
        return self._page(records, 0, page, version)

    def _records_page(
        self, rows: list[dict[str, Any]], fields: tuple[str, ...], sobject: str, request: Request
    ) -> Response:
        version = request.path_params["version"]
        records = [
            {
                "attributes": {
                    "type": sobject,
                    "url": f"/services/data/v{version}/sobjects/{sobject}/{row['Id']}",
                },
                **{k: v for k, v in row.items() if k in fields},
            }
            for row in rows
        ]
        page = _batch_size(request.headers.get("sforce-query-options"), self.query_page_size)
        return self._page(records, 0, page, version)

    async def create_task(self, request: Request) -> Response:
        values = await request.json()
        if not isinstance(values, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        with self.lock:
            task_id = self.task_store.create(values, set(self.store.records))
        return JSONResponse({"id": task_id, "success": True, "errors": []}, status_code=201)

    async def query_more(self, request: Request) -> Response:
        locator = request.path_params["locator"]
        cursor, _, offset = locator.rpartition("-")
        with self.lock:
            records = self._cursors.get(cursor)
        if records is None or not offset.isdigit():
            raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        page = _batch_size(request.headers.get("sforce-query-options"), self.query_page_size)
        return self._page(records, int(offset), page, request.path_params["version"], cursor)

    def _page(
        self,
        records: list[dict[str, Any]],
        offset: int,
        size: int,
        version: str,
        cursor: str | None = None,
    ) -> Response:
        chunk = records[offset : offset + size]
        body: dict[str, Any] = {
            "totalSize": len(records),
            "done": offset + size >= len(records),
            "records": chunk,
        }
        if not body["done"]:
            cursor = cursor or "01g" + secrets.token_hex(6).upper()
            with self.lock:
                self._cursors[cursor] = records
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{offset + size}"
        return JSONResponse(body)

    async def limits(self, request: Request) -> Response:
        remaining = max(self.daily_api_limit - self.api_used, 0)
        return JSONResponse(
            {"DailyApiRequests": {"Max": self.daily_api_limit, "Remaining": remaining}}
        )

    # -- Bulk API 2.0 ------------------------------------------------------------------------------

    async def create_job(self, request: Request) -> Response:
        version = request.path_params["version"]
        with self.lock:
            job = self.bulk.create(await request.json())
            info = job.info(version)
        info["contentUrl"] = f"services/data/v{version}/jobs/ingest/{job.id}/batches"
        return JSONResponse(info)

    async def job(self, request: Request) -> Response:
        job_id, version = request.path_params["job_id"], request.path_params["version"]
        body = await request.json() if request.method == "PATCH" else {}
        with self.lock:
            if request.method == "DELETE":
                self.bulk.delete(job_id)
                return Response(status_code=204)
            if request.method == "PATCH":
                return JSONResponse(
                    self.bulk.set_state(job_id, body.get("state", "")).info(version)
                )
            return JSONResponse(self.bulk.get(job_id).info(version))

    async def upload(self, request: Request) -> Response:
        data = await request.body()
        with self.lock:
            self.bulk.upload(request.path_params["job_id"], data)
        return Response(status_code=201)

    async def job_results(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in (
            "successfulResults",
            "failedResults",
            "unprocessedrecords",
            "unprocessedRecords",
        ):
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        with self.lock:
            text = self.bulk.results(request.path_params["job_id"], kind)
        return PlainTextResponse(text, media_type="text/csv")


def _values(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}


def _rolled_back(errors: list[dict[str, Any]]) -> dict[str, Any]:
    if errors:
        return {"success": False, "errors": errors}
    message = (
        "Record rolled back because not all records were valid and the request was using "
        "AllOrNone header"
    )
    return {
        "success": False,
        "errors": [
            {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": message, "fields": []}
        ],
    }


def _batch_size(header: str | None, default: int) -> int:
    if header and "batchSize=" in header:
        try:
            return max(200, min(2000, int(header.split("batchSize=", 1)[1].split(";")[0])))
        except ValueError:
            return default
    return default
