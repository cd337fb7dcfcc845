"""HubSpot adapter (hubspot-api-client): properties, batch upsert, search, gdpr-delete.

Writes go to `batch/upsert` with `idProperty=loyalty_member_id`, 100 inputs a call; a
207 answer is sorted per member. Reads use search on `lastmodifieddate`, which never
returns more than 10,000 results per query: the pull restarts from the last value seen.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from hubspot import HubSpot
from hubspot.crm.contacts import (
    Filter,
    FilterGroup,
    PublicGdprDeleteInput,
    PublicObjectSearchRequest,
)
from hubspot.crm.properties import Option, PropertyCreate, PropertyGroupCreate

from crm_sync import retries
from crm_sync.delta import Props, canonical
from crm_sync.errors import BudgetSpent, CrmRefused
from crm_sync.mapping import Crm, Mapping, ValueType
from crm_sync.port import ContactUpdate, Pulled, PushResult, RecordFailure
from loyalty.pacing import Pacer, RollingWindow

__all__ = ["HubSpotAdapter"]

T = TypeVar("T")
log = logging.getLogger("crm_sync.hubspot")

BATCH_LIMIT = 100
SEARCH_PAGE = 200
#: Search never pages past this many results; the pull restarts its query before it.
SEARCH_CAP = 10_000
GROUP = "loyalty"
GROUP_LABEL = "Loyalty"
#: When several members of one 207 fail without ids in the errors, this many are retried
#: one by one to learn which error is whose; the rest share a combined message.
MAX_SINGLE_RETRIES = 10
TIMEOUT = (5.0, 60.0)
MODIFIED = "lastmodifieddate"

_TYPES: dict[ValueType, tuple[str, str]] = {
    "string": ("string", "text"),
    "number": ("number", "number"),
    "datetime": ("datetime", "date"),
    "bool": ("bool", "booleancheckbox"),
}


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and hasattr(exc, "body") else None


def _body(exc: Exception) -> dict[str, Any]:
    try:
        data = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def judge(exc: Exception) -> retries.Verdict:
    """Sort a failed call: 429 and 5xx and network trouble retry, the rest is fatal."""
    status = _status(exc)
    if status is None:
        if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
            return retries.Verdict(True, reason=type(exc).__name__)
        return retries.Verdict(False)
    headers = getattr(exc, "headers", None) or {}
    if status == 429:
        body = _body(exc)
        if body.get("policyName") == "DAILY":
            raise BudgetSpent("hubspot: the daily API limit is used up", retry_after=3600)
        after = headers.get("Retry-After")
        interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        wait = float(after) if after else (float(interval) / 1000 / 10 if interval else None)
        return retries.Verdict(True, wait or 1.0, rate_limited=True, reason="429")
    if status >= 500:
        after = headers.get("Retry-After")
        return retries.Verdict(True, float(after) if after else None, reason=str(status))
    if status in (401, 403):
        raise CrmRefused("hubspot", status, "check HUBSPOT_ACCESS_TOKEN and its scopes") from exc
    return retries.Verdict(False)


class HubSpotAdapter:
    """The CRM port for HubSpot contacts."""

    name: Crm = "hubspot"

    def __init__(
        self,
        mapping: Mapping,
        *,
        access_token: str,
        base_url: str,
        pacer: Pacer,
        max_retries: int = 8,
        search_pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.mapping = mapping
        self.client = HubSpot(access_token=access_token, host=base_url.rstrip("/"))
        # Each `client.crm.contacts.batch_api` is a new API client with its own connection
        # pool (and a package metadata scan): pushes share one, and its open connections.
        self.batch_api = self.client.crm.contacts.batch_api
        self.pacer = pacer
        # Search has its own, lower limit (about 5 requests/s per account).
        self.search_pacer = search_pacer or RollingWindow(4, 1.0)
        self.max_retries = max_retries
        self.sleep = sleep
        key = mapping.key.hubspot
        assert key is not None
        self.key = key

    def _call(self, what: str, fn: Callable[[], T], pacer: Pacer | None = None) -> T:
        return retries.call(
            "hubspot",
            what,
            fn,
            judge=judge,
            pacer=pacer or self.pacer,
            max_retries=self.max_retries,
            sleep=self.sleep,
        )

    def batch_size(self, total: int) -> int:
        return BATCH_LIMIT

    # -- schema ----------------------------------------------------------------------

    def _wanted(self) -> list[tuple[str, str, ValueType, bool]]:
        """(name, label, type, unique) of every custom property the mapping needs."""
        wanted = [
            (f.hubspot, f.label, f.type, f.key)
            for f in self.mapping.fields
            if f.hubspot and f.hubspot.startswith("loyalty_")
        ]
        wanted += [
            (p.hubspot, p.label, p.type, False)
            for p in self.mapping.journey_properties
            if p.hubspot and p.hubspot.startswith("loyalty_")
        ]
        return [(n, label, t, u) for n, label, t, u in wanted if n]

    def _existing(self) -> dict[str, Any]:
        page = self._call(
            "properties", lambda: self.client.crm.properties.core_api.get_all("contacts")
        )
        return {p.name: p for p in page.results}

    def ensure_schema(self) -> list[str]:
        created: list[str] = []
        groups = self._call(
            "groups", lambda: self.client.crm.properties.groups_api.get_all("contacts")
        )
        if GROUP not in {g.name for g in groups.results}:
            self._create(
                lambda: self.client.crm.properties.groups_api.create(
                    "contacts", PropertyGroupCreate(name=GROUP, label=GROUP_LABEL)
                )
            )
            created.append(f"group {GROUP}")
        existing = self._existing()
        for name, label, kind, unique in self._wanted():
            if name in existing:
                continue
            hs_type, field_type = _TYPES[kind]
            options = (
                [
                    Option(label="Yes", value="true", display_order=0, hidden=False),
                    Option(label="No", value="false", display_order=1, hidden=False),
                ]
                if kind == "bool"
                else None
            )
            body = PropertyCreate(
                name=name,
                label=label,
                type=hs_type,
                field_type=field_type,
                group_name=GROUP,
                has_unique_value=unique,
                options=options,
            )
            self._create(
                functools.partial(self.client.crm.properties.core_api.create, "contacts", body)
            )
            created.append(f"property {name}")
        problems = self.check()
        if problems:
            raise CrmRefused("hubspot", 409, "; ".join(problems))
        return created

    def _create(self, fn: Callable[[], Any]) -> None:
        try:
            self._call("create", fn)
        except Exception as exc:
            if _status(exc) != 409:  # another setup got there first
                raise

    def check(self) -> list[str]:
        existing = self._existing()
        problems = []
        for name, _label, kind, unique in self._wanted():
            found = existing.get(name)
            if found is None:
                problems.append(f"property {name} is missing (run `loyalty crm setup`)")
            elif found.type != _TYPES[kind][0]:
                problems.append(f"property {name} is {found.type}, expected {_TYPES[kind][0]}")
            elif unique and not found.has_unique_value:
                problems.append(f"property {name} must have unique values to be the upsert key")
        return problems

    # -- push ------------------------------------------------------------------------

    def _input(self, update: ContactUpdate) -> dict[str, Any]:
        # The key goes into the properties too, so that every result names its member.
        props = {name: "" if value is None else value for name, value in update.props.items()}
        props[self.key] = update.key
        return {"id": update.key, "idProperty": self.key, "properties": props}

    def _upsert(self, updates: Sequence[ContactUpdate]) -> dict[str, Any]:
        """One batch/upsert call; the answer (200 or 207) as plain JSON.

        The body goes as plain JSON and the answer is read raw: building and parsing a
        hundred generated models per call costs more CPU than the rest of the push.
        """
        body = {"inputs": [self._input(u) for u in updates]}
        response = self._call(
            "batch/upsert",
            lambda: self.batch_api.upsert(body, _request_timeout=TIMEOUT, _preload_content=False),
        )
        answer: dict[str, Any] = json.loads(response.data or b"{}")
        return answer

    def push(self, updates: Sequence[ContactUpdate]) -> PushResult:
        result = PushResult()
        try:
            answer = self._upsert(updates)
        except Exception as exc:
            if _status(exc) == 400:
                detail = str(_body(exc).get("message", "bad request"))[:300]
                raise CrmRefused("hubspot", 400, f"{detail} (run `loyalty crm setup`)") from exc
            raise
        result.calls += 1
        for record in answer.get("results") or []:
            key = (record.get("properties") or {}).get(self.key)
            if key is not None:
                result.landed[str(key)] = str(record["id"])
        missing = [u for u in updates if u.key not in result.landed]
        if missing:
            self._attribute(missing, list(answer.get("errors") or []), result)
        return result

    def _attribute(
        self, missing: list[ContactUpdate], errors: list[dict[str, Any]], out: PushResult
    ) -> None:
        """Pin each 207 error on its member: by ids in the context, else one by one."""
        keys = {u.key for u in missing}
        loose = []
        for error in errors:
            ids = [i for i in (error.get("context") or {}).get("ids", []) if i in keys]
            for key in ids:
                out.failed[key] = RecordFailure(_describe(error))
            if not ids:
                loose.append(error)
        left = [u for u in missing if u.key not in out.failed]
        if len(left) == 1 and len(loose) == 1:
            out.failed[left[0].key] = RecordFailure(_describe(loose[0]))
            return
        for update in left[:MAX_SINGLE_RETRIES]:
            answer = self._upsert([update])
            out.calls += 1
            if answer.get("results"):
                out.landed[update.key] = str(answer["results"][0]["id"])
            else:
                errs = answer.get("errors") or []
                out.failed[update.key] = RecordFailure(_describe(errs[0]) if errs else "rejected")
        combined = "; ".join(sorted({_describe(e) for e in loose})) or "rejected"
        for update in left[MAX_SINGLE_RETRIES:]:
            out.failed[update.key] = RecordFailure(f"one of: {combined}")

    # -- pull ------------------------------------------------------------------------

    def pull(self, since: datetime | None, until: datetime) -> Iterator[Pulled]:
        names = [
            self.key,
            MODIFIED,
            *(f.hubspot for f in self.mapping.pulled("hubspot") if f.hubspot),
        ]
        start_ms = _ms(since) if since else 0
        strict = False
        while True:
            last_ms: int | None = None
            after = 0
            while True:
                operator = "GT" if strict else "GTE"
                request = PublicObjectSearchRequest(
                    filter_groups=[
                        FilterGroup(
                            filters=[
                                Filter(
                                    property_name=MODIFIED, operator=operator, value=str(start_ms)
                                ),
                                Filter(
                                    property_name=MODIFIED, operator="LT", value=str(_ms(until))
                                ),
                            ]
                        )
                    ],
                    sorts=[MODIFIED],
                    properties=names,
                    limit=SEARCH_PAGE,
                    after=str(after) if after else None,
                )
                page = self._call(
                    "search",
                    functools.partial(
                        self.client.crm.contacts.search_api.do_search,
                        request,
                        _request_timeout=TIMEOUT,
                    ),
                    self.search_pacer,
                )
                for record in page.results or []:
                    yield self._pulled(record)
                    last_ms = _ms(self._modified(record))
                following = page.paging.next.after if page.paging and page.paging.next else None
                if following is None:
                    return
                after = int(following)
                if after + SEARCH_PAGE > SEARCH_CAP:
                    break  # the next page would pass the cap: restart from the last value
            if last_ms is None:
                return
            # Ten thousand contacts share one millisecond: skip past it rather than loop.
            strict = last_ms == start_ms
            if strict:
                log.warning("crm.pull_cap_same_instant", extra={"crm": "hubspot", "at_ms": last_ms})
            start_ms = last_ms

    def _modified(self, record: Any) -> datetime:
        raw = (record.properties or {}).get(MODIFIED)
        if raw:
            text = canonical("datetime", raw)
            assert text is not None
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        updated: datetime = record.updated_at
        return updated.astimezone(UTC)

    def _pulled(self, record: Any) -> Pulled:
        properties = record.properties or {}
        props: Props = {}
        for mapped in self.mapping.pulled("hubspot"):
            assert mapped.hubspot is not None
            props[mapped.hubspot] = canonical(mapped.type, properties.get(mapped.hubspot))
        return Pulled(properties.get(self.key), str(record.id), props, self._modified(record))

    # -- erase -----------------------------------------------------------------------

    def erase(self, key: str, crm_id: str | None) -> bool:
        body = (
            PublicGdprDeleteInput(object_id=crm_id)
            if crm_id
            else PublicGdprDeleteInput(object_id=key, id_property=self.key)
        )
        try:
            self._call("gdpr-delete", lambda: self.client.crm.contacts.basic_api.purge(body))
        except Exception as exc:
            if _status(exc) == 404:
                return False
            raise
        return True


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _describe(error: dict[str, Any]) -> str:
    """Category and codes of a 207 entry; never the rejected value (it may be an email)."""
    details = []
    for detail in error.get("errors") or []:
        names = ",".join((detail.get("context") or {}).get("propertyName", []))
        code = detail.get("code")
        details.append(f"{code} on {names}" if names else str(code))
    category = str(error.get("category") or "ERROR")
    if details:
        return f"{category}: {'; '.join(details)}"
    if category in ("CONFLICT", "OBJECT_NOT_FOUND"):
        return f"{category}: {error.get('message', '')}"
    return category
