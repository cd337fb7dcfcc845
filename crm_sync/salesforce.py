"""Salesforce adapter (simple-salesforce): describe, Collections/Bulk 2.0 upsert, SOQL.

Custom fields cannot be created through the data API, so `check` lists what an admin
must create. Writes upsert by `Loyalty_Member_Id__c`: sObject Collections (200 a call)
for ordinary runs, one Bulk API 2.0 job when more members wait than the threshold. The
org's daily request allocation is read from `Sforce-Limit-Info` after every call, and a
run stops writing once its share is used.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from crm_sync import retries
from crm_sync.delta import Props, canonical
from crm_sync.errors import BudgetSpent, CrmNotConfigured, CrmRefused
from crm_sync.mapping import Crm, Mapping, ValueType
from crm_sync.port import ContactUpdate, Pulled, PushResult, RecordFailure
from loyalty.pacing import Pacer

__all__ = ["SalesforceAdapter", "connect", "judge"]

T = TypeVar("T")
log = logging.getLogger("crm_sync.salesforce")

COLLECTION_LIMIT = 200
#: Records per Bulk API 2.0 job (a job takes up to 150M; keep the upload modest).
BULK_JOB_RECORDS = 150_000
TIMEOUT = (5.0, 120.0)
MODIFIED = "SystemModstamp"
#: Per-record errors that may pass on their own.
RETRIABLE_CODES = frozenset(
    {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
)
#: describe() types and what to tell an admin, per mapping type.
_TYPES: dict[ValueType, tuple[set[str], str]] = {
    "string": ({"string", "textarea", "url", "email", "phone", "picklist"}, "Text(255)"),
    "number": ({"double", "int", "currency", "percent"}, "Number(18, 0)"),
    "datetime": ({"datetime", "date"}, "Date/Time"),
    "bool": ({"boolean"}, "Checkbox"),
}


def judge(exc: Exception) -> retries.Verdict:
    """5xx, transient 403s and network trouble retry; the daily limit stops the run."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return retries.Verdict(True, reason=type(exc).__name__)
    if not isinstance(exc, SalesforceError):
        return retries.Verdict(False)
    text = str(exc.content)
    if exc.status == 403 and "REQUEST_LIMIT_EXCEEDED" in text:
        if "TotalRequests" in text:
            raise BudgetSpent("salesforce: the daily API request limit is used", 3600) from exc
        return retries.Verdict(True, rate_limited=True, after_s=1.0, reason="403 concurrency")
    if exc.status >= 500:
        return retries.Verdict(True, reason=str(exc.status))
    if exc.status == 401:
        raise CrmRefused("salesforce", 401, "the session is invalid or expired") from exc
    if exc.status == 400 and "INVALID_FIELD" in text:
        # The org lacks a mapped field: every run would fail the same way until it is made.
        raise CrmRefused(
            "salesforce", 400, f"{_first_message(exc)} (see `loyalty crm check --crm salesforce`)"
        ) from exc
    return retries.Verdict(False)


def _first_message(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("message", "")).split(". ")[0]
    return str(content)[:200]


def connect(
    *,
    version: str,
    instance_url: str | None = None,
    access_token: str | None = None,
    username: str | None = None,
    consumer_key: str | None = None,
    private_key_file: str | None = None,
    domain: str = "login",
    ca_bundle: str | None = None,
) -> Salesforce:
    """A client from an access token, or by the OAuth JWT bearer flow (which also renews
    an expired session by itself)."""
    session = requests.Session()
    if ca_bundle:
        session.verify = ca_bundle
        # REQUESTS_CA_BUNDLE would otherwise override session.verify.
        session.trust_env = False
    if access_token and instance_url:
        return Salesforce(
            instance_url=instance_url.rstrip("/"),
            session_id=access_token,
            version=version,
            session=session,
        )
    if not (username and consumer_key and private_key_file):
        raise CrmNotConfigured(
            "salesforce",
            "SALESFORCE_INSTANCE_URL and SALESFORCE_ACCESS_TOKEN, or SALESFORCE_USERNAME, "
            "SALESFORCE_CONSUMER_KEY and SALESFORCE_PRIVATE_KEY_FILE",
        )
    return Salesforce(
        username=username,
        consumer_key=consumer_key,
        privatekey_file=private_key_file,
        domain=domain,
        version=version,
        session=session,
    )


class SalesforceAdapter:
    """The CRM port for Salesforce Contacts."""

    name: Crm = "salesforce"

    def __init__(
        self,
        mapping: Mapping,
        client: Salesforce,
        *,
        pacer: Pacer,
        bulk_threshold: int = 10_000,
        budget_share: float = 0.8,
        max_retries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.mapping = mapping
        self.sf = client
        self.pacer = pacer
        self.bulk_threshold = bulk_threshold
        self.budget_share = budget_share
        self.max_retries = max_retries
        self.sleep = sleep
        key = mapping.key.salesforce
        assert key is not None
        self.key = key
        self.types = {f.salesforce: f.type for f in mapping.pushed("salesforce") if f.salesforce}
        for extra in mapping.journey_properties:
            if extra.salesforce:
                self.types[extra.salesforce] = extra.type

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return retries.call(
            "salesforce",
            what,
            fn,
            judge=judge,
            pacer=self.pacer,
            max_retries=self.max_retries,
            sleep=self.sleep,
        )

    def budget_note(self) -> str | None:
        """Why writing must stop now, when the org's allocation share is used."""
        usage = self.sf.api_usage.get("api-usage")
        if usage is None or not usage.total:
            return None
        if usage.used >= usage.total * self.budget_share:
            return (
                f"Salesforce API budget: {usage.used} of {usage.total} daily requests used, "
                f"the sync stops at {self.budget_share:.0%}"
            )
        return None

    def batch_size(self, total: int) -> int:
        return BULK_JOB_RECORDS if total > self.bulk_threshold else COLLECTION_LIMIT

    # -- schema ----------------------------------------------------------------------

    def ensure_schema(self) -> list[str]:
        """Nothing can be created through the data API; see `check`."""
        return []

    def check(self) -> list[str]:
        contact: Any = self.sf.Contact
        described = self._call("describe", lambda: contact.describe())
        fields = {f["name"]: f for f in described["fields"]}
        problems = []
        for name, kind in self.types.items():
            found = fields.get(name)
            allowed, admin_type = _TYPES[kind]
            external = " External ID, Unique" if name == self.key else ""
            if found is None:
                problems.append(f"create Contact field {name} ({admin_type}{external})")
            elif found["type"] not in allowed:
                problems.append(f"Contact field {name} is {found['type']}; expected {admin_type}")
            elif name == self.key and not found.get("externalId"):
                problems.append(f"mark Contact field {name} as External ID (upsert key)")
        return problems

    # -- push ------------------------------------------------------------------------

    def _wire(self, name: str, value: str | None) -> Any:
        kind = self.types.get(name, "string")
        if value is None:
            return None
        if kind == "bool":
            return value == "true"
        if kind == "number":
            return int(value) if value.lstrip("-").isdigit() else float(value)
        return value

    def push(self, updates: Sequence[ContactUpdate]) -> PushResult:
        note = self.budget_note()
        if note:  # another batch already used the share
            return PushResult(skipped={u.key for u in updates}, stop=note)
        if len(updates) > COLLECTION_LIMIT:
            return self._push_bulk(updates)
        records = [
            {
                "attributes": {"type": "Contact"},
                **{n: self._wire(n, v) for n, v in u.props.items()},
                self.key: u.key,
            }
            for u in updates
        ]
        answer = self._call(
            "composite/sobjects upsert",
            lambda: self.sf.restful(
                f"composite/sobjects/Contact/{self.key}",
                method="PATCH",
                json={"allOrNone": False, "records": records},
                timeout=TIMEOUT,
            ),
        )
        result = PushResult(calls=1, stop=self.budget_note())
        for update, item in zip(updates, answer or [], strict=False):
            if item.get("success"):
                result.landed[update.key] = item.get("id")
            else:
                errors = item.get("errors") or []
                codes = {e.get("statusCode") for e in errors}
                result.failed[update.key] = RecordFailure(
                    "; ".join(_describe(e) for e in errors) or "rejected",
                    retriable=bool(codes) and codes <= RETRIABLE_CODES,
                )
        return result

    def _push_bulk(self, updates: Sequence[ContactUpdate]) -> PushResult:
        """One Bulk API 2.0 upsert job; failed rows come back from `failedResults`."""
        names = sorted({n for u in updates for n in u.props} - {self.key})
        rows = [
            {self.key: u.key, **{n: _bulk_cell(self._wire(n, u.props.get(n))) for n in names}}
            for u in updates
        ]
        bulk2: Any = self.sf.bulk2
        bulk = bulk2.Contact
        jobs = self._call(
            "bulk2 upsert",
            lambda: bulk.upsert(records=rows, external_id_field=self.key, wait=1),
        )
        result = PushResult()
        for job in jobs:
            job_id = job["job_id"]
            # create, upload, close, poll, job info: five calls before the results.
            result.calls += 5
            good = self._call(
                "bulk2 results", functools.partial(bulk.get_successful_records, job_id)
            )
            bad = self._call("bulk2 failures", functools.partial(bulk.get_failed_records, job_id))
            result.calls += 2
            for row in csv.DictReader(io.StringIO(good)):
                result.landed[row[self.key]] = row.get("sf__Id") or None
            for row in csv.DictReader(io.StringIO(bad)):
                code = (row.get("sf__Error") or "rejected").split(":", 1)[0]
                fields = (row.get("sf__Error") or "").rsplit(":", 1)[-1].replace("--", "").strip()
                result.failed[row[self.key]] = RecordFailure(
                    f"{code} on {fields}" if fields else code, retriable=code in RETRIABLE_CODES
                )
        for update in updates:  # rows in neither file were not processed
            if update.key not in result.landed and update.key not in result.failed:
                result.failed[update.key] = RecordFailure("not processed", retriable=True)
        result.stop = self.budget_note()
        return result

    # -- pull ------------------------------------------------------------------------

    def pull(self, since: datetime | None, until: datetime) -> Iterator[Pulled]:
        pulled = [f for f in self.mapping.pulled("salesforce") if f.salesforce]
        names = ["Id", self.key, MODIFIED, *(f.salesforce for f in pulled if f.salesforce)]
        where = [f"{MODIFIED} < {_soql_instant(until)}"]
        if since is not None:
            where.insert(0, f"{MODIFIED} >= {_soql_instant(since)}")
        soql = (
            f"SELECT {', '.join(dict.fromkeys(names))} FROM Contact "
            f"WHERE {' AND '.join(where)} ORDER BY {MODIFIED} ASC"
        )
        page = self._call("query", lambda: self.sf.query(soql))
        while True:
            for record in page.get("records", []):
                props: Props = {}
                for mapped in pulled:
                    assert mapped.salesforce is not None
                    props[mapped.salesforce] = canonical(mapped.type, record.get(mapped.salesforce))
                modified = canonical("datetime", record.get(MODIFIED))
                assert modified is not None
                yield Pulled(
                    record.get(self.key),
                    str(record["Id"]),
                    props,
                    datetime.fromisoformat(modified.replace("Z", "+00:00")),
                )
            following = page.get("nextRecordsUrl")
            if page.get("done", True) or not following:
                return
            page = self._call("queryMore", functools.partial(self.sf.query_more, following, True))

    # -- erase -----------------------------------------------------------------------

    def erase(self, key: str, crm_id: str | None) -> bool:
        """Blank every mapped personal and loyalty field on the member's contact."""
        if crm_id is None:
            try:
                found = self._call(
                    "find",
                    lambda: self.sf.restful(f"sobjects/Contact/{self.key}/{key}", timeout=TIMEOUT),
                )
            except SalesforceError as exc:
                if exc.status == 404:
                    return False
                raise
            crm_id = str((found or {})["Id"])
        blank: dict[str, Any] = {name: None for name in self.types if name != self.key}
        blank["LastName"] = "[erased]"
        try:
            self._call(
                "erase",
                lambda: self.sf.restful(
                    f"sobjects/Contact/Id/{crm_id}", method="PATCH", json=blank, timeout=TIMEOUT
                ),
            )
        except SalesforceError as exc:
            if exc.status in (400, 404):
                return False
            raise
        return True


def _describe(error: dict[str, Any]) -> str:
    """Code and fields of a record error; never the rejected value."""
    fields = ",".join(error.get("fields") or [])
    code = str(error.get("statusCode") or error.get("errorCode") or "ERROR")
    return f"{code} on {fields}" if fields else code


def _bulk_cell(value: Any) -> str:
    # Bulk API 2.0: an empty cell leaves the field alone, #N/A clears it.
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _soql_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )
