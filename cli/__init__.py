"""The `loyalty` command: one thin module per command group over the packages."""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from cli.crm import crm
from cli.db import db
from cli.dlq import dlq
from cli.events import events
from cli.journeys import journeys
from cli.members import members
from cli.messages import messages
from cli.points import points
from cli.runtime import run, scheduler_command, worker
from cli.serve import serve

__all__ = ["main"]

#: Entry-point group through which installed extras (the provider sandbox) add commands.
PLUGIN_GROUP = "loyalty.commands"


@click.group()
@click.version_option(package_name="loyalty-journeys")
def main() -> None:
    """Loyalty members, points, journeys, messages and CRM sync."""


for _command in (
    db,
    members,
    points,
    events,
    journeys,
    messages,
    crm,
    dlq,
    worker,
    scheduler_command,
    run,
    serve,
):
    main.add_command(_command)

for _plugin in entry_points(group=PLUGIN_GROUP):
    try:
        main.add_command(_plugin.load(), _plugin.name)
    except ImportError:  # an extra that is declared but not installed
        continue

if __name__ == "__main__":
    main()
