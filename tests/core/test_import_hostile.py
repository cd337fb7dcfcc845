"""Hostile member files: a bad row is never more than that row, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

import loyalty.import_files
from loyalty.app import App
from loyalty.db import Database
from loyalty.importer import ImportReport, Problem, import_members
from loyalty.member_rows import MAX_CELL
from loyalty.models import Member
from tests.factories import make_member

HEADER = b"external_id,email,phone,first_name,last_name,favourite_store\n"


def members(app: App) -> dict[str, Member]:
    with app.database.sessions() as session:
        return {m.external_id: m for m in session.scalars(select(Member))}


def problems(found: list[Problem]) -> list[tuple[int, str]]:
    return [(p.row, p.field) for p in found]


def run(app: App, path: Path) -> ImportReport:
    return import_members(app.database, path, app.settings, app.clock)


def test_a_byte_that_is_not_utf8_rejects_only_its_row_in_csv(app: App, tmp_path: Path) -> None:
    # Given a UTF-8 file with one row pasted from a cp1250 export and a quoted multi-line cell
    path = tmp_path / "members.csv"
    path.write_bytes(
        HEADER
        + b"m-1,a@example.com,,Anna,,\n"
        + b"m-2,b@example.com,,"
        + "Łukasz".encode("cp1250")
        + b",,\n"
        + 'm-3,c@example.com,,Zoë,,"Kraków\nFloriańska 1"\n'.encode()
        + b"m-4,d@example.com,,Dan,,\xff\n"
    )

    report = run(app, path)

    # Then each undecodable row is rejected by field, and the rest land intact
    assert sorted(members(app)) == ["m-1", "m-3"]
    assert problems(report.rejected) == [(3, "first_name"), (6, "favourite_store")]
    assert all("not UTF-8" in p.reason for p in report.rejected)
    assert [p.external_id for p in report.rejected] == ["m-2", "m-4"]
    assert members(app)["m-3"].first_name == "Zoë"
    assert members(app)["m-3"].attributes == {"favourite_store": "Kraków\nFloriańska 1"}
    assert report.rows == 4


def test_a_byte_that_is_not_utf8_rejects_only_its_line_in_jsonl(app: App, tmp_path: Path) -> None:
    path = tmp_path / "members.jsonl"
    path.write_bytes(
        b'{"external_id": "j-1", "first_name": "Ann"}\n'
        b'{"external_id": "j-2", "last_name": "Nov\xe1k"}\n'
        b'{"external_id": "j-3", \xff: 1}\n'
        b'{"external_id": "j-4", "first_name": "\xc5\x81ucja"}\n'
    )

    report = run(app, path)

    assert sorted(members(app)) == ["j-1", "j-4"]
    assert problems(report.rejected) == [(2, "last_name"), (3, "*")]
    assert "not UTF-8" in report.rejected[0].reason
    assert members(app)["j-4"].first_name == "Łucja"


def test_an_oversized_cell_rejects_only_its_row(app: App, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    huge = "x" * 10_000_000
    path.write_text(
        HEADER.decode()
        + "m-1,a@example.com,,Ann,,\n"
        + f"m-2,b@example.com,,Bob,,{huge}\n"
        + f'm-3,c@example.com,,"{huge}",,\n'
        + "m-4,d@example.com,,Dan,,Gdańsk\n"
    )

    report = run(app, path)

    assert sorted(members(app)) == ["m-1", "m-4"]
    assert problems(report.rejected) == [(3, "favourite_store"), (4, "first_name")]
    assert all(f"longer than {MAX_CELL} characters" in p.reason for p in report.rejected)
    assert all(huge[:100] not in p.reason for p in report.rejected)


@pytest.fixture
def small_line_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    before = csv.field_size_limit()
    monkeypatch.setattr(loyalty.import_files, "MAX_LINE", 1000)
    yield
    assert csv.field_size_limit() == before  # the process-wide limit is put back


def test_a_cell_over_the_readers_limit_loses_only_its_line(
    app: App, tmp_path: Path, small_line_limit: None
) -> None:
    path = tmp_path / "members.csv"
    path.write_text(
        HEADER.decode()
        + "m-1,a@example.com,,Ann,,\n"
        + f"m-2,b@example.com,,Bob,,{'y' * 5000}\n"
        + "m-3,c@example.com,,Cy,,\n"
    )

    report = run(app, path)

    assert sorted(members(app)) == ["m-1", "m-3"]
    assert problems(report.rejected) == [(3, "*")]
    assert "field larger than field limit" in report.rejected[0].reason


def test_nul_characters_reject_their_row_naming_the_field(app: App, tmp_path: Path) -> None:
    csv_path = tmp_path / "members.csv"
    csv_path.write_text(
        HEADER.decode()
        + "m-1,a@example.com,,Ann,,\n"
        + "m-2,b@example.com,,Bo\x00b,,\n"
        + "m-3\x00,c@example.com,,,,\n"
        + "m-4,d@example.com,,,,store\x00\n"
        + "m-5,e@example.com,,,,\n"
    )

    report = run(app, csv_path)

    assert sorted(members(app)) == ["m-1", "m-5"]
    assert problems(report.rejected) == [
        (3, "first_name"),
        (4, "external_id"),
        (5, "favourite_store"),
    ]
    assert all("NUL" in p.reason for p in report.rejected)
    assert report.rejected[1].external_id is None


def test_json_values_no_database_would_store_reject_their_line(app: App, tmp_path: Path) -> None:
    # Given one good member and one line per hostile JSON shape, then another good one
    lines = [
        '{"external_id": "j-1", "vip": true, "visits": 123456789012345678901234567890}',
        '{"external_id": "j-2", "note": "a\\u0000b"}',
        '{"external_id": "j-3", "prefs": {"k\\u0000": 1}}',
        '{"external_id": "j-4", "prefs": ["\\ud800"]}',
        '{"external_id": "j-5", "score": NaN}',
        '{"external_id": "j-6", "score": 1e999}',
        '{"external_id": "j-7", "n": ' + "9" * 5000 + "}",
        '{"external_id": "j-8", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"external_id": "j-9", "deep": ' + "[" * 40 + "]" * 40 + "}",
        '{"external_id": "j-10", "k\\u0000": 1}',
        '{"external_id": "j-11", "first_name": "Ann", "bag": '
        + json.dumps(["z" * 1000] * 100)
        + "}",
        '{"external_id": {"nested": true}}',
        '{"external_id": "j-12", "first_name": "Lee"}',
    ]
    path = tmp_path / "members.jsonl"
    path.write_text("\n".join(lines) + "\n")

    report = run(app, path)

    assert sorted(members(app)) == ["j-1", "j-12"]
    assert members(app)["j-1"].attributes["visits"] == 123456789012345678901234567890
    assert problems(report.rejected) == [
        (2, "note"),
        (3, "prefs"),
        (4, "prefs"),
        (5, "score"),
        (6, "score"),
        (7, "*"),
        (8, "*"),
        (9, "deep"),
        (10, "*"),
        (11, "bag"),
        (12, "external_id"),
    ]


def test_invalid_optional_fields_keep_the_member_and_warn(app: App, tmp_path: Path) -> None:
    # Given a member we already know with a good phone and email
    make_member(app, external_id="m-1", phone="+48601234567", email="old@example.com")
    path = tmp_path / "members.csv"
    path.write_text(
        "external_id,email,phone,first_name,birthday,locale,time_zone,sms_consent\n"
        "m-1,new@example.com,12,Anna,1990-13-01,pl,Europe/Warsaw,yes\n"
        "m-2,anna@@example,+48 601 234 568,,1991-02-03,english,Mars/Base,perhaps\n"
    )

    report = run(app, path)

    # Then both members are there; only the invalid fields are left out, with a warning each
    known, new = members(app)["m-1"], members(app)["m-2"]
    assert (known.email, known.phone, known.first_name, known.birthday) == (
        "new@example.com",
        "+48601234567",
        "Anna",
        None,
    )
    assert known.sms_consent is True
    assert (new.email, new.phone, new.birthday, new.locale, new.time_zone, new.sms_consent) == (
        None,
        "+48601234568",
        "1991-02-03",
        None,
        None,
        None,
    )
    assert report.rejected == []
    assert (report.created, report.updated) == (1, 1)
    assert problems(report.warnings) == [
        (2, "phone"),
        (2, "birthday"),
        (3, "email"),
        (3, "locale"),
        (3, "time_zone"),
        (3, "sms_consent"),
    ]


def test_reasons_never_quote_personal_values(app: App, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text(
        "external_id,email,phone,first_name,last_name,birthday,locale\n"
        f"m-1,jan.kowalski@@example.com,KOWALSKI,{'J' * 300},{'K' * 300},1999-02-29,xx-yyy\n"
        "m-2,olenka@exa mple.com,+1 999,,,2999-01-01,\n"
    )

    report = run(app, path)

    reasons = " ".join(f"{p.field}: {p.reason}" for p in report.warnings + report.rejected)
    for personal in ("kowalski", "KOWALSKI", "JJJJ", "KKKK", "1999-02-29", "olenka", "exa mple"):
        assert personal not in reasons
    assert "2999" not in reasons and "+1 999" not in reasons
    assert "'xx-yyy'" in reasons  # a locale is no personal data: it is quoted to help
    assert {p.field for p in report.warnings} >= {"email", "phone", "first_name", "last_name"}
    assert sorted(members(app)) == ["m-1", "m-2"]


@pytest.fixture
def refuse_name(database: Database) -> Iterator[str]:
    """The database refuses one first name, as it might refuse a value we cannot foresee."""
    refused = "Refused"
    with database.engine.begin() as connection:
        if database.is_sqlite:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_name BEFORE INSERT ON members "
                    f"WHEN NEW.first_name = '{refused}' BEGIN SELECT RAISE(ABORT, 'no'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "ALTER TABLE members ADD CONSTRAINT refuse_name "
                    f"CHECK (first_name IS DISTINCT FROM '{refused}')"
                )
            )
    yield refused
    if not database.is_sqlite:
        with database.engine.begin() as connection:
            connection.execute(text("ALTER TABLE members DROP CONSTRAINT refuse_name"))


def test_a_row_the_database_refuses_is_rejected_alone(
    app: App, tmp_path: Path, refuse_name: str
) -> None:
    path = tmp_path / "members.csv"
    path.write_text(
        "external_id,email,first_name,email_consent\n"
        "m-1,a@example.com,Ann,yes\n"
        f"m-2,b@example.com,{refuse_name},yes\n"
        "m-3,c@example.com,Cy,no\n"
    )

    report = run(app, path)

    assert sorted(members(app)) == ["m-1", "m-3"]
    assert (report.created, report.rows) == (2, 3)
    assert problems(report.rejected) == [(3, "*")]
    (refusal,) = report.rejected
    assert refusal.external_id == "m-2"
    assert refusal.reason.startswith("the database refused the row (")
    for leaked in (refuse_name, "b@example.com", "INSERT", "members"):
        assert leaked not in refusal.reason
    assert members(app)["m-3"].email_consent is False
