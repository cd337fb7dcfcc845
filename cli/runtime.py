"""`loyalty scheduler|run`: the processes that do the work (`loyalty worker`: cli.worker)."""

from __future__ import annotations

import signal

import click

import scheduler as scheduling
from automations.runtime.broker import embedded_worker
from automations.runtime.process import start
from cli.context import app_from_environment, guard, print_publish_report, settings_from_environment
from loyalty.collector import tune_collector

__all__ = ["run", "scheduler_command"]


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
    tune_collector()  # the process's own objects are built: see `loyalty.collector`
    with embedded_worker(
        broker, app.settings.worker_threads, timeout_ms=app.settings.worker_timeout_ms
    ):
        _run_until_interrupted(scheduling.Scheduler(app))


def _run_until_interrupted(scheduler: scheduling.Scheduler) -> None:
    """Run until Ctrl-C or SIGTERM (a supervisor's stop); either gives the leader lock back.

    Without that a stopped leader's Redis lock would hold the next scheduler back until
    it expires (SCHEDULER_LOCK_TTL_SECONDS).
    """
    click.echo("running; Ctrl-C stops", err=True)
    previous = signal.signal(signal.SIGTERM, lambda _signal, _frame: scheduler.stop())
    try:
        scheduler.run()
    except KeyboardInterrupt:
        scheduler.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
