"""The production shape: `loyalty members import` as a process on PostgreSQL, a file of
three batches parsed by its parsing processes and written through COPY."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from bench.soak_processes import loyalty_command
from loyalty.app import App
from loyalty.models import Consent, Member
from tests.factories import write_csv

HEADER = "external_id,email,phone,first_name,birthday,email_consent,sms_consent,segment"
ROWS = 10_500  # three batches: the second and third are parsed by the parsing processes


def row(n: int, *, name: str = "Anna", consent: str = "yes") -> str:
    return f"m-{n}, M{n}@Example.com ,+48 601 {n:06d},{name},1990-05-17,{consent},,vip"


def test_loyalty_members_import_on_postgresql(postgres_app: App, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": postgres_app.database.url, "DEFAULT_PHONE_REGION": "PL"}
    loyalty = loyalty_command()
    rows = [row(n) for n in range(ROWS)]
    path = write_csv(tmp_path / "members.csv", HEADER, *rows)

    # When the command imports the file
    first = subprocess.run(
        [*loyalty, "members", "import", str(path)], env=env, capture_output=True, text=True
    )

    # Then every member is there, cleaned, with one consent each from the import
    assert first.returncode == 0, first.stderr
    assert f"{ROWS} rows: {ROWS} created, 0 updated, 0 unchanged, 0 rejected" in first.stdout
    with postgres_app.database.sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == ROWS
        member = session.scalars(select(Member).where(Member.external_id == "m-1234")).one()
        assert (member.email, member.phone, member.birthday) == (
            "m1234@example.com",
            "+48601001234",
            "1990-05-17",
        )
        assert (member.first_name, member.email_consent, member.attributes) == (
            "Anna",
            True,
            {"segment": "vip"},
        )
        assert session.scalar(select(func.count(Consent.id))) == ROWS
        assert set(session.scalars(select(Consent.source))) == {"import"}
        assert session.scalar(select(func.count(func.distinct(Member.referral_code)))) == ROWS

    # When a tenth of the rows change (names; every twentieth also revokes consent) and one
    # row is bad, and the file is imported again
    for n in range(0, ROWS, 10):
        rows[n] = row(n, name="Eve", consent="no" if n % 20 == 0 else "yes")
    rows[7] = "m-7,m7@example.com,,Ann\x00,,,,"
    write_csv(path, HEADER, *rows)
    again = subprocess.run(
        [*loyalty, "members", "import", str(path)], env=env, capture_output=True, text=True
    )

    # Then only they are written, the consent changes are logged once, the bad row is named
    assert again.returncode == 1
    assert "row 9: first_name: contains a NUL character" in again.stderr
    changed = ROWS // 10
    assert (
        f"{ROWS} rows: 0 created, {changed} updated, {ROWS - changed - 1} unchanged, 1 rejected"
        in again.stdout
    )
    with postgres_app.database.sessions() as session:
        names = {
            external_id: name
            for external_id, name in session.execute(select(Member.external_id, Member.first_name))
        }
        revoked = session.scalars(
            select(Member.external_id).join(Consent).where(Consent.granted.is_(False))
        ).all()
        assert session.scalar(select(func.count(Consent.id))) == ROWS + ROWS // 20
    assert [n for n in range(ROWS) if names[f"m-{n}"] == "Eve"] == list(range(0, ROWS, 10))
    assert names["m-7"] == "Anna"
    assert sorted(revoked) == sorted(f"m-{n}" for n in range(0, ROWS, 20))
