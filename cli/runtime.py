"""`loyalty worker|scheduler|run`: the processes that do the work."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

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
from loyalty.collector import tune_collector

__all__ = ["run", "scheduler_command", "worker"]


@click.command()
@click.option("--processes", type=int, help="default: WORKER_PROCESSES")
@click.option("--threads", type=int, help="default: WORKER_THREADS")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="serve this host's metrics (ours and Dramatiq's per actor) on this port; "
    "needs PROMETHEUS_MULTIPROC_DIR (default: WORKER_METRICS_PORT)",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="interface for --metrics-port"
)
@guard
def worker(
    processes: int | None, threads: int | None, metrics_port: int | None, metrics_host: str
) -> None:
    """Run Dramatiq workers on Redis (needs REDIS_URL)."""
    app = app_from_environment()
    if not app.settings.redis_url:
        fail("`loyalty worker` needs REDIS_URL; without it use `loyalty run`")
    check_sending_setup(app)  # against the journeys the scheduler published
    port = metrics_port or app.settings.worker_metrics_port
    if port:
        _serve_worker_metrics(port, metrics_host, app.settings.prometheus_multiproc_dir)
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


def _serve_worker_metrics(port: int, host: str, folder: Path | None) -> None:
    """Have the worker processes count into PROMETHEUS_MULTIPROC_DIR and serve it on `port`.

    The folder must be set before `loyalty worker` starts, and before the other
    processes of the host that share it: prometheus-client chooses where counts go
    when it is first imported.
    """
    if folder is None or not folder.is_dir():
        fail(
            "--metrics-port needs PROMETHEUS_MULTIPROC_DIR set to an existing folder for this "
            "host's loyalty processes (empty it before they start)"
        )
    # Read by the worker processes' settings and (lower case) by Dramatiq's middleware.
    os.environ.update(
        {
            "WORKER_METRICS_PORT": str(port),
            "dramatiq_prom_db": str(folder),
            "dramatiq_prom_port": str(port),
            "dramatiq_prom_host": host,
        }
    )


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
