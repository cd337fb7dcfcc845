"""`loyalty serve`: the web process (webhooks and customer pages) under uvicorn."""

from __future__ import annotations

import click

from cli.context import app_from_environment, guard
from loyalty.collector import tune_collector

__all__ = ["serve"]

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_SECONDS = 5
#: Bytes of request line and headers a client may send.
MAX_HEADER_BYTES = 16 * 1024


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="log each request line (paths carry unsubscribe and survey tokens)",
)
@click.option(
    "--limit-concurrency",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="connections served at once; more get 503 instead of piling up",
)
@guard
def serve(host: str, port: int, access_log: bool, limit_concurrency: int) -> None:
    """Serve the provider and shop webhooks, the member pages and the HTTP API (/api/v1).

    Providers sign the public URL they call: set PUBLIC_BASE_URL to it.
    """
    # Imported here: the web app and the server are for this command only, and every
    # other `loyalty` command starts a quarter of a second sooner without them.
    import uvicorn

    from web.app import create_app

    app = app_from_environment()
    web = create_app(app)
    tune_collector()  # the process's own objects are built: see `loyalty.collector`
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_config=None,  # keeps the structured, redacted logging set up above
        access_log=access_log,
        # Idle and slow clients never hold connections for long: request bodies have their
        # own deadline (BODY_DEADLINE_SECONDS).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=limit_concurrency,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
