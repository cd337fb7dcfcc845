from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automations.definition.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30min", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1h30min", timedelta(hours=1, minutes=30)),
        ("1mo", timedelta(days=30)),
        ("1y2mo", timedelta(days=365 + 60)),
        ("45s", timedelta(seconds=45)),
        (" 3D ", timedelta(days=3)),
        ("P3D", timedelta(days=3)),
        ("P1W", timedelta(weeks=1)),
        ("PT2H", timedelta(hours=2)),
        ("PT30M", timedelta(minutes=30)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("p2dt1m", timedelta(days=2, minutes=1)),
    ],
)
def test_parses_compact_and_iso_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3 days", '"3 days" is not a duration'),
        ("", '"" is not a duration'),
        ("d3", '"d3" is not a duration'),
        ("3h2d", '"3h2d" is not a duration'),
        ("P", '"P" is not a duration'),
        ("PT", '"PT" is not a duration'),
        ("P1M", '"P1M" uses years or months, which have no fixed length'),
        ("P1Y2D", '"P1Y2D" uses years or months, which have no fixed length'),
        ("0d", '"0d" is zero'),
        ("PT0S", '"PT0S" is zero'),
        ("99999d", '"99999d" is too long'),
        ("1mo1y", '"1mo1y" is not a duration'),
    ],
)
def test_rejects_with_a_message_and_a_hint(text: str, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert caught.value.message == message
    assert caught.value.hint


durations = st.integers(min_value=1, max_value=36600 * 86400).map(lambda s: timedelta(seconds=s))


@given(durations)
def test_format_then_parse_is_the_identity(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(st.integers(0, 50), st.integers(0, 300), st.integers(0, 100), st.integers(0, 1000))
def test_iso_and_compact_forms_agree(weeks: int, days: int, hours: int, minutes: int) -> None:
    if not (weeks or days or hours or minutes):
        return
    iso = f"P{weeks}W{days}DT{hours}H{minutes}M"
    compact = f"{weeks}w{days}d{hours}h{minutes}min"
    assert parse_duration(iso) == parse_duration(compact)


@given(st.text(max_size=12))
def test_any_text_either_parses_positive_or_raises_duration_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except DurationError:
        return
    assert value > timedelta(0)


@pytest.mark.parametrize("text", ["1m", "1M", "2h30m", "30 m"])
def test_a_bare_m_is_ambiguous_and_refused(text: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    if text != "30 m":
        assert "could mean minutes or months" in caught.value.message
        assert caught.value.hint.startswith("write ") and "min or " in caught.value.hint


def test_stored_versions_still_read_m_as_minutes() -> None:
    # Versions published before `min` were written with `m` for minutes.
    assert parse_duration("1h30m", minutes_as_m=True) == timedelta(hours=1, minutes=30)
