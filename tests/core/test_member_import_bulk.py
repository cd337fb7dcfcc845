"""Member import in bulk: unchanged rows skipped, consents logged once, per-row refusals
in a batch, parsing processes, erased members, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

import loyalty.import_backends
import loyalty.import_writer
import loyalty.importer
import loyalty.referrals
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database, upgrade
from loyalty.erasure import erase_member
from loyalty.import_format import Writes
from loyalty.importer import ERASED, ImportReport, import_members
from loyalty.models import Consent, Member
from tests.conftest import make_settings
from tests.factories import make_member, write_csv

HEADER = "external_id,email,phone,first_name,email_consent,sms_consent,favourite_store"


def run(app: App, path: Path, *, workers: int = 1) -> ImportReport:
    return import_members(app.database, path, app.settings, app.clock, workers=workers)


def members(app: App) -> dict[str, Member]:
    with app.database.sessions() as session:
        return {m.external_id: m for m in session.scalars(select(Member))}


def consents(app: App) -> list[tuple[str, str, bool]]:
    with app.database.sessions() as session:
        rows = session.execute(
            select(Member.external_id, Consent.channel, Consent.granted)
            .join(Member, Member.id == Consent.member_id)
            .order_by(Consent.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loyalty.importer, "BATCH_SIZE", 3)


def test_an_unchanged_row_is_skipped_until_someone_changes_the_member(
    app: App, tmp_path: Path
) -> None:
    # Given two members imported, one of them with an invalid phone (a warning)
    path = write_csv(
        tmp_path / "m.csv",
        HEADER,
        "m-1,a@example.com,+48601234567,Anna,yes,,Kraków",
        "m-2,b@example.com,12,Bob,,,",
    )
    first = run(app, path)
    assert (first.created, len(first.warnings)) == (2, 1)
    # When the first member's name is changed behind the import's back, keeping updated_at
    with app.database.transaction() as session:
        session.execute(update(Member).where(Member.external_id == "m-1").values(first_name="X"))
    app.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    again = run(app, path)

    # Then the same raw row is not looked at again: the member is left as it is
    assert members(app)["m-1"].first_name == "X"
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    # And the row with a warning keeps no digest, so its warning is reported every time
    assert [(p.row, p.field) for p in again.warnings] == [(3, "phone")]
    assert members(app)["m-2"].import_digest is None

    # When the member changes through the program (updated_at moves), the row applies again
    with app.database.transaction() as session:
        session.execute(
            update(Member)
            .where(Member.external_id == "m-1")
            .values(updated_at=app.clock.now() - timedelta(minutes=5))
        )
    third = run(app, path)
    assert members(app)["m-1"].first_name == "Anna"
    assert (third.updated, third.unchanged) == (1, 1)
    assert consents(app) == [("m-1", "email", True)]


def test_a_changed_phone_region_parses_every_row_again(app: App, tmp_path: Path) -> None:
    # Given a member imported with a phone number without a +prefix, read as a US one
    path = write_csv(tmp_path / "m.csv", HEADER, "m-1,,(212) 555-0123,,,,")
    run(app, path)
    assert members(app)["m-1"].phone == "+12125550123"

    # When the same file is imported with Poland as the default region
    polish = app.settings.model_copy(update={"default_phone_region": "PL"})
    report = import_members(app.database, path, polish, app.clock)

    # Then the row is parsed again: the number is no Polish one, so it is kept and warned about
    assert [(p.row, p.field) for p in report.warnings] == [(2, "phone")]
    assert members(app)["m-1"].phone == "+12125550123"


def test_consent_changes_are_logged_once_each(app: App, tmp_path: Path) -> None:
    # Given members imported with their consents
    rows = [f"m-{n},m{n}@example.com,,Ann,yes,no," for n in range(10)]
    path = write_csv(tmp_path / "m.csv", HEADER, *rows)
    run(app, path)
    assert len(consents(app)) == 20

    # When the file comes again with the same consents, then with two changed and a name
    run(app, path)
    assert len(consents(app)) == 20
    rows[3] = "m-3,m3@example.com,,Ann,no,no,"
    rows[7] = "m-7,m7@example.com,,Ann,yes,yes,"
    rows[8] = "m-8,m8@example.com,,Anne,yes,no,"
    write_csv(path, HEADER, *rows)
    app.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    report = run(app, path)
    run(app, path)

    # Then each change is logged once, with the import as its source, and nothing else
    assert (report.updated, report.unchanged) == (3, 7)
    assert consents(app)[20:] == [("m-3", "email", False), ("m-7", "sms", True)]
    with app.database.sessions() as session:
        sources = set(session.scalars(select(Consent.source)))
        logged_at = session.scalar(select(func.max(Consent.at)))
    assert sources == {"import"}
    assert logged_at == app.clock.now()
    assert members(app)["m-3"].email_consent is False and members(app)["m-7"].sms_consent is True


@pytest.fixture
def refuse_name(database: Database) -> Iterator[str]:
    """The database refuses one first name, in new rows and in updates."""
    refused = "Refused"
    with database.engine.begin() as connection:
        if database.is_sqlite:
            for event in ("INSERT", "UPDATE"):
                connection.execute(
                    text(
                        f"CREATE TRIGGER refuse_name_{event.lower()} BEFORE {event} ON members "
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


def test_a_refused_row_in_a_batch_of_updates_is_rejected_alone(
    app: App, tmp_path: Path, refuse_name: str
) -> None:
    # Given six members, imported in batches of three
    path = write_csv(
        tmp_path / "m.csv", HEADER, *(f"m-{n},m{n}@example.com,,Ann,no,," for n in range(6))
    )
    run(app, path)

    # When a file changes all of them and gives one a name the database refuses
    path = write_csv(
        tmp_path / "m2.csv",
        HEADER,
        *(f"m-{n},m{n}@example.com,,{refuse_name if n == 4 else 'Eve'},yes,," for n in range(6)),
    )
    report = run(app, path)

    # Then that row alone is rejected, by number and without its values
    assert [(p.row, p.field, p.external_id) for p in report.rejected] == [(6, "*", "m-4")]
    assert report.rejected[0].reason.startswith("the database refused the row (")
    assert refuse_name not in report.rejected[0].reason
    assert (report.updated, report.rejected_rows) == (5, 1)
    # And the others of its batch are written with their consent changes; it is left as it was
    everyone = members(app)
    assert [everyone[f"m-{n}"].first_name for n in range(6)] == ["Eve"] * 4 + ["Ann", "Eve"]
    assert everyone["m-4"].email_consent is False
    changed = [c for c in consents(app) if c[2]]
    assert sorted(c[0] for c in changed) == ["m-0", "m-1", "m-2", "m-3", "m-5"]


@pytest.mark.usefixtures("small_batches")
def test_parsing_processes_keep_row_order_numbers_and_the_last_row_of_a_member(
    app: App, tmp_path: Path
) -> None:
    # Given a file of many small batches with bad rows and members given twice
    rows = [f"m-{n},m{n}@example.com,,Ann{n},,," for n in range(20)]
    rows[4] = "m-4,m4@example.com,,Ann\x00,,,"
    rows[9] = ",nobody@example.com,,,,,"
    rows[12] = "m-12,not-an-email,,Ann12,,,"
    rows.append("m-1,m1@example.com,,Later,,,")
    rows.append("m-2,m2@example.com,,Ann2,,,")
    path = write_csv(tmp_path / "m.csv", HEADER, *rows)

    # When it is imported with two parsing processes
    report = run(app, path, workers=2)

    # Then the report and the rows are what one process makes of it
    assert [(p.row, p.field) for p in report.rejected] == [(6, "first_name"), (11, "external_id")]
    assert [(p.row, p.field) for p in report.warnings] == [(14, "email")]
    everyone = members(app)
    assert len(everyone) == 18 and "m-4" not in everyone
    assert everyone["m-1"].first_name == "Later"
    assert everyone["m-12"].email is None
    assert (report.rows, report.created, report.updated, report.unchanged) == (22, 18, 1, 1)

    # And a re-import in processes changes only the member given twice with different rows
    again = run(app, path, workers=2)
    assert (again.created, again.updated, again.unchanged) == (0, 2, 18)
    assert [(p.row, p.field) for p in again.warnings] == [(14, "email")]
    assert members(app)["m-1"].first_name == "Later"


def test_an_erased_member_is_never_imported_again(app: App, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", HEADER, "m-1,a@example.com,,Anna,yes,,Kraków")
    run(app, path)
    with app.database.transaction() as session:
        member = session.scalars(select(Member)).one()
        erase_member(session, member, now=app.clock.now())
    logged = len(consents(app))

    report = run(app, path)

    assert [(p.row, p.field, p.reason) for p in report.rejected] == [(2, "external_id", ERASED)]
    erased = members(app)["m-1"]
    assert (erased.email, erased.first_name, erased.attributes) == (None, None, {})
    assert erased.erased_at is not None and len(consents(app)) == logged


@pytest.mark.usefixtures("small_batches")
def test_rows_checked_the_quick_way_still_meet_each_rule_in_later_rows(
    app: App, tmp_path: Path
) -> None:
    # Given plain rows whose domain and number shapes were accepted before a bad one comes
    rows = [f"m-{n},m{n}@example.com,+4860123456{n % 10},Ann,yes,,vip" for n in range(8)]
    rows[4] = "m-4,two..dots@example.com,+48601234564,Ann,yes,,vip"
    rows[5] = "m-5,m5@example.com,+4860123,Ann,yes,,vip"
    rows[6] = "m-6,m6@example.com,+390612345678,Ann-NOT-UTF8,yes,,vip"
    rows[7] = "m-7,m7@example.com,+390612345678,Ann,yes,,v\x00ip"
    path = tmp_path / "m.csv"
    text = "\n".join([HEADER, *rows]) + "\n"
    path.write_bytes(text.encode().replace(b"-NOT-UTF8", b"\xff"))

    # When it is imported in batches
    report = run(app, path)

    # Then the bad address and the short number are left out with a warning each,
    # and cells no database would store reject their row alone
    assert [(p.row, p.field) for p in report.warnings] == [(6, "email"), (7, "phone")]
    assert [(p.row, p.field) for p in report.rejected] == [
        (8, "first_name"),
        (9, "favourite_store"),
    ]
    everyone = members(app)
    assert sorted(everyone) == ["m-0", "m-1", "m-2", "m-3", "m-4", "m-5"]
    assert (everyone["m-4"].email, everyone["m-4"].phone) == (None, "+48601234564")
    assert (everyone["m-5"].email, everyone["m-5"].phone) == ("m5@example.com", None)
    assert everyone["m-3"].attributes == {"favourite_store": "vip"}
    assert consents(app) == [(f"m-{n}", "email", True) for n in range(6)]

    # And an Italian number keeps its leading zero, through the parsing processes too
    rows[6] = "m-6,m6@example.com,+390612345678,Ann,yes,,vip"
    write_csv(path, HEADER, *rows)
    again = run(app, path, workers=2)
    assert [(p.row, p.field) for p in again.rejected] == [(9, "favourite_store")]
    assert members(app)["m-6"].phone == "+390612345678"


def test_a_member_added_by_someone_else_during_a_batch_is_updated_not_rejected(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if app.database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's import holds the write lock from the lookup on: nobody can add")
    # Given a file of three new members, and another writer that adds one of them
    # after the import looked the batch's members up and before it writes them
    path = write_csv(
        tmp_path / "m.csv", HEADER, *(f"m-{n},m{n}@example.com,,Ann,yes,," for n in range(3))
    )
    write = loyalty.import_backends.copy_members
    added: list[int] = []

    def write_after_another_writer_adds_m1(session: Session, writes: Writes) -> None:
        if not added:
            added.append(make_member(app, external_id="m-1", first_name="Other").id)
        write(session, writes)

    monkeypatch.setattr(loyalty.import_writer, "copy_members", write_after_another_writer_adds_m1)

    # When the file is imported
    report = run(app, path)

    # Then no row is rejected and the member the other writer added takes the row
    assert report.rejected == [] and report.created + report.updated == 3
    everyone = members(app)
    assert sorted(everyone) == ["m-0", "m-1", "m-2"]
    assert everyone["m-1"].id == added[0]
    assert (everyone["m-1"].first_name, everyone["m-1"].email) == ("Ann", "m1@example.com")
    assert sorted(c for c in consents(app)) == [(f"m-{n}", "email", True) for n in range(3)]


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_first_import_that_names_a_member_again_in_a_later_batch_updates_it(
    app: App, tmp_path: Path, workers: int
) -> None:
    # Given a file for a program with no member yet that names m-1 again two batches later
    rows = [f"m-{n},m{n}@example.com,,Ann{n},yes,no," for n in range(7)]
    rows.append("m-1,m1@example.com,,Later,no,no,")
    path = write_csv(tmp_path / "m.csv", HEADER, *rows)

    # When it is imported
    report = run(app, path, workers=workers)

    # Then the later row updates the member the first batch created, and each consent
    # change is logged once
    assert (report.rows, report.created, report.updated, report.rejected) == (8, 7, 1, [])
    everyone = members(app)
    assert sorted(everyone) == [f"m-{n}" for n in range(7)]
    assert (everyone["m-1"].first_name, everyone["m-1"].email_consent) == ("Later", False)
    first = [
        (f"m-{n}", channel, channel == "email") for n in range(7) for channel in ("email", "sms")
    ]
    assert consents(app) == [*first, ("m-1", "email", False)]


def test_a_member_someone_else_adds_once_a_first_import_began_is_updated_not_rejected(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file of three new members for a program with no member yet, and another
    # writer that adds one of them after the import began and before its batch is written
    path = write_csv(
        tmp_path / "m.csv", HEADER, *(f"m-{n},m{n}@example.com,,Ann,yes,," for n in range(3))
    )
    write = loyalty.importer._write
    added: list[int] = []

    def write_after_another_writer_adds_m1(*args: Any, **kwargs: Any) -> ImportReport:
        if not added:
            added.append(make_member(app, external_id="m-1", first_name="Other").id)
        return write(*args, **kwargs)

    monkeypatch.setattr(loyalty.importer, "_write", write_after_another_writer_adds_m1)

    # When the file is imported
    report = run(app, path)

    # Then no row is rejected, and the member the other writer added takes the row
    assert report.rejected == [] and (report.created, report.updated) == (2, 1)
    everyone = members(app)
    assert sorted(everyone) == ["m-0", "m-1", "m-2"]
    assert everyone["m-1"].id == added[0]
    assert (everyone["m-1"].first_name, everyone["m-1"].email) == ("Ann", "m1@example.com")
    assert sorted(c for c in consents(app)) == [(f"m-{n}", "email", True) for n in range(3)]


def test_a_referral_code_drawn_for_a_new_member_and_already_taken_is_drawn_again(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a member whose referral code is the first one the import's draw comes up with
    taken = make_member(app, external_id="old", referral_code="TAKEN23456").referral_code
    draw = loyalty.referrals.new_referral_codes
    draws: list[int] = []

    def first_draw_taken(count: int) -> list[str]:
        codes = draw(count)
        if not draws:
            codes[1] = taken
        draws.append(count)
        return codes

    monkeypatch.setattr(loyalty.import_backends, "new_referral_codes", first_draw_taken)
    path = write_csv(
        tmp_path / "m.csv", HEADER, *(f"m-{n},m{n}@example.com,,Ann,yes,," for n in range(3))
    )

    # When the file is imported
    report = run(app, path)

    # Then every row lands, each member with a code of its own
    assert report.rejected == [] and report.created == 3
    everyone = members(app)
    assert len({m.referral_code for m in everyone.values()}) == 4
    assert everyone["old"].referral_code == taken
    assert sorted(c for c in consents(app)) == [(f"m-{n}", "email", True) for n in range(3)]


@pytest.mark.usefixtures("small_batches")
def test_writing_processes_write_the_batches_in_the_files_order(
    app: App, tmp_path: Path, refuse_name: str
) -> None:
    # Given a file of many small batches, with a row the database refuses
    rows = [f"m-{n},m{n}@example.com,,Ann,yes,no," for n in range(20)]
    rows[7] = f"m-7,m7@example.com,,{refuse_name},yes,no,"
    path = write_csv(tmp_path / "m.csv", HEADER, *rows)

    # When two processes parse and write it
    report = run(app, path, workers=2)

    # Then the refused row alone is rejected, by its number
    assert [(p.row, p.field, p.external_id) for p in report.rejected] == [(9, "*", "m-7")]
    assert report.created == 19
    # And members and consents went in one batch after another, in the file's order
    with app.database.sessions() as session:
        order = list(session.scalars(select(Member.external_id).order_by(Member.id)))
    kept = [n for n in range(20) if n != 7]
    assert order == [f"m-{n}" for n in kept]
    assert consents(app) == [
        (f"m-{n}", channel, granted)
        for n in kept
        for channel, granted in (("email", True), ("sms", False))
    ]


def test_values_with_tabs_line_breaks_and_backslashes_are_stored_as_written(
    app: App, tmp_path: Path
) -> None:
    # Given rows whose values hold what a bulk write could misread: tabs, line breaks,
    # backslashes, and the two characters that spell NULL in COPY's text format
    path = tmp_path / "m.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER.split(","))
        writer.writerow(["m-1", "", "", "A\tB\\C", "", "", "x\ny\r\nz"])
        writer.writerow(["m-2", "", "", "\\N", "yes", "", "\\N\\t"])
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        json.dumps({"external_id": "j-1", "first_name": "a\\tb", "prefs": {"k\t": ["v\n\\N"]}})
        + "\n",
        encoding="utf-8",
    )

    # When both files are imported
    report = run(app, path)
    again = run(app, jsonl)

    # Then every value is stored as written, none of them NULL
    assert (report.created, report.rejected, again.created) == (2, [], 1)
    everyone = members(app)
    assert everyone["m-1"].first_name == "A\tB\\C"
    assert everyone["m-1"].attributes == {"favourite_store": "x\ny\r\nz"}
    assert everyone["m-2"].first_name == "\\N"
    assert everyone["m-2"].attributes == {"favourite_store": "\\N\\t"}
    assert everyone["j-1"].first_name == "a\\tb"
    assert everyone["j-1"].attributes == {"prefs": {"k\t": ["v\n\\N"]}}
    assert consents(app) == [("m-2", "email", True)]


def test_a_database_in_memory_is_written_by_the_importing_process(
    tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SQLite database that lives in this process alone
    monkeypatch.setattr(loyalty.importer, "BATCH_SIZE", 3)
    database = Database("sqlite://")
    upgrade(database)
    path = write_csv(
        tmp_path / "m.csv", HEADER, *(f"m-{n},m{n}@example.com,,Ann,yes,," for n in range(10))
    )

    # When a file of several batches is imported with parsing processes
    report = import_members(database, path, make_settings(database), clock, workers=2)

    # Then its rows land in it
    with database.sessions() as session:
        stored = sorted(session.scalars(select(Member.external_id)))
    database.dispose()
    assert report.created == 10
    assert stored == sorted(f"m-{n}" for n in range(10))


def test_the_unchanged_row_lookup_waits_for_no_writer(app: App, tmp_path: Path) -> None:
    # Given a member imported, and another transaction that holds SQLite's write lock
    path = write_csv(tmp_path / "m.csv", HEADER, "m-1,a@example.com,,Anna,yes,,")
    run(app, path)
    with app.database.transaction() as writer:
        writer.execute(update(Member).values(first_name="Someone"))

        # When the import looks up which rows it already applied, meanwhile
        with app.database.reading() as session:
            known = loyalty.import_writer.unchanged_keys(session, {"m-1": "another row"})

    # Then it reads what was committed without waiting for the writer to finish
    assert known == set()
    assert members(app)["m-1"].first_name == "Someone"
