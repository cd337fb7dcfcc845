"""A process's part in the runtime: the App for actors, the broker, and embedded workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dramatiq import Broker

from automations import runtime
from automations.definition.steps import SendEmail
from automations.runtime.broker import build_broker, embedded_worker, is_embedded
from automations.versions import PublishReport, latest_versions, load_version, publish
from channels.claims import uses_sendgrid
from loyalty.app import App
from loyalty.errors import ConfigError

__all__ = ["check_sending_setup", "marketing_email_steps", "processing", "start"]

#: Steps named in the start-up error, at most.
NAMED_STEPS = 3


def start(app: App, *, on_publish: Callable[[PublishReport], None] | None = None) -> Broker:
    """Make `app` the runtime's, build the broker, and publish the journeys on disk."""
    runtime.configure(app)
    broker = build_broker(app.settings)
    report = publish(app)
    if on_publish is not None:
        on_publish(report)
    check_sending_setup(app)
    return broker


def marketing_email_steps(app: App) -> list[str]:
    """`journey.step` of each marketing email step of the active journeys' newest versions."""
    with app.database.sessions() as session:
        versions = [load_version(row) for row in latest_versions(session)]
    return [
        f"{published.journey.id}.{step.id}"
        for published in versions
        if published.journey.status == "active"
        for step in published.journey.steps
        if isinstance(step, SendEmail) and not step.transactional
    ]


def check_sending_setup(app: App) -> None:
    """Refuse to start sending marketing email through SendGrid without a sender or address.

    Every marketing email must name a real sender and carry the sender's postal
    address (CAN-SPAM; SendGrid refuses unverified senders). The local outbox
    needs neither.
    """
    if not uses_sendgrid(app):
        return
    settings = app.settings
    missing = [
        name
        for name, value in (
            ("EMAIL_FROM", settings.email_from),
            ("POSTAL_ADDRESS", settings.postal_address),
        )
        if not (value and value.strip())
    ]
    if not missing:
        return
    steps = marketing_email_steps(app)
    if not steps:
        return
    named = ", ".join(steps[:NAMED_STEPS]) + (", …" if len(steps) > NAMED_STEPS else "")
    raise ConfigError(
        f"marketing email needs {' and '.join(missing)} (a verified sender and the postal "
        f"address every marketing email must carry): set them, or mark these send_email "
        f"steps `transactional: true`: {named}"
    )


@contextmanager
def processing(
    app: App, *, on_publish: Callable[[PublishReport], None] | None = None
) -> Iterator[bool]:
    """Build the broker for a command that queues work.

    On the embedded default the journeys are published and worker threads run in
    this process until the queued work is done; with Redis, `loyalty worker`
    processes do it. Yields True when the work happens elsewhere.
    """
    runtime.configure(app)
    broker = build_broker(app.settings)
    if not is_embedded(broker):
        yield True
        return
    report = publish(app)
    if on_publish is not None:
        on_publish(report)
    check_sending_setup(app)
    with embedded_worker(
        broker, app.settings.worker_threads, timeout_ms=app.settings.worker_timeout_ms
    ):
        yield False
