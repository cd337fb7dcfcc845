"""The journeys list and the journey page: figures, diagram, versions, validation, pause."""

from __future__ import annotations

import difflib
import logging
from datetime import datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from automations.definition import Journey, Program, Split, validate_paths
from automations.report import journey_report
from automations.versions import latest_versions, load_version
from loyalty.app import App
from loyalty.journey_pauses import pause, paused_journeys, resume
from loyalty.message_counts import step_message_counts
from loyalty.models import (
    ConsoleAction,
    Enrollment,
    JourneyPause,
    JourneyVersion,
)
from loyalty.states import IN_FLIGHT, EnrollmentState, MessageState
from loyalty.step_counts import entered_by_step
from web.common import loyalty_app
from web.console.auth import Signed, requires
from web.console.diagram import StepFigures, journey_svg
from web.console.rendering import error_page, render

__all__ = ["journey_action", "journey_page", "journeys_page"]

log = logging.getLogger("web.console")


def _figures(session: Session, journey_id: str, now: datetime) -> dict[str, int]:
    """In flight, entries and conversions over 7 and 30 days: each a range of one of the
    journey's indexes (state, entered_at, converted_at), never a scan of every enrollment."""
    week, month = now - timedelta(days=7), now - timedelta(days=30)
    mine = Enrollment.journey_id == journey_id
    in_flight = session.scalar(select(func.count()).where(mine, Enrollment.state.in_(IN_FLIGHT)))
    entries = session.execute(
        select(func.count(), func.count().filter(Enrollment.entered_at >= week)).where(
            mine, Enrollment.entered_at >= month
        )
    ).one()
    conversions = session.execute(
        select(func.count(), func.count().filter(Enrollment.converted_at >= week)).where(
            mine, Enrollment.converted_at >= month
        )
    ).one()
    return {
        "in_flight": int(in_flight or 0),
        "entries_7": int(entries[1]),
        "entries_30": int(entries[0]),
        "conversions_7": int(conversions[1]),
        "conversions_30": int(conversions[0]),
    }


def journey_rows(app: App) -> list[dict[str, Any]]:
    """Each published journey with its status and figures."""
    now = app.clock.now()
    with app.database.sessions() as session:
        paused = paused_journeys(session)
        rows = []
        for version in latest_versions(session):
            journey = load_version(version).journey
            rows.append(
                {
                    "id": journey.id,
                    "name": journey.name,
                    "status": "paused" if journey.id in paused else journey.status,
                    "version": version.version,
                    "trigger": journey.trigger.type,
                    **_figures(session, journey.id, now),
                }
            )
    return rows


@requires("viewer")
async def journeys_page(request: Request) -> Response:
    rows = await run_in_threadpool(journey_rows, loyalty_app(request))
    return render(request, "journeys.html", {"journeys": rows})


def step_figures(session: Session, journey_id: str) -> dict[str, StepFigures]:
    """Each step's figures: entered (counters), waiting now, messages by state and reason."""
    figures: dict[str, StepFigures] = {}

    def of(step: str | None) -> StepFigures:
        return figures.setdefault(step or "", StepFigures())

    for step, entered in entered_by_step(session, journey_id).items():
        of(step).entered = entered
    waiting = session.execute(
        select(Enrollment.current_step, func.count())
        .where(Enrollment.journey_id == journey_id, Enrollment.state == EnrollmentState.WAITING)
        .group_by(Enrollment.current_step)
    )
    for waiting_step, count in waiting:
        of(waiting_step).waiting = int(count)
    for message_step, state, reason, count in step_message_counts(session, journey_id):
        shown = of(message_step)
        if state in (MessageState.SENT, MessageState.UNKNOWN):
            shown.sent += count
        elif state == MessageState.DEFERRED:
            shown.deferred += count
        elif state == MessageState.FAILED:
            shown.failed += count
        elif state == MessageState.SUPPRESSED and count:
            shown.suppressed[reason or "other"] = shown.suppressed.get(reason or "other", 0) + count
    return figures


def _has_split(journey: Journey) -> bool:
    return any(isinstance(step, Split) for step in journey.steps)


def _yaml(row: JourneyVersion) -> str:
    return yaml.safe_dump(row.definition.get("journey", {}), sort_keys=False, allow_unicode=True)


def journey_view(app: App, journey_id: str, diff_from: int | None) -> dict[str, Any] | None:
    settings = app.settings
    with app.database.sessions() as session:
        versions = list(
            session.scalars(
                select(JourneyVersion)
                .where(JourneyVersion.journey_id == journey_id)
                .order_by(JourneyVersion.version.desc())
            )
        )
        if not versions:
            return None
        latest = versions[0]
        journey = load_version(latest).journey
        figures = step_figures(session, journey_id)
        report = journey_report(session, journey_id) if _has_split(journey) else None
        pause_row = session.get(JourneyPause, journey_id)
        actions = list(
            session.scalars(
                select(ConsoleAction)
                .where(ConsoleAction.target == f"journey:{journey_id}")
                .order_by(ConsoleAction.at.desc())
                .limit(20)
            )
        )
        in_flight = session.scalar(
            select(func.count()).where(
                Enrollment.journey_id == journey_id, Enrollment.state.in_(IN_FLIGHT)
            )
        )
    diff = ""
    older = next((v for v in versions if v.version == diff_from), None)
    if older is None and len(versions) > 1:
        older = versions[1]
    if older is not None and older.version != latest.version:
        diff = "".join(
            difflib.unified_diff(
                _yaml(older).splitlines(keepends=True),
                _yaml(latest).splitlines(keepends=True),
                fromfile=f"version {older.version}",
                tofile=f"version {latest.version}",
            )
        )
    file_name = str(latest.definition.get("file", f"{journey_id}.yaml"))
    path = settings.journeys_dir / file_name
    if path.is_file():
        problems = [
            str(p)
            for p in validate_paths(
                [path], settings.journeys_dir / "templates", program=Program.from_settings(settings)
            )
        ]
        validation = problems or ["valid"]
    else:
        validation = [f"{file_name} is not in JOURNEYS_DIR any more"]
    return {
        "journey": journey,
        "paused": pause_row is not None and pause_row.paused_at is not None,
        "pause": pause_row,
        "actions": actions,
        "in_flight": int(in_flight or 0),
        "version": latest.version,
        "versions": versions,
        "diff": diff,
        "diff_from": older.version if older is not None else None,
        "svg": journey_svg(journey, figures),
        "report": report,
        "figures": [
            (step.id, step.type, figures.get(step.id, StepFigures())) for step in journey.steps
        ],
        "validation": validation,
        "file": file_name,
    }


@requires("viewer")
async def journey_page(request: Request) -> Response:
    journey_id = request.path_params["journey_id"]
    raw = request.query_params.get("diff_from", "")
    diff_from = int(raw) if raw.isdigit() else None
    view = await run_in_threadpool(journey_view, loyalty_app(request), journey_id, diff_from)
    if view is None:
        return error_page(
            request, 404, "No such journey", f"No journey {journey_id!r} is published."
        )
    return render(request, "journey.html", view)


def _set_paused(app: App, journey_id: str, paused: bool, by: str) -> bool:
    with app.database.transaction() as session:
        known = session.scalar(
            select(JourneyVersion.id).where(JourneyVersion.journey_id == journey_id).limit(1)
        )
        if known is None:
            return False
        if paused:
            pause(session, journey_id, by=by, now=app.clock.now())
        else:
            resume(session, journey_id, by=by, now=app.clock.now())
    return True


@requires("marketer")
async def journey_action(request: Request) -> Response:
    """POST pause or resume (marketer and up), recorded with who and when."""
    journey_id = request.path_params["journey_id"]
    action = request.path_params["action"]
    if action not in ("pause", "resume"):
        return error_page(request, 404, "No such action", "A journey can be paused or resumed.")
    user: Signed = request.scope["console_user"]
    done = await run_in_threadpool(
        _set_paused, loyalty_app(request), journey_id, action == "pause", user.email
    )
    if not done:
        return error_page(
            request, 404, "No such journey", f"No journey {journey_id!r} is published."
        )
    return RedirectResponse(f"/console/journeys/{journey_id}", status_code=303)
