"""The `loyalty` command: one thin module per command group over the packages."""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["main"]

#: Entry-point group through which installed extras (the provider sandbox) add commands.
PLUGIN_GROUP = "loyalty.commands"

#: The built-in commands: name → "module:attribute", imported when named or listed.
COMMANDS = {
    "db": "cli.db:db",
    "members": "cli.members:members",
    "points": "cli.points:points",
    "rewards": "cli.rewards:rewards",
    "referrals": "cli.referrals:referrals",
    "events": "cli.events:events",
    "journeys": "cli.journeys:journeys",
    "messages": "cli.messages:messages",
    "crm": "cli.crm:crm",
    "dlq": "cli.dlq:dlq",
    "worker": "cli.worker:worker",
    "scheduler": "cli.runtime:scheduler_command",
    "run": "cli.runtime:run",
    "serve": "cli.serve:serve",
    "tokens": "cli.tokens:tokens",
    "users": "cli.users:users",
}


@functools.cache
def _plugins() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points  # reads every installed package's metadata

    return {plugin.name: plugin for plugin in entry_points(group=PLUGIN_GROUP)}


class _Commands(click.Group):
    """The commands, each imported only when named or listed.

    A command's module brings what it works with (the provider sandbox pulls in every
    emulator, the console the web app): each process start should pay for its own
    command only. `loyalty worker` in particular must not import Dramatiq before it has
    read its settings (see `cli.runtime.worker`).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in COMMANDS:
            module, _, name = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), name)
        elif cmd_name in _plugins():
            try:
                command = _plugins()[cmd_name].load()
            except ImportError as missing:  # an extra that is declared but not installed
                command = _missing_extra(cmd_name, missing)
        else:
            return None
        self.add_command(command, cmd_name)
        return command


@click.group(cls=_Commands)
@click.version_option(package_name="loyalty-journeys")
def main() -> None:
    """Loyalty members, points, journeys, messages and CRM sync."""


def _missing_extra(name: str, reason: ImportError) -> click.Command:
    """A stand-in for a command whose extra is not installed: one line on how to get it."""

    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        from cli.context import fail

        fail(
            f"`loyalty {name}` needs the {name} extra ({reason.name or reason}); "
            f"install it with: pip install 'loyalty-journeys[{name}]'"
        )

    return command


if __name__ == "__main__":
    main()
