"""Simulate: run the journeys over a period on a throwaway copy, without blocking the server.

Each run is `loyalty journeys simulate --json --progress` in a child process
watched by a thread that keeps its progress line: the simulator builds its own
broker and clock, which must not touch the web process's. The page follows
the run (htmx asks for it every two seconds and swaps the run in place; without
scripts it refreshes itself), then shows the messages per day by channel as a
chart and the timeline as a table. Runs live in the web process that started
them; one runs at a time per process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from html import escape
from pathlib import Path
from typing import IO, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from automations.versions import latest_versions
from loyalty.app import App
from web.common import loyalty_app
from web.console.auth import Signed, form, requires
from web.console.rendering import error_page, render

__all__ = ["simulate_page", "simulation_page", "start_simulation"]

#: Longest simulation run, in seconds; then it is stopped.
RUN_TIMEOUT_SECONDS = 600
#: Longest period, in days.
MAX_DAYS = 366
#: Timeline rows shown on the page.
TIMELINE_ROWS = 500


@dataclass
class Run:
    id: str
    journey: str
    start: str
    end: str
    by: str
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    problem: str | None = None
    #: The simulator's latest progress: the share of the period done and the simulated time.
    progress: str = ""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> int:
        return int((self.finished or time.monotonic()) - self.started)


_runs: dict[str, Run] = {}
_lock = threading.Lock()


def _command() -> list[str]:
    script = Path(sys.executable).with_name("loyalty")
    found = str(script) if script.exists() else shutil.which("loyalty")
    if found is None:
        raise RuntimeError("the `loyalty` command is not installed beside this server")
    return [found]


def _follow_progress(stream: IO[bytes], run: Run, lines: list[str]) -> None:
    """Keep the simulator's latest progress line (written with carriage returns) and its
    other stderr lines (problems)."""
    pending = b""
    while chunk := stream.read1(4096):  # type: ignore[attr-defined]
        pending += chunk
        *done, pending = re.split(rb"[\r\n]", pending)
        for raw in done:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("simulating"):
                run.progress = line.removeprefix("simulating").strip()
            elif line:
                lines.append(line)


def _watch(run: Run) -> None:
    argv = [*_command(), "journeys", "simulate", "--from", run.start, "--to", run.end]
    argv += ["--json", "--progress"] + (["--journey", run.journey] if run.journey else [])
    errors: list[str] = []
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None and process.stderr is not None
        follower = threading.Thread(
            target=_follow_progress, args=(process.stderr, run, errors), daemon=True
        )
        follower.start()
        timer = threading.Timer(RUN_TIMEOUT_SECONDS, process.kill)
        timer.start()
        try:
            output = process.stdout.read()
            code = process.wait()
        finally:
            timer.cancel()
        follower.join(timeout=5)
        if code < 0:
            run.problem = f"stopped after {RUN_TIMEOUT_SECONDS} s; simulate a shorter period"
        elif code != 0:
            run.problem = errors[-1] if errors else f"the simulator ended with {code}"
        else:
            document = json.loads(output)
            run.timeline, run.summary = document["timeline"], document["summary"]
    except (OSError, RuntimeError, ValueError) as exc:
        run.problem = f"the simulator could not run ({type(exc).__name__})"
    finally:
        run.finished = time.monotonic()


def _journey_ids(app: App) -> list[str]:
    with app.database.sessions() as session:
        return [row.journey_id for row in latest_versions(session)]


@requires("viewer")
async def simulate_page(request: Request) -> Response:
    journeys = await run_in_threadpool(_journey_ids, loyalty_app(request))
    today = loyalty_app(request).clock.now().date().isoformat()
    return render(request, "simulate.html", {"journeys": journeys, "today": today})


@requires("marketer")
async def start_simulation(request: Request) -> Response:
    fields = await form(request)
    try:
        start, end = (
            date.fromisoformat(fields.get("from", "")),
            date.fromisoformat(fields.get("to", "")),
        )
    except ValueError:
        return error_page(request, 400, "Bad period", "Give both days as YYYY-MM-DD.")
    if not 0 <= (end - start).days <= MAX_DAYS:
        return error_page(
            request, 400, "Bad period", f"The period runs forward, at most {MAX_DAYS} days."
        )
    user: Signed = request.scope["console_user"]
    with _lock:
        if any(r.finished is None for r in _runs.values()):
            return error_page(
                request, 409, "A simulation is running", "Wait for it to finish, then start again."
            )
        run = Run(
            uuid.uuid4().hex[:12], fields.get("journey", "")[:128], str(start), str(end), user.email
        )
        _runs[run.id] = run
    threading.Thread(target=_watch, args=(run,), name=f"simulate-{run.id}", daemon=True).start()
    return RedirectResponse(f"/console/simulate/{run.id}", status_code=303)


def sends_per_day(timeline: list[dict[str, Any]]) -> list[tuple[str, dict[str, int]]]:
    """Messages sent per day and channel, in day order."""
    counts: dict[str, Counter[str]] = {}
    for record in timeline:
        if str(record.get("action", "")).startswith("send_") and record.get("state") == "sent":
            counts.setdefault(str(record["at"])[:10], Counter())[str(record.get("channel"))] += 1
    return [(day, dict(counts[day])) for day in sorted(counts)]


def chart_svg(days: list[tuple[str, dict[str, int]]]) -> str:
    """Stacked bars of sends per day: email, then SMS."""
    if not days:
        return ""
    top = max(sum(c.values()) for _, c in days) or 1
    width, height, bar = max(300, 34 * len(days) + 40), 220, 24
    colours = {"email": "#4a7bd0", "sms": "#e0902f"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="messages per day by channel">'
    ]
    for n, (day, counts) in enumerate(days):
        x, y = 30 + n * 34, 190.0
        for channel in sorted(counts):
            h = 170 * counts[channel] / top
            y -= h
            parts.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                f'fill="{colours.get(channel, "#888")}"><title>{escape(day)} {escape(channel)}: '
                f"{counts[channel]}</title></rect>"
            )
        parts.append(f'<text x="{x}" y="205" font-size="9">{escape(day[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


@requires("viewer")
async def simulation_page(request: Request) -> Response:
    run = _runs.get(request.path_params["run_id"])
    if run is None:
        return error_page(
            request, 404, "No such simulation", "It ran in another web process, or that restarted."
        )
    days = sends_per_day(run.timeline)
    return render(
        request,
        "simulation.html",
        {
            "run": run,
            "days": days,
            "chart": chart_svg(days),
            "rows": run.timeline[:TIMELINE_ROWS],
            "more": max(0, len(run.timeline) - TIMELINE_ROWS),
        },
    )
