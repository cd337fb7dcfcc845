"""`loyalty serve`: the web process (webhooks and customer pages) under uvicorn."""

from __future__ import annotations

import click

from cli.context import app_from_environment
from web.app import create_app

__all__ = ["serve"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="log each request line (paths carry unsubscribe and survey tokens)",
)
def serve(host: str, port: int, access_log: bool) -> None:
    """Serve the provider webhooks and the unsubscribe page.

    Providers sign the public URL they call: set PUBLIC_BASE_URL to it.
    """
    import uvicorn

    app = app_from_environment()
    # log_config=None keeps the structured logging that app_from_environment set up.
    uvicorn.run(create_app(app), host=host, port=port, log_config=None, access_log=access_log)
