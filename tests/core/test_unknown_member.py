"""Every command that names a member answers an unknown one in one line, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from automations.versions import publish
from cli import main
from loyalty.app import App

UNKNOWN = "nobody-42"
EXPECTED = (
    f"error: no member with external_id '{UNKNOWN}'; "
    "import the member first (loyalty members import)"
)


@pytest.mark.parametrize(
    "args",
    [
        ["journeys", "preview", "birthday_bonus", "--member", UNKNOWN],
        ["messages", "list", "--member", UNKNOWN],
        ["messages", "send-test", "--template", "birthday_bonus", "--to", "a@example.com",
         "--member", UNKNOWN],
        ["points", "balance", UNKNOWN],
        ["points", "history", UNKNOWN],
        ["points", "adjust", UNKNOWN, "5", "--reason", "goodwill"],
        ["members", "erase", UNKNOWN],
        ["events", "emit", "order.completed", "--member", UNKNOWN, "--data",
         '{"order_id": "1", "total": "10", "currency": "EUR"}'],
    ],
    ids=lambda args: " ".join(args[:2]),
)  # fmt: skip
def test_an_unknown_member_is_one_line(app: App, args: list[str]) -> None:
    publish(app)
    env = {
        "DATABASE_URL": app.database.url,
        "OUTBOX_DIR": str(app.settings.outbox_dir),
        "JOURNEYS_DIR": str(app.settings.journeys_dir.resolve()),
    }

    result = CliRunner().invoke(main, args, env=env)

    assert result.exit_code in (1, 2), result.output
    assert result.stderr.splitlines() == [EXPECTED]
    assert result.exception is None or isinstance(result.exception, SystemExit)
