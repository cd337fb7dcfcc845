"""``loyalty journeys validate`` as a marketer runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.journeys import journeys

from .factories import MINIMAL, journey, template, write


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


def test_hostile_files_each_get_one_problem_and_the_good_journey_stays_valid(
    tmp_path: Path,
) -> None:
    # Given a good journey beside a 5,000-deep condition, a YAML alias bomb and a template
    # that tries to load another file
    template(tmp_path, "en", "hello", "email")
    journey(tmp_path, "good")
    deep = "{not: " * 5000 + "{field: tier, equals: gold}" + "}" * 5000
    deep_file = write(tmp_path, "deep.yaml", MINIMAL.format(id="deep") + f"audience: {deep}\n")
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        laughs.append(
            f"l{n}: &l{n} [" + ", ".join([f"*{'a' if n == 1 else f'l{n - 1}'}"] * 9) + "]"
        )
    bomb = write(tmp_path, "bomb.yaml", "\n".join(laughs) + "\n" + MINIMAL.format(id="bomb"))
    template(tmp_path, "en", "partial", "email", "---\nsubject: Hi\n---\n{% render 'footer' %}\n")
    journey(tmp_path, "partial", MINIMAL.format(id="partial").replace("hello", "partial"))

    # When the folder is validated
    code, out, err = run(str(tmp_path))

    # Then each bad file is named with a clear reason, and the good one counts as valid
    assert code == 1
    assert f"{bomb}:" in out and "expands to more than 100,000 values" in out
    assert f"{deep_file}:" in out and "nests too deeply" in out
    assert "partial `footer` does not exist" in out
    assert "1 of 4 journeys valid" in err
