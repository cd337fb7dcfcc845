"""`validate` checks the marketers' system texts like templates: file, line, column, fix."""

from __future__ import annotations

from pathlib import Path

from automations.definition.validate import validate_paths

JOURNEY = """id: hello
name: Hello
status: active
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - {id: text, type: send_sms, template: hello}
"""


def folder_with(tmp_path: Path, locale: str, texts: str) -> Path:
    folder = tmp_path / "journeys"
    (folder / "templates" / "en").mkdir(parents=True)
    (folder / "hello.yaml").write_text(JOURNEY, encoding="utf-8")
    (folder / "templates" / "en" / "hello.sms.liquid").write_text("Hi!", encoding="utf-8")
    system = folder / "templates" / "_system" / locale
    system.mkdir(parents=True)
    (system / "texts.yaml").write_text(texts, encoding="utf-8")
    return folder


def problems(folder: Path) -> list[str]:
    return [str(p).removeprefix(f"{folder}/") for p in validate_paths([folder])]


def test_good_overrides_pass(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        "pl",
        "unsubscribe:\n"
        "  button: Wypisz mnie\n"
        "  points:\n"
        "    one: '{{ points }} punkt'\n"
        "    other: '{{ points }} punktów'\n"
        "tiers:\n"
        "  gold: Złoty\n",
    )
    assert problems(folder) == []


def test_each_problem_names_its_line_and_the_fix(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        "pl",
        "unsubscribe:\n"
        "  title: '{{ program }}: {{ member.first_name }}'\n"
        "  dne: x\n"
        "  points:\n"
        "    several: x\n"
        "sms:\n"
        "  stop: '{{ program }: ok'\n"
        "  opt_out: {one: x, other: y}\n"
        "tiers:\n"
        "  platinum: Platynowy\n",
    )
    texts = "templates/_system/pl/texts.yaml"
    assert problems(folder) == [
        f"{texts}:2:29: unknown variable `member` (use one of: program)",
        f"{texts}:3:3: unknown text `unsubscribe.dne` (did you mean `unsubscribe.done`?)",
        f"{texts}:4:3: `unsubscribe.points` needs an `other` form (the form for any other number)",
        f"{texts}:5:5: unknown plural form `several` "
        "(plural forms: zero, one, two, few, many, other)",
        f"{texts}:7:10: Liquid syntax: expected '}}}}', found end of file",
        f"{texts}:8:3: `sms.opt_out` counts nothing: it has no plural forms (write one text)",
        f"{texts}:10:3: unknown tier `platinum` (use one of: bronze, silver, gold)",
    ]


def test_yaml_errors_and_stray_folders_are_reported(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, "polish", "sms: [\n")
    (folder / "templates" / "_system" / "pl").mkdir()
    (folder / "templates" / "_system" / "pl" / "texts.yaml").write_text(
        "sms:\n  stop: [unclosed\n", encoding="utf-8"
    )
    found = problems(folder)
    assert found[0].startswith("templates/_system/pl/texts.yaml:3:1: invalid YAML")
    assert found[1] == (
        "templates/_system/polish:1:1: `polish` is not a locale (name it like en, pl or pl-PL)"
    )
    assert len(found) == 2
