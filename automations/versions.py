"""Publishing journeys: each changed file becomes a new immutable version.

A version stores the definition and the text of every template it uses, so an
enrollment finishes on exactly what it entered with, even after edits. A file
that fails validation is reported and never published; the journey's last good
version stays in force and the other journeys are untouched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automations.definition import Journey, JourneyFile, Problem, Program, load_journeys
from automations.definition.durations import STORED
from automations.definition.models import SendEmail, SendSms, SendSurvey
from channels.templates import PARTIALS_DIR, partial_names, read_partials, template_path
from loyalty.app import App
from loyalty.db import per_transaction, program_frozen
from loyalty.journey_pauses import paused_journeys
from loyalty.models import Enrollment, JourneyVersion
from loyalty.states import IN_FLIGHT

__all__ = [
    "PublishReport",
    "Published",
    "journey_summaries",
    "latest_published",
    "latest_versions",
    "load_version",
    "publish",
    "published_version",
    "templates_of",
    "versions_frozen",
]


@dataclass
class PublishReport:
    published: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[tuple[str, int]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Published:
    """A stored version, parsed back into its model."""

    row_id: int
    version: int
    journey: Journey
    templates: dict[str, str]


def templates_of(journey_file: JourneyFile, templates_dir: Path) -> dict[str, str]:
    """The text of every template the journey uses, keyed `locale/name.channel`, and of the
    partials those render, keyed `_partials/locale/name`."""
    journey = journey_file.journey
    found: dict[str, str] = {}
    locales = sorted({*journey.all_locales, "en"} | _locale_dirs(templates_dir))
    for step in journey.steps:
        if isinstance(step, SendEmail) and step.template:
            names = [(step.template, "email")]
        elif isinstance(step, SendSms):
            names = [(step.template, "sms")]
        elif isinstance(step, SendSurvey):
            names = [(step.template, step.channel)]
        else:
            continue
        for name, channel in names:
            for locale in locales:
                path = template_path(templates_dir, locale, name, channel)  # type: ignore[arg-type]
                if path.is_file():
                    found[f"{locale}/{name}.{channel}"] = path.read_text(encoding="utf-8")
    # The partials they render, in every locale, so the version needs no file to send.
    rendered = [n for text in found.values() for n in partial_names(text)]
    return found | read_partials(templates_dir, rendered) if rendered else found


def _locale_dirs(templates_dir: Path) -> set[str]:
    if not templates_dir.is_dir():
        return set()
    return {p.name for p in templates_dir.iterdir() if p.is_dir() and p.name != PARTIALS_DIR}


def _content(journey_file: JourneyFile, templates_dir: Path) -> dict[str, Any]:
    return {
        "journey": journey_file.journey.model_dump(mode="json", by_alias=True, exclude_none=True),
        "templates": templates_of(journey_file, templates_dir),
        "file": journey_file.path.name,
    }


def _digest(content: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"journey": content["journey"], "templates": content["templates"]}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def publish(app: App, journeys_dir: Path | None = None) -> PublishReport:
    """Store a new version of each valid journey whose content changed."""
    folder = journeys_dir or app.settings.journeys_dir
    templates_dir = folder / "templates"
    program = Program.from_settings(app.settings)
    files, problems = load_journeys([folder], templates_dir, program=program)
    report = PublishReport(problems=[p for p in problems if p.severity == "error"])
    for journey_file in files:
        content = _content(journey_file, templates_dir)
        digest = _digest(content)
        journey_id = journey_file.journey.id
        try:
            with app.database.transaction() as session:
                latest = _latest(session, journey_id)
                if latest is not None and latest.content_hash == digest:
                    report.unchanged.append((journey_id, latest.version))
                    continue
                version = (latest.version if latest else 0) + 1
                session.add(
                    JourneyVersion(
                        journey_id=journey_id,
                        version=version,
                        content_hash=digest,
                        definition=content,
                        published_at=app.clock.now(),
                    )
                )
            report.published.append((journey_id, version))
        except IntegrityError:
            # Another process published the same change at the same moment.
            with app.database.sessions() as session:
                latest = _latest(session, journey_id)
            assert latest is not None
            report.unchanged.append((journey_id, latest.version))
    return report


def _latest(session: Session, journey_id: str) -> JourneyVersion | None:
    return session.scalar(
        select(JourneyVersion)
        .where(JourneyVersion.journey_id == journey_id)
        .order_by(JourneyVersion.version.desc())
        .limit(1)
    )


def latest_versions(session: Session) -> list[JourneyVersion]:
    """The newest version of every journey."""
    newest = (
        select(JourneyVersion.journey_id, func.max(JourneyVersion.version).label("version"))
        .group_by(JourneyVersion.journey_id)
        .subquery()
    )
    return list(
        session.scalars(
            select(JourneyVersion)
            .join(
                newest,
                (JourneyVersion.journey_id == newest.c.journey_id)
                & (JourneyVersion.version == newest.c.version),
            )
            .order_by(JourneyVersion.journey_id)
        )
    )


_parsed: dict[str, Journey] = {}


def load_version(row: JourneyVersion) -> Published:
    """The parsed journey of a stored version (content-addressed, so parsed once)."""
    journey = _parsed.get(row.content_hash)
    if journey is None:
        # Stored durations were written with `m` for minutes, which files may no longer use.
        journey = Journey.model_validate(row.definition["journey"], context=STORED)
        _parsed[row.content_hash] = journey
    return Published(row.id, row.version, journey, dict(row.definition["templates"]))


#: Parsed versions by (row id, version, content hash): a stored version never changes.
_published: dict[tuple[int, int, str], Published] = {}


@dataclass
class _Frozen:
    """The versions read while frozen: the newest (once read), and each by row id."""

    latest: list[Published] | None = None
    by_id: dict[int, Published] = field(default_factory=dict)


#: While set (`versions_frozen`), the published versions as first read: nothing publishes.
_frozen: ContextVar[_Frozen | None] = ContextVar("frozen_versions", default=None)


@contextmanager
def versions_frozen() -> Iterator[None]:
    """Within, `latest_published` reads the versions once and answers from that reading, and
    `published_version` reads each version's row once: for a simulation, whose copy of the
    program publishes nothing while it runs. What a transaction reads once of the program
    (`loyalty.db.per_transaction`: pauses, the event types heard) is read once too."""
    token = _frozen.set(_Frozen())
    try:
        with program_frozen():
            yield
    finally:
        _frozen.reset(token)


def latest_published(session: Session) -> list[Published]:
    """`load_version` of each of `latest_versions`, reading a definition only the first time."""
    frozen = _frozen.get()
    if frozen is not None and frozen.latest is not None:
        return frozen.latest
    known = per_transaction(session, _LATEST)
    published = known.get("latest")
    if published is None:  # read once per transaction: a batch of events asks for each
        published = known["latest"] = _latest_published(session)
    if frozen is not None:
        frozen.latest = published
        frozen.by_id.update((p.row_id, p) for p in published)
    return published


def _latest_published(session: Session) -> list[Published]:
    newest = (
        select(JourneyVersion.journey_id, func.max(JourneyVersion.version).label("version"))
        .group_by(JourneyVersion.journey_id)
        .subquery()
    )
    keys = session.execute(
        select(JourneyVersion.id, JourneyVersion.version, JourneyVersion.content_hash)
        .join(
            newest,
            (JourneyVersion.journey_id == newest.c.journey_id)
            & (JourneyVersion.version == newest.c.version),
        )
        .order_by(JourneyVersion.journey_id)
    ).all()
    published = [_cached(session, (row_id, version, digest)) for row_id, version, digest in keys]
    # The enrollments they start ask for the same versions by id (`published_version`).
    seen: dict[int, Published] = session.info.setdefault(_SEEN, {})
    seen.update((p.row_id, p) for p in published)
    return published


def published_version(session: Session, version_id: int) -> Published | None:
    """`load_version` of the version with this row id, its definition read only the first time
    (and its row once per session: a batch of runs asks for the same version many times)."""
    frozen = _frozen.get()
    seen: dict[int, Published] = (
        frozen.by_id if frozen is not None else session.info.setdefault(_SEEN, {})
    )
    if version_id in seen:
        return seen[version_id]
    key = session.execute(
        select(JourneyVersion.id, JourneyVersion.version, JourneyVersion.content_hash).where(
            JourneyVersion.id == version_id
        )
    ).first()
    if key is None:
        return None
    published = seen[version_id] = _cached(session, (key[0], key[1], key[2]))
    return published


#: Where a session keeps the versions it has read.
_SEEN = "versions.published"
#: Where a transaction keeps the newest published versions it has read.
_LATEST = "versions.latest"


def _cached(session: Session, key: tuple[int, int, str]) -> Published:
    published = _published.get(key)
    if published is None:
        row = session.get(JourneyVersion, key[0])
        assert row is not None
        published = _published[key] = load_version(row)
    return published


def journey_summaries(session: Session) -> list[dict[str, Any]]:
    """Each published journey's status (paused from the console, with who and when), version,
    enrollments in flight, entries and conversions."""

    def per_journey(*where: Any) -> dict[str, int]:
        query = select(Enrollment.journey_id, func.count(Enrollment.id)).where(*where)
        return {k: int(v) for k, v in session.execute(query.group_by(Enrollment.journey_id))}

    in_flight = per_journey(Enrollment.state.in_(IN_FLIGHT))
    entries = per_journey()
    conversions = per_journey(Enrollment.converted_at.is_not(None))
    paused = paused_journeys(session)
    rows = []
    for version in latest_versions(session):
        journey = load_version(version).journey
        pause = paused.get(journey.id)
        rows.append(
            {
                "id": journey.id,
                # A pause from the console stops entries whatever the file's status says.
                "status": "paused" if pause is not None else journey.status,
                "file_status": journey.status,
                "paused_at": pause.paused_at.isoformat() if pause and pause.paused_at else None,
                "paused_by": pause.paused_by if pause is not None else None,
                "version": version.version,
                "trigger": journey.trigger.type,
                "active_enrollments": in_flight.get(journey.id, 0),
                "entries": entries.get(journey.id, 0),
                "conversions": conversions.get(journey.id, 0),
                "published_at": version.published_at.isoformat(),
            }
        )
    return rows
