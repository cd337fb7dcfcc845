"""Whatever a marketer types, validation answers with problems, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automations.definition.validate import check_file

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "journeys").glob("*.yaml"))]
TOKENS = [":", "-", " ", "\n", "{", "}", "[", "]", "'", '"', "type", "id", "x", "3d", "09:00", "#"]


@st.composite
def edited_journeys(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 12)))
        text = text[:start] + draw(st.sampled_from(["", *TOKENS])) + text[end:]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_journeys())
def test_edited_files_give_problems_with_positions_not_exceptions(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "edited.yaml"
        path.write_text(text, encoding="utf-8")

        journey, problems = check_file(path, ROOT / "journeys" / "templates")

    assert journey is not None or problems
    for problem in problems:
        assert problem.line >= 1 and problem.column >= 1
        assert problem.message
