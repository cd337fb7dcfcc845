"""The simulator's progress line: on stderr when asked (or on a terminal), never in the output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from loyalty.app import App
from tests.engine.helpers import journey_folder
from tests.engine.test_simulate import NUDGE, TEMPLATES, env
from tests.factories import make_member

PERIOD = ["journeys", "simulate", "--from", "2026-04-01", "--to", "2026-04-03", "--json"]


def test_progress_goes_to_stderr_up_to_the_end_and_leaves_the_json_alone(
    app: App, tmp_path: Path
) -> None:
    folder = journey_folder(tmp_path, {"nudge": NUDGE}, TEMPLATES)
    make_member(app, external_id="ann")

    shown = CliRunner().invoke(main, [*PERIOD, "--progress"], env=env(app, folder))
    quiet = CliRunner().invoke(main, PERIOD, env=env(app, folder))

    assert shown.exit_code == 0, shown.output
    lines = shown.stderr.split("\r")
    assert lines[1].startswith("simulating [") and "2026-04-01 00:00Z" in lines[1]
    assert "100.0%" in lines[-1] and lines[-1].endswith("\n")
    assert json.loads(shown.stdout) == json.loads(quiet.stdout)
    assert quiet.stderr == ""  # not a terminal, and not asked
