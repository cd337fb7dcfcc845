from __future__ import annotations

import pytest

from loyalty.yaml_source import Location, YamlError, parse_yaml


def test_scalars_follow_yaml_1_2_so_times_and_country_codes_stay_text() -> None:
    doc = parse_yaml("at: 10:30\ncountry: NO\nday: 2026-01-01\nn: 3\nx: 1.5\nok: true\nz: null\n")

    assert doc.data == {
        "at": "10:30",
        "country": "NO",
        "day": "2026-01-01",
        "n": 3,
        "x": 1.5,
        "ok": True,
        "z": None,
    }


def test_every_key_and_value_has_a_one_based_location() -> None:
    doc = parse_yaml("trigger:\n  type: date\nsteps:\n  - id: a\n    type: exit\n")

    assert doc.keys[("trigger", "type")] == Location(2, 3)
    assert doc.values[("trigger", "type")] == Location(2, 9)
    assert doc.values[("steps", 0)] == Location(4, 5)
    assert doc.values[("steps", 0, "type")] == Location(5, 11)


def test_locate_skips_path_segments_that_are_not_in_the_data() -> None:
    doc = parse_yaml("steps:\n  - id: a\n    type: award_points\n    amount: x\n")

    assert doc.locate(("steps", 0, "award_points", "amount")) == Location(4, 13)
    assert doc.locate(("steps", 0, "award_points", "reason")) == Location(2, 5)


def test_duplicate_keys_are_an_error_at_the_second_key() -> None:
    with pytest.raises(YamlError) as caught:
        parse_yaml("id: a\nname: x\nid: b\n")

    assert caught.value.message == "duplicate key `id` (first at line 1)"
    assert caught.value.location == Location(3, 1)


def test_syntax_errors_carry_the_parser_position() -> None:
    with pytest.raises(YamlError) as caught:
        parse_yaml("id: a\nsteps:\n  - id: b\n   type: exit\n")

    assert caught.value.message == (
        "invalid YAML: while parsing a block collection, expected <block end>, "
        "but found '<block mapping start>'"
    )
    assert caught.value.location == Location(4, 4)
    assert caught.value.hint == "check the indentation and quoting around this spot"


def test_python_tags_are_refused() -> None:
    with pytest.raises(YamlError) as caught:
        parse_yaml("x: !!python/name:os.system\n")

    assert caught.value.message == "unsupported YAML tag tag:yaml.org,2002:python/name:os.system"
    assert caught.value.location == Location(1, 4)
