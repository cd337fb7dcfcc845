from __future__ import annotations

import json
from pathlib import Path

from automations.definition.schema import main, render_schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_models() -> None:
    committed = (ROOT / "journeys" / "schema.json").read_text(encoding="utf-8")

    assert committed == render_schema(), (
        "journeys/schema.json is stale: run `python -m automations.definition.schema`"
    )


def test_the_module_writes_the_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"

    assert main([str(target)]) == 0

    schema = json.loads(target.read_text(encoding="utf-8"))
    assert schema["title"] == "Journey"
    assert set(schema["properties"]["steps"]["items"]["discriminator"]["mapping"]) == {
        "award_points",
        "send_email",
        "send_sms",
        "wait",
        "branch",
        "split",
        "update_crm",
        "send_survey",
        "http",
        "crm_task",
        "exit",
    }
