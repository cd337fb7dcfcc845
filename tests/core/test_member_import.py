"""Importing members from CSV and JSONL, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli import main
from loyalty.app import App
from loyalty.importer import UnusableFileError, import_members
from loyalty.models import Consent, Member, Referral
from tests.factories import write_csv

HEADER = (
    "external_id,email,phone,first_name,last_name,locale,time_zone,birthday,"
    "email_consent,sms_consent,referred_by_code,favourite_store"
)


def members(app: App) -> dict[str, Member]:
    with app.database.sessions() as session:
        return {m.external_id: m for m in session.scalars(select(Member))}


def consents(app: App) -> list[tuple[str, str, bool, str]]:
    with app.database.sessions() as session:
        rows = session.execute(
            select(Member.external_id, Consent.channel, Consent.granted, Consent.source)
            .join(Member, Member.id == Consent.member_id)
            .order_by(Consent.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_csv_rows_are_cleaned_and_stored(app: App, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "members.csv",
        HEADER,
        "m-1, Anna@Example.COM ,+48 601 234 567,Anna,Nowak,pl_pl,Europe/Warsaw,1992-02-29,"
        "yes,no,,Kraków",
        "m-2,bob@example.com,(212) 555-0123,Bob,Smith,en,America/New_York,--02-29,1,true,,",
    )
    report = import_members(app.database, path, app.settings, app.clock)
    assert (report.rows, report.created, report.rejected) == (2, 2, [])
    anna, bob = members(app)["m-1"], members(app)["m-2"]
    assert (anna.email, anna.phone, anna.locale, anna.time_zone) == (
        "anna@example.com",
        "+48601234567",
        "pl-PL",
        "Europe/Warsaw",
    )
    assert (anna.birth_year, anna.birth_month, anna.birth_day) == (1992, 2, 29)
    assert anna.attributes == {"favourite_store": "Kraków"}
    assert bob.phone == "+12125550123"
    assert bob.birthday == "--02-29"
    assert anna.referral_code != bob.referral_code
    assert consents(app) == [
        ("m-1", "email", True, "import"),
        ("m-1", "sms", False, "import"),
        ("m-2", "email", True, "import"),
        ("m-2", "sms", True, "import"),
    ]


def test_invalid_optional_fields_are_left_out_and_only_a_missing_key_rejects(
    app: App, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "members.csv",
        HEADER,
        "m-1,ok@example.com,,,,,,,,,,",
        "m-2,not-an-email,12,Bo,,english,Mars/Base,1999-02-29,maybe,,,",
        ",nobody@example.com,,,,,,,,,,",
        "m-3,ok3@example.com,,,,,,,,,,",
    )
    report = import_members(app.database, path, app.settings, app.clock)
    everyone = members(app)
    assert sorted(everyone) == ["m-1", "m-2", "m-3"]
    kept = everyone["m-2"]
    assert (kept.first_name, kept.email, kept.phone, kept.locale, kept.time_zone) == (
        "Bo",
        None,
        None,
        None,
        None,
    )
    assert (kept.birthday, kept.email_consent) == (None, None)
    assert {(p.row, p.field, p.external_id) for p in report.warnings} == {
        (3, "email", "m-2"),
        (3, "phone", "m-2"),
        (3, "locale", "m-2"),
        (3, "time_zone", "m-2"),
        (3, "birthday", "m-2"),
        (3, "email_consent", "m-2"),
    }
    assert [(p.row, p.field) for p in report.rejected] == [(4, "external_id")]
    birthday = next(p for p in report.warnings if p.field == "birthday")
    assert "day is out of range" in birthday.reason and "1999-02-29" not in birthday.reason
    assert report.rejected_rows == 1


def test_reimport_changes_nothing_then_only_what_changed(app: App, tmp_path: Path) -> None:
    row = "m-1,a@example.com,,Anna,,en,,--05-17,yes,,,"
    path = write_csv(tmp_path / "m.csv", HEADER, row)
    import_members(app.database, path, app.settings, app.clock)
    before = members(app)["m-1"]
    app.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]

    again = import_members(app.database, path, app.settings, app.clock)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    assert members(app)["m-1"].updated_at == before.updated_at
    assert len(consents(app)) == 1

    write_csv(path, HEADER, "m-1,a@example.com,,Anna,,en,,--05-17,no,,,")
    changed = import_members(app.database, path, app.settings, app.clock)
    assert changed.updated == 1
    after = members(app)["m-1"]
    assert after.email_consent is False and after.updated_at > before.updated_at
    assert after.referral_code == before.referral_code
    assert consents(app)[-1] == ("m-1", "email", False, "import")


def test_jsonl_with_a_malformed_line(app: App, tmp_path: Path) -> None:
    path = tmp_path / "members.jsonl"
    path.write_text(
        json.dumps({"external_id": "j-1", "email": "j1@example.com", "vip": True}) + "\n"
        "{not json\n"
        + json.dumps({"external_id": "j-2", "sms_consent": True, "phone": "+14155550100"})
        + "\n"
    )
    report = import_members(app.database, path, app.settings, app.clock)
    assert sorted(members(app)) == ["j-1", "j-2"]
    assert members(app)["j-1"].attributes == {"vip": True}
    assert [(p.row, p.field) for p in report.rejected] == [(2, "*")]
    assert "not valid JSON" in report.rejected[0].reason


def test_a_jsonl_true_or_false_where_text_belongs_leaves_that_field_out(
    app: App, tmp_path: Path
) -> None:
    # A boolean in a name or code field is that field's warning, never the file's failure
    path = tmp_path / "members.jsonl"
    rows = [
        {"external_id": "b-1", "first_name": False, "email": "b1@example.com"},
        {"external_id": "b-2", "last_name": True, "referred_by_code": False},
        {"external_id": "b-3", "first_name": "Ann", "email_consent": True},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = import_members(app.database, path, app.settings, app.clock)
    kept = members(app)
    assert sorted(kept) == ["b-1", "b-2", "b-3"] and report.rejected == []
    assert (kept["b-1"].first_name, kept["b-1"].email) == (None, "b1@example.com")
    assert kept["b-2"].last_name is None
    assert (kept["b-3"].first_name, kept["b-3"].email_consent) == ("Ann", True)
    warned = sorted((w.row, w.field, w.reason.split(" (")[0]) for w in report.warnings)
    assert warned == [
        (1, "first_name", "expected text, not false"),
        (2, "last_name", "expected text, not true"),
        (2, "referred_by_code", "expected text, not false"),
    ]


def test_referred_by_code_links_the_referrer(app: App, tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", HEADER, "ref-1,r@example.com,,,,,,,,,,")
    import_members(app.database, tmp_path / "a.csv", app.settings, app.clock)
    code = members(app)["ref-1"].referral_code
    path = write_csv(
        tmp_path / "b.csv",
        HEADER,
        f"new-1,n@example.com,,,,,,,,,{code.lower()},",
        "new-2,x@example.com,,,,,,,,,NOSUCHCODE,",
    )
    report = import_members(app.database, path, app.settings, app.clock)
    assert report.created == 2
    assert [(p.row, p.field) for p in report.warnings] == [(3, "referred_by_code")]
    everyone = members(app)
    assert everyone["new-1"].referred_by_id == everyone["ref-1"].id
    assert everyone["new-2"].referred_by_id is None
    with app.database.sessions() as session:
        assert (
            session.scalar(select(func.count(Referral.id)).where(Referral.status == "pending")) == 1
        )


def test_unusable_files(app: App, tmp_path: Path) -> None:
    no_key = write_csv(tmp_path / "x.csv", "email,phone", "a@example.com,")
    with pytest.raises(UnusableFileError, match="external_id column"):
        import_members(app.database, no_key, app.settings, app.clock)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("external_id,imię\nm-1,Łukasz\n".encode("cp1250"))
    with pytest.raises(UnusableFileError, match="header line is not UTF-8"):
        import_members(app.database, latin, app.settings, app.clock)
    with pytest.raises(UnusableFileError, match=r"name it \.csv or \.jsonl"):
        import_members(app.database, tmp_path / "members.xlsx", app.settings, app.clock)


def test_cli_exit_status_and_report(app: App, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": app.database.url}
    good = write_csv(tmp_path / "good.csv", HEADER, "m-1,a@example.com,,,,,,,,,,")
    result = runner.invoke(main, ["members", "import", str(good)], env=env)
    assert result.exit_code == 0, result.output
    assert "1 rows: 1 created" in result.output

    bad = write_csv(
        tmp_path / "bad.csv",
        HEADER,
        "m-2,b@example.com,,,,,,,,,,",
        "m-3,c@example.com,,Ann\x00,,,,,,,,",
        "m-4,not-an-email,,,,,,,,,,",
    )
    report = tmp_path / "report.json"
    result = runner.invoke(main, ["members", "import", str(bad), "--report", str(report)], env=env)
    assert result.exit_code == 1
    assert "row 3: first_name: contains a NUL character" in result.output
    assert "row 4: warning: email:" in result.output and "not-an-email" not in result.output
    assert "3 rows: 2 created, 0 updated, 0 unchanged, 1 rejected" in result.output
    assert json.loads(report.read_text())["rejected"][0] | {"reason": ""} == {
        "row": 3,
        "field": "first_name",
        "reason": "",
        "external_id": "m-3",
    }

    missing = runner.invoke(main, ["members", "import", str(tmp_path / "none.csv")], env=env)
    assert missing.exit_code == 2
    assert "No such file" in missing.output

    shown = runner.invoke(main, ["members", "show", "m-2", "--json"], env=env)
    assert shown.exit_code == 0
    assert json.loads(shown.output)["email"] == "b@example.com"
