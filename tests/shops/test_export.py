"""`loyalty members export`: one JSON document with everything held about a member."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from loyalty import ledger
from loyalty.app import App
from loyalty.consent import record_consent
from loyalty.models import CrmLink, Member, Message, Referral, Survey
from loyalty.states import LedgerKind, MessageState, ReferralStatus
from tests.factories import make_member


def given_a_member_with_history(app: App) -> Member:
    anna = make_member(
        app, external_id="m-1", email="anna@example.com", first_name="Anna", referral_code="ANNA1"
    )
    ben = make_member(app, external_id="m-2", email="ben@example.com", first_name="Ben")
    now = app.clock.now()
    with app.database.transaction() as session:
        member = session.get(Member, anna.id)
        assert member is not None
        record_consent(session, member, "email", True, source="shopify", at=now)
        ledger.apply(
            session, member, LedgerKind.BONUS, 50, key="welcome:m-1", reason="welcome", now=now,
            thresholds=app.settings.tier_thresholds,
        )  # fmt: skip
        message = Message(
            idempotency_key="e1:s1",
            member_id=anna.id,
            channel="email",
            purpose="marketing",
            template="welcome",
            state=MessageState.SENT,
            unsubscribe_token="secret-token",
            created_at=now,
            updated_at=now,
            sent_at=now,
        )
        session.add(message)
        session.add(
            Survey(member_id=anna.id, kind="nps", channel="email", token="survey-token",
                   score=9, comment="Great", sent_at=now, answered_at=now)
        )  # fmt: skip
        session.add(CrmLink(member_id=anna.id, crm="hubspot", crm_id="501"))
        session.add(
            Referral(referrer_id=anna.id, referee_id=ben.id, code="ANNA1",
                     status=ReferralStatus.COMPLETED, created_at=now)
        )  # fmt: skip
        session.flush()
        message_id = message.id
    day = app.settings.outbox_dir / now.date().isoformat()
    day.mkdir(parents=True)
    (day / f"message-{message_id}.eml").write_text("Subject: Welcome, Anna\n\nHello Anna")
    return anna


def test_the_export_holds_everything_about_the_member_and_nobody_else(
    app: App, tmp_path: Path
) -> None:
    given_a_member_with_history(app)
    env = {"DATABASE_URL": app.database.url, "OUTBOX_DIR": str(app.settings.outbox_dir)}

    result = CliRunner().invoke(main, ["members", "export", "m-1"], env=env)

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["member"]["email"] == "anna@example.com"
    assert document["member"]["points_balance"] == 50
    assert [(c["channel"], c["granted"], c["source"]) for c in document["consents"]] == [
        ("email", True, "shopify")
    ]
    assert [entry["delta"] for entry in document["points_ledger"]] == [50]
    [message] = document["messages"]
    assert message["template"] == "welcome"
    assert list(message["bodies"].values()) == ["Subject: Welcome, Anna\n\nHello Anna"]
    assert [(s["score"], s["comment"]) for s in document["surveys"]] == [(9, "Great")]
    assert [(r["role"], r["status"]) for r in document["referrals"]] == [("referrer", "completed")]
    assert [link["crm_id"] for link in document["crm_links"]] == ["501"]
    text = json.dumps(document)
    assert "ben@example.com" not in text and "Ben" not in text
    assert "secret-token" not in text and "survey-token" not in text


def test_the_export_goes_to_a_file_readable_by_its_owner(app: App, tmp_path: Path) -> None:
    given_a_member_with_history(app)
    out = tmp_path / "anna.json"
    env = {"DATABASE_URL": app.database.url, "OUTBOX_DIR": str(app.settings.outbox_dir)}

    result = CliRunner().invoke(main, ["members", "export", "m-1", "--out", str(out)], env=env)

    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["member"]["external_id"] == "m-1"
    assert out.stat().st_mode & 0o077 == 0
    assert result.stdout == ""


def test_an_unknown_member_is_one_line(app: App) -> None:
    result = CliRunner().invoke(
        main, ["members", "export", "nobody"], env={"DATABASE_URL": app.database.url}
    )

    assert result.exit_code in (1, 2)
    assert len(result.stderr.splitlines()) == 1 and "nobody" in result.stderr
