"""The `loyalty` command: one thin module per command group over the packages."""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points

import click

from cli.context import fail
from cli.crm import crm
from cli.db import db
from cli.dlq import dlq
from cli.events import events
from cli.journeys import journeys
from cli.members import members
from cli.messages import messages
from cli.points import points
from cli.referrals import referrals
from cli.rewards import rewards
from cli.runtime import run, scheduler_command, worker
from cli.serve import serve
from cli.tokens import tokens
from cli.users import users

__all__ = ["main"]

#: Entry-point group through which installed extras (the provider sandbox) add commands.
PLUGIN_GROUP = "loyalty.commands"


@functools.cache
def _plugins() -> dict[str, EntryPoint]:
    return {plugin.name: plugin for plugin in entry_points(group=PLUGIN_GROUP)}


class _Commands(click.Group):
    """The commands; those of installed extras are imported only when named or listed.

    The provider sandbox pulls in every emulator: a `loyalty worker` or a
    `loyalty events emit` should not pay for that at each start.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        plugin = _plugins().get(cmd_name)
        if command is not None or plugin is None:
            return command
        try:
            command = plugin.load()
        except ImportError as missing:  # an extra that is declared but not installed
            command = _missing_extra(cmd_name, missing)
        self.add_command(command, cmd_name)
        return command


@click.group(cls=_Commands)
@click.version_option(package_name="loyalty-journeys")
def main() -> None:
    """Loyalty members, points, journeys, messages and CRM sync."""


for _command in (
    db,
    members,
    points,
    rewards,
    referrals,
    events,
    journeys,
    messages,
    crm,
    dlq,
    worker,
    scheduler_command,
    run,
    serve,
    tokens,
    users,
):
    main.add_command(_command)


def _missing_extra(name: str, reason: ImportError) -> click.Command:
    """A stand-in for a command whose extra is not installed: one line on how to get it."""

    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        fail(
            f"`loyalty {name}` needs the {name} extra ({reason.name or reason}); "
            f"install it with: pip install 'loyalty-journeys[{name}]'"
        )

    return command


if __name__ == "__main__":
    main()
