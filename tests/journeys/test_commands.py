"""``loyalty journeys validate`` as a marketer runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.journeys import journeys

from .factories import journey, template, write


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(journeys, ["validate", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_a_valid_folder_exits_0_with_a_one_line_summary(tmp_path: Path) -> None:
    template(tmp_path, "en", "hello", "email")
    journey(tmp_path, "one")
    journey(tmp_path, "two")

    code, out, _ = run(str(tmp_path))

    assert (code, out) == (0, "2 journeys valid\n")


def test_problems_are_printed_as_file_line_column_and_exit_1(tmp_path: Path) -> None:
    template(tmp_path, "en", "hello", "email")
    journey(tmp_path, "one")
    broken = write(tmp_path, "two.yaml", "id: two\nname: [\n")

    code, out, err = run(str(tmp_path))

    assert code == 1
    assert out == (
        f"{broken}:3:1: invalid YAML: while parsing a flow node, expected the node content, "
        "but found '<stream end>' (check the indentation and quoting around this spot)\n"
    )
    assert err == "1 error in 1 file; 1 of 2 journeys valid\n"


def test_warnings_do_not_fail_validation(tmp_path: Path) -> None:
    template(tmp_path, "en", "hello", "email")
    path = journey(tmp_path, "one")
    path.write_text(
        path.read_text() + "  - id: bye\n    type: exit\n  - id: never\n    type: exit\n"
    )

    code, out, _ = run(str(path))

    assert code == 0
    assert out.splitlines() == [
        f"{path}:14:9: warning: step `never` is never reached "
        "(refer to it from another step, or remove it)",
        "1 journey valid, 1 warning",
    ]


def test_the_default_folder_comes_from_journeys_dir(tmp_path: Path) -> None:
    template(tmp_path, "en", "hello", "email")
    journey(tmp_path, "one")

    code, out, _ = run(env={"JOURNEYS_DIR": str(tmp_path)})

    assert (code, out) == (0, "1 journey valid\n")


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nope"))

    assert code == 1
    assert "no such file or folder" in err


@pytest.mark.parametrize("name", ["one.yaml", "one.yml"])
def test_single_files_use_the_templates_folder_next_to_them(tmp_path: Path, name: str) -> None:
    template(tmp_path, "en", "hello", "email")
    path = journey(tmp_path, "one")
    path.rename(tmp_path / name)

    code, out, _ = run(str(tmp_path / name))

    assert (code, out) == (0, "1 journey valid\n")


def test_an_explicit_templates_folder(tmp_path: Path) -> None:
    template(tmp_path / "shared", "en", "hello", "email")
    journey(tmp_path / "defs", "one")

    code, _, _ = run(str(tmp_path / "defs"))
    code_with, out_with, _ = run(
        str(tmp_path / "defs"), "--templates", str(tmp_path / "shared" / "templates")
    )

    assert code == 1
    assert (code_with, out_with) == (0, "1 journey valid\n")
