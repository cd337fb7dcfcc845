"""Bulk API 2.0 ingest jobs over the Contact store."""

from __future__ import annotations

import csv
import io
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.salesforce_store import SalesforceStore, SfError, record_id, sf_datetime

__all__ = ["BulkIngest", "IngestJob"]

OPERATIONS = {"insert", "update", "upsert"}
DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "SEMICOLON": ";",
    "PIPE": "|",
    "CARET": "^",
    "BACKQUOTE": "`",
}


@dataclass
class IngestJob:
    id: str
    operation: str
    object: str
    external_id: str | None
    line_ending: str
    delimiter: str
    created: str
    state: str = "Open"
    chunks: list[bytes] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    error_message: str | None = None
    ready_at: float = 0.0

    def info(self, version: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "005000000000001AAA",
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version),
            "jobType": "V2Ingest",
            "lineEnding": self.line_ending,
            "columnDelimiter": next(k for k, v in DELIMITERS.items() if v == self.delimiter),
            "numberRecordsProcessed": len(self.successful) + len(self.failed),
            "numberRecordsFailed": len(self.failed),
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }
        if self.external_id:
            data["externalIdFieldName"] = self.external_id
        if self.error_message:
            data["errorMessage"] = self.error_message
        return data


class BulkIngest:
    """Ingest jobs: Open → UploadComplete → (InProgress) → JobComplete / Failed / Aborted."""

    def __init__(self, store: SalesforceStore, processing_delay_s: float = 0.0) -> None:
        self.store = store
        self.processing_delay_s = processing_delay_s
        self.jobs: dict[str, IngestJob] = {}
        self._ids = itertools.count(1)

    def create(self, body: dict[str, Any]) -> IngestJob:
        operation = body.get("operation")
        if body.get("object") != "Contact":
            raise SfError(400, "INVALIDJOB", f"Unsupported object: {body.get('object')}")
        if operation not in OPERATIONS:
            raise SfError(400, "INVALIDJOB", f"Unsupported operation: {operation}")
        if operation == "upsert" and not body.get("externalIdFieldName"):
            raise SfError(400, "INVALIDJOB", "externalIdFieldName is required for upsert")
        delimiter = DELIMITERS.get(body.get("columnDelimiter") or "COMMA")
        if delimiter is None:
            raise SfError(400, "INVALIDJOB", "Invalid columnDelimiter")
        job = IngestJob(
            id=record_id("750", next(self._ids)),
            operation=str(operation),
            object="Contact",
            external_id=body.get("externalIdFieldName"),
            line_ending=body.get("lineEnding") or "LF",
            delimiter=delimiter,
            created=sf_datetime(datetime.now(UTC)),
        )
        self.jobs[job.id] = job
        return job

    def get(self, job_id: str) -> IngestJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        if job.state == "InProgress" and time.monotonic() >= job.ready_at:
            job.state = "JobComplete" if job.error_message is None else "Failed"
        return job

    def upload(self, job_id: str, data: bytes) -> None:
        job = self.get(job_id)
        if job.state != "Open":
            raise SfError(409, "INVALIDJOBSTATE", f"Job is in state {job.state}; data not accepted")
        job.chunks.append(data)

    def set_state(self, job_id: str, state: str) -> IngestJob:
        job = self.get(job_id)
        if state == "Aborted":
            if job.state in ("JobComplete", "Failed"):
                raise SfError(400, "INVALIDJOBSTATE", "Job is already finished")
            job.state = "Aborted"
        elif state == "UploadComplete":
            if job.state != "Open":
                raise SfError(409, "INVALIDJOBSTATE", f"Job is in state {job.state}")
            self._process(job)
            job.ready_at = time.monotonic() + self.processing_delay_s
            job.state = (
                "InProgress"
                if self.processing_delay_s
                else ("JobComplete" if job.error_message is None else "Failed")
            )
        else:
            raise SfError(400, "INVALIDJOBSTATE", f"Unsupported state change to {state}")
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.state in ("Open", "UploadComplete", "InProgress"):
            raise SfError(400, "INVALIDJOBSTATE", "Only finished jobs can be deleted")
        del self.jobs[job_id]

    def results(self, job_id: str, kind: str) -> str:
        job = self.get(job_id)
        if kind == "successfulResults":
            return _csv(["sf__Id", "sf__Created", *job.header], job.successful)
        if kind == "failedResults":
            return _csv(["sf__Id", "sf__Error", *job.header], job.failed)
        return _csv(job.header, [])

    def _process(self, job: IngestJob) -> None:
        text = b"".join(job.chunks).decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text), delimiter=job.delimiter))
        if not rows:
            job.error_message = "InvalidBatch : No data uploaded"
            return
        job.header, data = rows[0], [r for r in rows[1:] if r]
        unknown = [h for h in job.header if h not in self.store.fields]
        if unknown:
            job.error_message = f"InvalidBatch : Field name not found : {unknown[0]}"
            return
        key = job.external_id or "Id"
        if job.operation == "upsert":
            try:
                self.store.external_field(key)
            except SfError as exc:
                job.error_message = f"InvalidBatch : {exc.message}"
                return
        for row in data:
            values = {
                name: (None if cell == "#N/A" else cell)
                for name, cell in zip(job.header, row, strict=False)
                if cell != ""
            }
            self._apply(job, key, values, row)

    def _apply(self, job: IngestJob, key: str, values: dict[str, Any], row: list[str]) -> None:
        existing: str | None = None
        if job.operation == "insert":
            errors = self.store.record_errors(values, creating=True)
        elif job.operation == "update":
            existing = values.get("Id") if values.get("Id") in self.store.records else None
            errors = self.store.record_errors(values, creating=False)
            if existing is None:
                errors = [
                    {
                        "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                        "message": "invalid cross reference id",
                        "fields": [],
                    }
                ]
        else:
            existing, errors = self.store.plan_upsert(key, values.get(key), values)
        if errors:
            first = errors[0]
            fields = ",".join(first["fields"])
            job.failed.append(["", f"{first['statusCode']}:{first['message']}:{fields} --", *row])
            return
        rid, created = self.store.write(existing, values)
        job.successful.append([rid, "true" if created else "false", *row])


def _csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
