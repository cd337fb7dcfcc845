"""`loyalty journeys list` shows the journeys paused in the console, by whom and when."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from starlette.testclient import TestClient

from cli import main
from loyalty.app import App
from tests.console.support import make_user, post_form, sign_in
from tests.console.test_pages import CLUB, TEMPLATES, THANKS
from tests.engine.helpers import journey_folder, published


def listing(app: App, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["journeys", "list", *args], env={"DATABASE_URL": app.database.url}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_journey_paused_in_the_console_is_listed_as_paused_with_who_and_when(
    console: App, client: TestClient, tmp_path: Path
) -> None:
    # Given two active journeys, one of which a marketer paused in the console
    published(console, journey_folder(tmp_path, {"thanks": THANKS, "club": CLUB}, TEMPLATES))
    make_user(console, "mark@example.com", "marketer")
    sign_in(client, "mark@example.com")
    assert post_form(client, "/console/journeys/thanks/pause").status_code == 303

    # When the journeys are listed
    lines = {line.split()[0]: line for line in listing(console).splitlines()[1:]}
    rows = {row["id"]: row for row in json.loads(listing(console, "--json"))}

    # Then the paused one says so, by whom and since when; the other is active
    assert lines["thanks"].split()[1] == "paused"
    assert lines["thanks"].endswith("by mark@example.com at 2026-03-10T12:00Z")
    assert lines["club"].split()[1] == "active" and lines["club"].endswith("  -")
    assert (rows["thanks"]["status"], rows["thanks"]["file_status"]) == ("paused", "active")
    assert rows["thanks"]["paused_by"] == "mark@example.com"
    assert rows["thanks"]["paused_at"].startswith("2026-03-10T12:00")
    assert (rows["club"]["status"], rows["club"]["paused_at"]) == ("active", None)

    # And once resumed it is listed as active again
    assert post_form(client, "/console/journeys/thanks/resume").status_code == 303
    resumed = {line.split()[0]: line for line in listing(console).splitlines()[1:]}
    assert resumed["thanks"].split()[1] == "active" and resumed["thanks"].endswith("  -")
