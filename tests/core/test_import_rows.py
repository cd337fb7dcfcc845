"""CSV rows parsed in one pass come out as the field-by-field parser makes them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.import_format import new_member
from loyalty.import_parsers import Rows, parse_batch
from loyalty.member_rows import parse_rows

HEADER = [
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "birthday",
    "email_consent",
    "sms_consent",
    "referred_by_code",
    "segment",
]
#: Cells of every kind a column may meet: valid, invalid, blank, padded, hostile.
CELLS = {
    "external_id": ["m-1", " m-2 ", "", "x" * 256, "m\t3", "m\\4"],
    "email": ["a@example.com", " B@Example.com ", "not-an-email", "", "a@b@c", "ä@example.com"],
    "phone": ["+48601234567", "601 234 567", "+48 601-234-567", "12", "+99912", "", "abc"],
    "first_name": ["Anna", "  Zoë ", "", "n" * 256, "tab\there", "back\\slash", "new\nline"],
    "last_name": ["Nowak", "", "a\x00b", "\udcff"],
    "locale": ["pl", "PL_pl", "en-GB", "klingon", ""],
    "time_zone": ["Europe/Warsaw", "Mars/Olympus", ""],
    "birthday": ["1990-02-28", "--02-29", "1990-02-30", "2990-01-01", "", "tomorrow"],
    "email_consent": ["yes", "No", "granted", "maybe", ""],
    "sms_consent": ["1", "0", "", "opt-out", "?"],
    "referred_by_code": ["abc", "", "c" * 33],
    "segment": ["vip", "", " café ", 'quote"d', "tab\tbed", "x" * 70_000],
}


def both_ways(rows: Rows, header: list[str], backend: str) -> None:
    # When the rows are parsed as a batch (plain rows in one pass) and one by one
    parsed, news = parse_batch(rows, header, "PL", backend)
    expected = parse_rows(rows, "PL", header)

    # Then each row's outcome, and each kept row's columns for the driver, are the same
    assert parsed == expected
    assert news == [
        None if fields is None else new_member(backend, *fields[:4], fields[5])
        for _, _, fields, _, _ in expected
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(*(st.sampled_from(CELLS[name]) for name in HEADER)).map(list),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(["sqlite", "postgresql"]),
)
def test_any_mix_of_cells_parses_the_same_in_one_pass(lines: list[list[str]], backend: str) -> None:
    both_ways(list(enumerate(lines, start=2)), HEADER, backend)


def test_short_lines_repeated_and_missing_columns_parse_the_same_in_one_pass() -> None:
    # Given a header naming a column twice and leaving out the phone, and a short line
    header = ["segment", "external_id", "email", "segment", "first_name"]
    rows: Rows = [
        (2, ["a", "m-1", "a@example.com", "b", "Ann"]),
        (3, ["a", "m-2", "b@example.com"]),
        (4, ["", "m-3", "", "", ""]),
    ]
    for backend in ("sqlite", "postgresql"):
        both_ways(rows, header, backend)
