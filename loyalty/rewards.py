"""The rewards catalog (`journeys/rewards.yaml`): what points buy, with file:line:column errors.

A reward has an id, a name per locale, a cost in points, a kind (a fixed amount
with a value per currency, a percentage, or free shipping), an optional minimum
tier, how long its code stays valid and how many times one member may take it.
Every problem in the file is reported at once; a catalog with errors is not used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from loyalty.errors import ConfigError
from loyalty.yaml_source import Document, Location, YamlError, load_yaml

__all__ = [
    "CATALOG_FILE",
    "Catalog",
    "CatalogProblem",
    "FixedAmount",
    "FreeShipping",
    "Percentage",
    "RedemptionState",
    "Reward",
    "RewardKind",
    "cached_catalog",
    "catalog_path",
    "check_catalog",
    "json_schema",
    "load_catalog",
    "parse_validity",
    "tier_allows",
]

#: The catalog's file name inside the journeys folder.
CATALOG_FILE = "rewards.yaml"

_DURATION = re.compile(r"^([1-9][0-9]{0,4})([dhw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


class RewardKind(StrEnum):
    FIXED_AMOUNT = "fixed_amount"
    PERCENTAGE = "percentage"
    FREE_SHIPPING = "free_shipping"


class RedemptionState(StrEnum):
    """`redemptions.state`: pending until the shop has the code (issued) or refused it (failed)."""

    PENDING = "pending"
    ISSUED = "issued"
    FAILED = "failed"


def parse_validity(value: str) -> timedelta:
    """`30d`, `12h`, `2w` as a timedelta; ValueError otherwise."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise ValueError("expected a duration such as 30d, 12h or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="stable id, lower case")
    name: dict[str, str] = Field(min_length=1, description="display name per locale: {en: …}")
    cost: int = Field(gt=0, description="points it costs")
    min_tier: str | None = Field(None, description="lowest tier that may take it")
    valid_for: str = Field("30d", description="how long the code is valid: 30d, 12h, 2w")
    limit_per_member: int | None = Field(None, gt=0, description="times one member may take it")

    @field_validator("valid_for")
    @classmethod
    def _validity(cls, value: str) -> str:
        parse_validity(value)
        return value

    @field_validator("name")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for locale, name in value.items():
            if not re.fullmatch(r"[a-z]{2,3}(-[A-Z]{2})?", locale):
                raise ValueError(f"`{locale}` is not a locale such as en or pl")
            if not name.strip():
                raise ValueError(f"the {locale} name is empty")
        return value

    @property
    def validity(self) -> timedelta:
        return parse_validity(self.valid_for)

    def display_name(self, locale: str | None, fallback: str = "en") -> str:
        for candidate in (locale, (locale or "").split("-")[0], fallback):
            if candidate and candidate in self.name:
                return self.name[candidate]
        return next(iter(self.name.values()))


class FixedAmount(_Base):
    """An amount off the order, per currency: `value: {PLN: 20, EUR: 5}`."""

    kind: Literal["fixed_amount"]
    value: dict[str, Decimal] = Field(min_length=1, description="amount off per currency")

    @field_validator("value")
    @classmethod
    def _amounts(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, amount in value.items():
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise ValueError(f"`{currency}` is not an ISO 4217 code such as EUR")
            if not amount.is_finite() or amount <= 0:
                raise ValueError(f"the {currency} amount must be more than zero")
        return value


class Percentage(_Base):
    """A share off the order: `percentage: 10` is 10 %."""

    kind: Literal["percentage"]
    percentage: Decimal = Field(gt=0, le=100, description="percent off, 0 < p ≤ 100")


class FreeShipping(_Base):
    kind: Literal["free_shipping"]


Reward = Annotated[FixedAmount | Percentage | FreeShipping, Field(discriminator="kind")]


class Catalog(BaseModel):
    """Every reward points can buy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rewards: list[Reward] = Field(default_factory=list)

    def get(self, reward_id: str) -> FixedAmount | Percentage | FreeShipping | None:
        return next((r for r in self.rewards if r.id == reward_id), None)


@dataclass(frozen=True, order=True)
class CatalogProblem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


def catalog_path(journeys_dir: Path) -> Path:
    return journeys_dir / CATALOG_FILE


def check_catalog(path: Path, tiers: Iterable[str]) -> tuple[Catalog | None, list[CatalogProblem]]:
    """The catalog and every problem in it; the catalog is None when there is any problem.

    A missing file is an empty catalog: rewards are optional.
    """
    if not path.exists():
        return Catalog(), []
    name = str(path)
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return None, [_at(name, exc.location, exc.message + hint)]
    if doc.data is None:
        return Catalog(), []
    if not isinstance(doc.data, dict):
        return None, [_at(name, doc.locate(()), "expected `rewards:` with a list of rewards")]
    problems = _meaning_problems(name, doc, list(tiers))
    try:
        catalog = Catalog.model_validate(doc.data)
    except ValidationError as exc:
        problems += [_schema_problem(name, doc, error) for error in exc.errors()]
        return None, sorted(set(problems))
    return (None if problems else catalog), sorted(problems)


def load_catalog(journeys_dir: Path, tiers: Iterable[str]) -> Catalog:
    """The catalog of `journeys_dir`; ConfigError listing every problem when it has any."""
    catalog, problems = check_catalog(catalog_path(journeys_dir), tiers)
    if catalog is None:
        raise ConfigError("the rewards catalog has errors: " + "; ".join(map(str, problems)))
    return catalog


_CACHE: dict[tuple[Path, float, int, tuple[str, ...]], Catalog | None] = {}


def cached_catalog(journeys_dir: Path, tiers: Iterable[str]) -> Catalog | None:
    """The catalog, read again only when the file changes; None when it has errors."""
    path = catalog_path(journeys_dir)
    try:
        stat = path.stat()
    except OSError:
        return Catalog()
    key = (path.resolve(), stat.st_mtime, stat.st_size, tuple(tiers))
    if key not in _CACHE:
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[key] = check_catalog(path, key[3])[0]
    return _CACHE[key]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `rewards.yaml` for editors."""
    schema = Catalog.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Rewards catalog"
    return schema


def _at(file: str, where: Location, message: str) -> CatalogProblem:
    return CatalogProblem(file, where.line, where.column, message)


def _schema_problem(name: str, doc: Document, error: ErrorDetails) -> CatalogProblem:
    loc = tuple(error["loc"])
    kind = error["type"]
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        message = f"unknown key `{field}`"
        return _at(name, doc.locate(loc, key=True), message)
    if kind == "missing":
        return _at(name, doc.locate(loc), f"`{field}` is required")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        where = doc.locate((*loc, "kind")) if doc.exists((*loc, "kind")) else doc.locate(loc)
        return _at(name, where, "`kind` must be one of fixed_amount, percentage, free_shipping")
    reason = str(error["msg"]).removeprefix("Value error, ")
    return _at(name, doc.locate(loc), f"`{field}`: {reason}")


def _meaning_problems(name: str, doc: Document, tiers: list[str]) -> list[CatalogProblem]:
    """Duplicate ids and unknown tiers, read from the raw data so they show beside schema errors."""
    items = doc.data.get("rewards") if isinstance(doc.data, dict) else None
    problems: list[CatalogProblem] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        reward_id, tier = item.get("id"), item.get("min_tier")
        if isinstance(reward_id, str):
            if reward_id in seen:
                problems.append(
                    _at(
                        name,
                        doc.locate(("rewards", index, "id")),
                        f"reward id `{reward_id}` is also used by reward {seen[reward_id] + 1}",
                    )
                )
            seen.setdefault(reward_id, index)
        if isinstance(tier, str) and tier not in tiers:
            problems.append(
                _at(
                    name,
                    doc.locate(("rewards", index, "min_tier")),
                    f"unknown tier `{tier}`; tiers are {', '.join(tiers)} (TIER_THRESHOLDS)",
                )
            )
    return problems


def tier_allows(tier: str, min_tier: str | None, thresholds: Mapping[str, int]) -> bool:
    """Whether a member of `tier` may take a reward for `min_tier` and up."""
    if min_tier is None:
        return True
    return thresholds.get(tier, 0) >= thresholds.get(min_tier, 0)
