"""What a `loyalty` process imports before its command runs.

Every process start pays for the modules it imports (about two seconds of CPU for the
whole program): a command imports its own module only, and `loyalty worker` must not
import Dramatiq before it has read WORKER_TIMEOUT_MS, which Dramatiq reads once, when
it is first imported.
"""

from __future__ import annotations

import subprocess
import sys

import click

import cli


def _imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running `code`."""
    script = (
        f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_the_worker_command_is_resolved_without_dramatiq() -> None:
    modules = _imported_after(
        "import cli, click\n"
        "with click.Context(cli.main) as ctx:\n"
        "    assert cli.main.get_command(ctx, 'worker').name == 'worker'"
    )
    assert "click" in modules and "loyalty" in modules
    assert "dramatiq" not in modules


def test_importing_the_command_line_imports_no_command() -> None:
    modules = _imported_after("import cli")
    assert not modules & {"dramatiq", "sqlalchemy", "alembic", "automations", "sandbox", "web"}


def test_every_command_is_listed_and_resolves() -> None:
    with click.Context(cli.main) as ctx:
        names = cli.main.list_commands(ctx)
        assert {*cli.COMMANDS, "sandbox"} <= set(names)
        for name in names:
            command = cli.main.get_command(ctx, name)
            assert isinstance(command, click.Command), name
        assert cli.main.get_command(ctx, "no-such-command") is None
