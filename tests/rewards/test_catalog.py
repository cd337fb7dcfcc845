"""The rewards catalog: the shipped one is valid, a broken one shows every problem and where."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from loyalty.rewards import FixedAmount, check_catalog, json_schema, parse_validity
from loyalty.settings import load_settings
from tests.rewards.support import CATALOG, journeys_dir

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("bronze", "silver", "gold")

BROKEN = """\
rewards:
  - id: ten_off
    name: {en: "x"}
    cost: -5
    kind: fixed_amount
    value: {pln: 10}
    valid_for: 30 days
  - id: ten_off
    name: {en: "y"}
    cost: 10
    kind: percentage
    percentage: 10
    min_tier: platinum
  - id: odd
    name: {en: "z"}
    cost: 10
    kind: voucher
  - id: extra
    cost: 10
    kind: free_shipping
    colour: red
"""


def test_the_shipped_catalog_is_valid_and_its_schema_is_current() -> None:
    catalog, problems = check_catalog(ROOT / "journeys" / "rewards.yaml", TIERS)
    assert problems == []
    assert catalog is not None and catalog.rewards
    shipped = json.loads((ROOT / "journeys" / "rewards.schema.json").read_text())
    assert shipped == json_schema(), "regenerate journeys/rewards.schema.json from loyalty.rewards"


def test_a_catalog_reads_into_rewards(tmp_path: Path) -> None:
    catalog, problems = check_catalog(journeys_dir(tmp_path) / "rewards.yaml", TIERS)
    assert problems == [] and catalog is not None
    ten_off = catalog.get("ten_off")
    assert isinstance(ten_off, FixedAmount)
    assert (ten_off.cost, str(ten_off.value["EUR"]), ten_off.validity.days) == (100, "2.5", 30)
    assert ten_off.display_name("pl-PL") == "10 zł rabatu"


def test_every_problem_is_reported_at_once_with_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rewards.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    catalog, problems = check_catalog(path, TIERS)
    assert catalog is None
    assert [(p.line, p.column) for p in problems] == [
        (4, 11),
        (6, 12),
        (7, 16),
        (8, 9),
        (13, 15),
        (17, 11),
        (18, 5),
        (21, 5),
    ]
    text = "\n".join(map(str, problems))
    for words in (
        "`cost`: Input should be greater than 0",
        "`pln` is not an ISO 4217 code",
        "expected a duration such as 30d",
        "reward id `ten_off` is also used by reward 1",
        "unknown tier `platinum`; tiers are bronze, silver, gold",
        "`kind` must be one of fixed_amount, percentage, free_shipping",
        "`name` is required",
        "unknown key `colour`",
    ):
        assert words in text
    assert str(problems[0]).startswith(f"{path}:4:11: ")


def test_broken_yaml_is_one_problem_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "rewards.yaml"
    path.write_text("rewards:\n  - id: a\n   cost: 1\n", encoding="utf-8")
    catalog, problems = check_catalog(path, TIERS)
    assert catalog is None and len(problems) == 1 and problems[0].line == 3


def test_validity_is_a_duration() -> None:
    assert parse_validity("2w").days == 14
    assert parse_validity("12h").total_seconds() == 12 * 3600


def test_loyalty_rewards_validate_and_list(tmp_path: Path, monkeypatch: object) -> None:
    folder = journeys_dir(tmp_path, CATALOG)
    env = {"JOURNEYS_DIR": str(folder), "DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}"}
    runner = CliRunner()
    ok = runner.invoke(main, ["rewards", "validate"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "3 reward(s), no problems" in ok.output
    listed = runner.invoke(main, ["rewards", "list"], env=env)
    assert listed.exit_code == 0
    assert "ten_off" in listed.output and "10 PLN, 2.5 EUR off" in listed.output
    assert "tier gold+" in listed.output and "2 per member" in listed.output
    (folder / "rewards.yaml").write_text(BROKEN, encoding="utf-8")
    bad = runner.invoke(main, ["rewards", "validate"], env=env)
    assert bad.exit_code == 1
    assert f"{folder / 'rewards.yaml'}:8:9: reward id `ten_off`" in bad.output
    assert "error: 8 problem(s)" in bad.output


def test_the_rewards_file_is_not_read_as_a_journey(tmp_path: Path) -> None:
    from automations.definition.validate import journey_files

    folder = journeys_dir(tmp_path)
    assert journey_files([folder]) == []
    assert load_settings(journeys_dir=folder).journeys_dir == folder
