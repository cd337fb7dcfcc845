"""`loyalty dlq|worker|scheduler|run`: the processes that do the work."""

from __future__ import annotations

import sys
from typing import Any

import click
import dramatiq

from cli import _app, _fail, _guard, _workers
from loyalty.settings import load_settings

__all__ = ["dlq", "run", "scheduler_command", "worker"]


@click.group()
def dlq() -> None:
    """Dead letters: worker messages that failed for good."""


@dlq.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="include replayed ones")
@_guard
def dlq_list(include_replayed: bool) -> None:
    from automations.dead_letters import list_dead_letters

    rows = list_dead_letters(_app().database, include_replayed=include_replayed)
    for row in rows:
        replayed = f" replayed {row.replayed_at.isoformat()}" if row.replayed_at else ""
        click.echo(
            f"{row.id:>5}  {row.failed_at.isoformat()}  {row.actor}"
            f"{tuple(row.args['args'])}  {row.error}{replayed}"
        )
    click.echo(f"{len(rows)} dead letter(s)")


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=int, required=True)
@_guard
def dlq_replay(ids: tuple[int, ...]) -> None:
    """Send dead messages again."""
    from automations.dead_letters import replay

    app = _app()
    with _workers(app, wait=False):
        for dead_id in ids:
            row = replay(app.database, dramatiq.get_broker(), dead_id, now=app.clock.now())
            click.echo(f"replayed {row.id}: {row.actor}{tuple(row.args['args'])}")


@click.command()
@click.option("--processes", type=int, help="default: WORKER_PROCESSES")
@click.option("--threads", type=int, help="default: WORKER_THREADS")
def worker(processes: int | None, threads: int | None) -> None:
    """Run Dramatiq workers on Redis (needs REDIS_URL)."""
    from dramatiq.cli import main as dramatiq_main

    app = _app()
    if not app.settings.redis_url:
        _fail("`loyalty worker` needs REDIS_URL; without it use `loyalty run`")
    sys.argv = [
        "loyalty worker",
        "automations.worker_entry",
        "--processes",
        str(processes or app.settings.worker_processes),
        "--threads",
        str(threads or app.settings.worker_threads),
    ]
    sys.exit(dramatiq_main())  # type: ignore[no-untyped-call]


@click.command("scheduler")
@click.option("--list", "list_jobs", is_flag=True, help="list the periodic jobs and exit")
@_guard
def scheduler_command(list_jobs: bool) -> None:
    """Run the scheduler (one is active; others wait to take over)."""
    import scheduler as scheduling

    if list_jobs:
        for line in scheduling.describe(load_settings()):
            click.echo(line)
        return
    app = _app()
    from automations import runtime
    from automations.broker import build_broker
    from automations.journey_commands import publish_and_report

    runtime.configure(app)
    build_broker(app.settings)
    publish_and_report(app)
    _run_until_interrupted(scheduling.Scheduler(app))


@click.command()
def run() -> None:
    """Run the scheduler and workers together in this process (the embedded default)."""
    import scheduler as scheduling
    from automations import runtime
    from automations.broker import build_broker, embedded_worker
    from automations.journey_commands import publish_and_report

    app = _app()
    runtime.configure(app)
    broker = build_broker(app.settings)
    publish_and_report(app)
    with embedded_worker(broker, app.settings.worker_threads):
        _run_until_interrupted(scheduling.Scheduler(app))


def _run_until_interrupted(scheduler: Any) -> None:
    click.echo("running; Ctrl-C stops", err=True)
    try:
        scheduler.run()
    except KeyboardInterrupt:
        scheduler.stop()
