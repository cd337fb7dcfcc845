"""What every command shares: the App from settings, one error guard, and the workers.

Light on imports: every command imports this module, `loyalty worker` before it has
read the settings that Dramatiq must see when it is first imported.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import redis
from sqlalchemy.exc import OperationalError

from automations.runtime.pacing import pacers_for
from loyalty.app import App
from loyalty.db import upgrade
from loyalty.errors import ConfigError, LoyaltyError, SkippableError
from loyalty.logs import configure_logging
from loyalty.settings import Settings, load_settings

if TYPE_CHECKING:
    from automations.versions import PublishReport

__all__ = [
    "app_from_environment",
    "fail",
    "guard",
    "minute",
    "print_publish_report",
    "settings_from_environment",
    "workers",
]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_from_environment() -> Settings:
    """Settings from the environment and `.env`; a bad value ends the command in one line."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc))


def app_from_environment(*, migrate: bool = True) -> App:
    """The App from settings, migrated (SQLite) or checked to be current (PostgreSQL)."""
    settings = settings_from_environment()
    configure_logging(settings.log_level, settings.log_format)
    app = App.from_settings(settings, pacers=pacers_for(settings))
    if migrate and not app.database.is_migrated():
        if not app.database.is_sqlite:
            fail("the database schema is not current; run `loyalty db upgrade` first")
        upgrade(app.database)
    return app


def guard(fn: F) -> F:
    """Turn the program's own errors, and unreachable services, into one line and a status.

    Exit status 1: some input was skipped; 2: nothing could be done.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SkippableError as exc:
            fail(str(exc), 1)
        except (LoyaltyError, LookupError) as exc:
            fail(str(exc).strip("'\""), 2)
        except OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            fail(f"cannot use the database ({reason}); check DATABASE_URL and that it runs", 2)
        except redis.RedisError as exc:
            fail(f"cannot use Redis ({exc}); check REDIS_URL and that it runs", 2)

    return run  # type: ignore[return-value]


def print_publish_report(report: PublishReport, *, quiet: bool = False) -> None:
    """Problems on stderr; unless `quiet`, each journey version published."""
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if not quiet:
        for journey_id, version in report.published:
            click.echo(f"published {journey_id} version {version}")


@contextmanager
def workers(app: App, wait: bool) -> Iterator[bool]:
    """The broker for this command; on the embedded default, worker threads until work is done.

    Yields whether the caller should wait for processing by polling (Redis with --wait).
    """
    # Imported here: it brings Dramatiq and every actor, which `loyalty worker` must not
    # import before it has read its settings (`cli.worker`).
    from automations.runtime.process import processing

    with processing(app, on_publish=lambda r: print_publish_report(r, quiet=True)) as remote:
        yield remote and wait


def minute(at: datetime | None) -> str:
    """An instant to the minute in UTC for listings, or "-" when there is none."""
    return "-" if at is None else at.strftime("%Y-%m-%dT%H:%MZ")
