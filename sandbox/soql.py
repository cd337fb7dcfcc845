"""The subset of SOQL the sync uses: SELECT … FROM Contact [WHERE a AND b] [ORDER BY] [LIMIT]."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.salesforce_store import SfError, parse_sf_datetime

__all__ = ["Query", "parse_soql", "run_query"]

_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<direction>ASC|DESC))?(?:\s+NULLS\s+(?:FIRST|LAST))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\s*(?P<field>\w+)\s*(?P<op>=|!=|<>|>=|<=|>|<)\s*(?P<value>'(?:[^'\\]|\\.)*'|[^\s']+)\s*$"
)
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    sobject: str
    conditions: tuple[Condition, ...]
    order_by: str | None
    descending: bool
    limit: int | None


def _malformed(detail: str) -> SfError:
    return SfError(400, "MALFORMED_QUERY", detail)


def _literal(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1].replace("\\'", "'")
    lowered = text.lower()
    if lowered == "null":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if _DATETIME.match(text):
        return parse_sf_datetime(text)
    try:
        return float(text)
    except ValueError:
        raise _malformed(f"unexpected token: '{text}'") from None


def parse_soql(soql: str) -> Query:
    match = _QUERY.match(soql)
    if match is None:
        raise _malformed(f"unexpected token in query: {soql[:80]}")
    fields = tuple(f.strip() for f in match["fields"].split(","))
    if not all(re.fullmatch(r"\w+", f) for f in fields):
        raise _malformed("only plain field names are supported in SELECT")
    conditions = []
    if match["where"]:
        for part in re.split(r"\s+AND\s+", match["where"], flags=re.IGNORECASE):
            cond = _CONDITION.match(part)
            if cond is None:
                raise _malformed(f"unexpected condition: {part}")
            op = "!=" if cond["op"] == "<>" else cond["op"]
            conditions.append(Condition(cond["field"], op, _literal(cond["value"])))
    return Query(
        fields,
        match["object"],
        tuple(conditions),
        match["order"],
        (match["direction"] or "ASC").upper() == "DESC",
        int(match["limit"]) if match["limit"] else None,
    )


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
}


def _value(record: dict[str, Any], name: str, like: Any) -> Any:
    value = record.get(name)
    if isinstance(like, datetime) and isinstance(value, str):
        return parse_sf_datetime(value)
    return value


def _holds(record: dict[str, Any], cond: Condition) -> bool:
    value = _value(record, cond.field, cond.value)
    if value is None or cond.value is None:
        return (
            (value is None) == (cond.value is None)
            if cond.op == "="
            else ((value is None) != (cond.value is None) if cond.op == "!=" else False)
        )
    try:
        return _OPS[cond.op](value, cond.value)
    except TypeError:
        return False


def run_query(query: Query, records: list[dict[str, Any]], known: set[str]) -> list[dict[str, Any]]:
    """Matching records in order, limited, projected onto the selected fields.

    "Id" is always present (first) so callers can build record URLs; drop it if not selected.
    """
    for name in (*query.fields, *(c.field for c in query.conditions), query.order_by):
        if name is not None and name not in known:
            raise SfError(
                400,
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{query.sobject}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name.",
            )
    rows = [r for r in records if all(_holds(r, c) for c in query.conditions)]
    if query.order_by:
        key = query.order_by
        rows.sort(key=lambda r: (r.get(key) is None, r.get(key) or ""), reverse=query.descending)
    if query.limit is not None:
        rows = rows[: query.limit]
    return [{"Id": r.get("Id"), **{name: r.get(name) for name in query.fields}} for r in rows]
