"""Building journey folders and driving the engine in tests."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from automations import runtime
from automations.intake import emit
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.ticks import wake_enrollments
from automations.versions import PublishReport, publish
from loyalty.app import App
from loyalty.event_types import EventInput
from loyalty.models import Enrollment, Message

EMAIL = """---
subject: "Hi {{ member.first_name }}"
---
<p>{{ body }}</p>
"""


def journey_folder(root: Path, journeys: dict[str, str], templates: dict[str, str]) -> Path:
    """journeys: file stem → YAML; templates: "en/name.email" → text."""
    folder = root / "journeys"
    for stem, text in journeys.items():
        (folder).mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    for key, text in templates.items():
        path = folder / "templates" / f"{key}.liquid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def published(app: App, folder: Path) -> PublishReport:
    report = publish(app, folder)
    assert not report.problems, [str(p) for p in report.problems]
    return report


@contextmanager
def workers(app: App) -> Iterator[None]:
    runtime.configure(app)
    with embedded_worker(build_broker(app.settings), threads=2):
        yield


def send_event(app: App, event: EventInput) -> None:
    with workers(app):
        emit(app, event)


def tick(app: App) -> int:
    with workers(app):
        return wake_enrollments(app)


def enrollments(app: App) -> list[Enrollment]:
    with app.database.sessions() as session:
        return list(session.scalars(select(Enrollment).order_by(Enrollment.id)))


def messages(app: App) -> list[Message]:
    with app.database.sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))
