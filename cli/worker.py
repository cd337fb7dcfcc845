"""`loyalty worker`: Dramatiq worker processes on Redis, forked from this one.

Dramatiq's command line starts the worker processes; it runs here, in the process that
checked the setup, rather than in a fresh interpreter. The workers are forked from it
with every module already imported: each used to import the program again, which cost
more CPU than the check itself. Dramatiq reads how long an idle consumer waits
(`dramatiq_worker_timeout`) when it is first imported, so this module imports nothing
that brings Dramatiq in before the settings are read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli.context import app_from_environment, fail, guard, settings_from_environment

__all__ = ["worker"]

#: The module the worker processes import: it builds their App and broker.
WORKER_MODULE = "automations.runtime.worker_entry"


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
    settings = settings_from_environment()
    if not settings.redis_url:
        fail("`loyalty worker` needs REDIS_URL; without it use `loyalty run`")
    # Read by Dramatiq when it is first imported (the fresh worker command imported no
    # Dramatiq yet; a test calling the command in its own process may have).
    os.environ["dramatiq_worker_timeout"] = str(settings.worker_timeout_ms)  # noqa: SIM112 (its name)
    port = metrics_port or settings.worker_metrics_port
    if port:
        _serve_worker_metrics(port, metrics_host, settings.prometheus_multiproc_dir)

    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    # Brings Dramatiq, the broker and every actor: imported once, here, for all the forks.
    from automations.runtime.process import check_sending_setup

    app = app_from_environment()
    check_sending_setup(app)  # against the journeys the scheduler published
    app.database.dispose()  # the worker processes are forked: no connection is shared
    os.nice(settings.worker_nice)  # inherited by the worker processes
    args = make_argument_parser().parse_args(  # type: ignore[no-untyped-call]
        [
            WORKER_MODULE,
            "--processes",
            str(processes or settings.worker_processes),
            "--threads",
            str(threads or settings.worker_threads),
        ]
    )
    sys.exit(dramatiq_main(args))  # type: ignore[no-untyped-call]


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
