"""`loyalty worker|scheduler|run`: the processes that do the work."""

from __future__ import annotations

import os
import sys

import click

import scheduler as scheduling
from automations.runtime.broker import embedded_worker
from automations.runtime.process import check_sending_setup, start
from cli.context import (
    app_from_environment,
    fail,
    guard,
    print_publish_report,
    settings_from_environment,
)

__all__ = ["run", "scheduler_command", "worker"]


@click.command()
@click.option("--processes", type=int, help="default: WORKER_PROCESSES")
@click.option("--threads", type=int, help="default: WORKER_THREADS")
@guard
def worker(processes: int | None, threads: int | None) -> None:
    """Run Dramatiq workers on Redis (needs REDIS_URL)."""
    app = app_from_environment()
    if not app.settings.redis_url:
        fail("`loyalty worker` needs REDIS_URL; without it use `loyalty run`")
    check_sending_setup(app)  # against the journeys the scheduler published
    # Dramatiq reads how long an idle consumer waits from its environment when its worker
    # module is first imported, which has happened here: the workers start in a fresh
    # interpreter that reads it.
    os.environ["dramatiq_worker_timeout"] = str(app.settings.worker_timeout_ms)  # noqa: SIM112 (its name)
    argv = [
        "automations.runtime.worker_entry",
        "--processes",
        str(processes or app.settings.worker_processes),
        "--threads",
        str(threads or app.settings.worker_threads),
    ]
    os.execv(sys.executable, [sys.executable, "-m", "dramatiq", *argv])


@click.command("scheduler")
@click.option("--list", "list_jobs", is_flag=True, help="list the periodic jobs and exit")
@guard
def scheduler_command(list_jobs: bool) -> None:
    """Run the scheduler (one is active; others wait to take over)."""
    if list_jobs:
        for line in scheduling.describe(settings_from_environment()):
            click.echo(line)
        return
    app = app_from_environment()
    start(app, on_publish=print_publish_report)
    _run_until_interrupted(scheduling.Scheduler(app))


@click.command()
@guard
def run() -> None:
    """Run the scheduler and workers together in this process (the embedded default)."""
    app = app_from_environment()
    broker = start(app, on_publish=print_publish_report)
    with embedded_worker(broker, app.settings.worker_threads):
        _run_until_interrupted(scheduling.Scheduler(app))


def _run_until_interrupted(scheduler: scheduling.Scheduler) -> None:
    click.echo("running; Ctrl-C stops", err=True)
    try:
        scheduler.run()
    except KeyboardInterrupt:
        scheduler.stop()
