"""The message counters (`message_counts`) say what counting the outbox rows says, after
sends, deferrals, failures, suppressions, an erasure and a deletion, on both databases; and
migration 0015 counts the messages that were there before it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import case, delete, func, select, update

from channels.delivery import deliver
from loyalty.app import App
from loyalty.db import downgrade, upgrade
from loyalty.erasure import erase_member
from loyalty.message_counts import message_counts
from loyalty.models import Member, Message
from loyalty.states import MessageState
from tests.channels.support import due_messages, promo_version

Key = tuple[str | None, str | None, str, str, str]


def counted(app: App) -> dict[Key, int]:
    with app.database.sessions() as session:
        return {
            (c.journey_id, c.step_id, c.channel, c.state, c.reason): c.n
            for c in message_counts(session)
        }


def rows(app: App) -> dict[Key, int]:
    reason = case((Message.state == MessageState.SUPPRESSED, Message.error), else_="")
    key = (Message.journey_id, Message.step_id, Message.channel, Message.state, reason)
    with app.database.sessions() as session:
        found = session.execute(select(*key, func.count()).group_by(*key)).all()
    return {(j, s, c, st, r or ""): n for j, s, c, st, r, n in found}


def test_counters_match_the_rows_through_sends_deferrals_failures_and_suppressions(
    app: App, tmp_path: Path
) -> None:
    # Given a promo journey with five pending emails and four pending SMS, SMS in quiet hours
    app.settings = app.settings.model_copy(
        update={"sms_quiet_hours": "11:00-13:00", "max_marketing_emails_per_week": 10}
    )
    version = promo_version(app, tmp_path)
    emails = due_messages(app, version, 5, "email")
    texts = due_messages(app, version, 4, "sms", start=5)
    assert (
        counted(app)
        == rows(app)
        == {
            ("promo", "mail", "email", "pending", ""): 5,
            ("promo", "text", "sms", "pending", ""): 4,
        }
    )
    with app.database.transaction() as session:
        # ... one member without email consent, one email whose template is gone
        refused = session.scalar(select(Message.member_id).where(Message.id == emails[2]))
        session.execute(update(Member).where(Member.id == refused).values(email_consent=False))
        session.execute(update(Message).where(Message.id == emails[3]).values(template="gone"))
        # ... and a message of no journey (a test send)
        session.execute(
            update(Message)
            .where(Message.id == emails[4])
            .values(journey_id=None, step_id=None, purpose="transactional")
        )

    # When the emails go, the SMS meet quiet hours, a member is erased, a row is deleted
    outcomes = [deliver(app, m) for m in emails] + [deliver(app, texts[0])]
    with app.database.transaction() as session:
        erased = session.scalar(
            select(Member)
            .join(Message, Message.member_id == Member.id)
            .where(Message.id == texts[1])
        )
        assert erased is not None
        erase_member(session, erased, now=app.clock.now())
        session.execute(delete(Message).where(Message.id == texts[2]))

    # Then the counters are the rows, key by key
    assert outcomes == ["sent", "sent", "suppressed", "failed", "sent", "deferred"]
    assert (
        counted(app)
        == rows(app)
        == {
            ("promo", "mail", "email", "sent", ""): 2,
            ("promo", "mail", "email", "suppressed", "no_consent"): 1,
            ("promo", "mail", "email", "failed", ""): 1,
            (None, None, "email", "sent", ""): 1,
            ("promo", "text", "sms", "deferred", ""): 1,
            ("promo", "text", "sms", "suppressed", "erased"): 1,
            ("promo", "text", "sms", "pending", ""): 1,
        }
    )


def test_the_migration_counts_the_messages_already_there(app: App, tmp_path: Path) -> None:
    # Given messages written before the counters existed
    version = promo_version(app, tmp_path)
    emails = due_messages(app, version, 3, "email")
    downgrade(app.database, "0014")
    with app.database.transaction() as session:
        session.execute(
            update(Message).where(Message.id == emails[0]).values(state="suppressed", error="x")
        )
        session.execute(update(Message).where(Message.id == emails[1]).values(state="sent"))

    # When the database is migrated
    upgrade(app.database)

    # Then they are counted, and the counters go on from there
    assert counted(app) == rows(app)
    with app.database.transaction() as session:
        session.execute(update(Message).where(Message.id == emails[2]).values(state="failed"))
    assert (
        counted(app)
        == rows(app)
        == {
            ("promo", "mail", "email", "suppressed", "x"): 1,
            ("promo", "mail", "email", "sent", ""): 1,
            ("promo", "mail", "email", "failed", ""): 1,
        }
    )
