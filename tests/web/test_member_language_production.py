"""The production shape: `loyalty serve` and `loyalty worker` on PostgreSQL and Redis send a
Polish member a welcome email and a survey; the links in them open Polish pages, and the
unsubscribe form, posted over HTTP, revokes the member's email consent in the database.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.app import App
from loyalty.models import Consent, Member, Message, Survey
from loyalty.states import MessageState
from tests.processes import answers, wait_for

JOURNEY = """
id: welcome_pl
name: Welcome
status: active
locales: [en, pl]
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - {id: hello, type: send_email, template: hello}
  - {id: nps, type: send_survey, survey: nps, channel: email, template: nps}
"""

TEMPLATES = {
    # No unsubscribe link of their own: the program adds it, in the member's language.
    "en/hello.email.liquid": '---\nsubject: "Welcome"\n---\n<p>Welcome!</p>\n',
    "pl/hello.email.liquid": '---\nsubject: "Witamy"\n---\n<p>Witamy w klubie!</p>\n',
    "en/nps.email.liquid": '---\nsubject: "One question"\n---\n<a href="{{ survey_url }}">Go</a>\n',
    "pl/nps.email.liquid": (
        '---\nsubject: "Jedno pytanie"\n---\n<a href="{{ survey_url }}">Odpowiedz</a>\n'
    ),
}


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def emails(outbox: Path) -> dict[str, EmailMessage]:
    """The emails in the local outbox, by subject."""
    found: dict[str, EmailMessage] = {}
    for path in outbox.rglob("*.eml"):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(mail, EmailMessage)
        found[str(mail["Subject"])] = mail
    return found


def body(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.integration
def test_a_polish_members_pages_from_loyalty_serve_are_in_polish(
    postgres_app: App, redis_url: str, tmp_path: Path
) -> None:
    database = postgres_app.database
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True)
    (folder / "welcome_pl.yaml").write_text(textwrap.dedent(JOURNEY).lstrip(), encoding="utf-8")
    for name, text in TEMPLATES.items():
        path = folder / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    outbox = tmp_path / "outbox"
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_url,
        "JOURNEYS_DIR": str(folder),
        "OUTBOX_DIR": str(outbox),
        "PUBLIC_BASE_URL": base,
        "PROGRAM_NAME": "Klub Smaku",
        "LOG_LEVEL": "WARNING",
    }
    loyalty = loyalty_command()

    def run(*args: str) -> None:
        subprocess.run([*loyalty, *args], env=env, check=True, capture_output=True, timeout=120)

    # Given a Polish member (pl-PL) who agreed to marketing email, and the published journey
    members = tmp_path / "members.csv"
    members.write_text(
        "external_id,email,first_name,locale,time_zone,email_consent\n"
        "m-pl,ola@example.com,Ola,pl-PL,Europe/Warsaw,yes\n",
        encoding="utf-8",
    )
    run("members", "import", str(members))
    run("journeys", "publish")

    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        wait_for(lambda: answers(f"{base}/healthz"), "loyalty serve to answer", logs=tmp_path)

        # When she signs up, the worker sends her the welcome email and the survey
        run("events", "emit", "member.enrolled", "--member", "m-pl", "--id", "signup-1", "--wait")

        def sent() -> bool:
            with database.sessions() as session:
                states = session.scalars(select(Message.state)).all()
            return sorted(states) == [MessageState.SENT, MessageState.SENT]

        wait_for(sent, "the welcome email and the survey to be sent", logs=tmp_path)
        mails = emails(outbox)
        welcome, survey_mail = mails["Witamy"], mails["Jedno pytanie"]
        # ... the footer the program adds is Polish too
        assert ">Wypisz się</a>" in body(welcome)
        unsubscribe_url = str(welcome["List-Unsubscribe"]).strip("<>")
        assert unsubscribe_url.startswith(f"{base}/u/")
        found = re.search(r'href="([^"]+/s/[^"]+)"', body(survey_mail))
        assert found is not None
        survey_url = found.group(1)

        # Then the unsubscribe page loyalty serve shows her is Polish
        page = httpx.get(unsubscribe_url, timeout=10)
        assert page.status_code == 200
        assert '<html lang="pl">' in page.text
        seen = text_of(page.text)
        assert "Klub Smaku: rezygnacja z wiadomości" in seen
        assert "Wypisz się" in seen
        assert "masz 0 punktów." in seen

        # ... and so is the survey, which records her answer
        question = httpx.get(survey_url, timeout=10)
        assert question.status_code == 200
        assert "Jak bardzo prawdopodobne jest, że polecisz nas znajomym?" in text_of(question.text)
        answered = httpx.post(survey_url, data={"score": "9", "comment": "Super"}, timeout=10)
        assert answered.status_code == 200
        assert "Zapisaliśmy Twoją odpowiedź i komentarz." in text_of(answered.text)

        # When she presses "Wypisz się" (the form posts back to the page's URL)
        done = httpx.post(unsubscribe_url, timeout=10)
        assert done.status_code == 200
        assert "Wypisaliśmy Cię" in text_of(done.text)
    finally:
        supervisor.stop_all()

    # Then the database holds her answer and the revoked consent
    with database.sessions() as session:
        member = session.scalars(select(Member).where(Member.external_id == "m-pl")).one()
        consents = session.scalars(select(Consent).where(Consent.member_id == member.id)).all()
        survey = session.scalars(select(Survey).where(Survey.member_id == member.id)).one()
    assert member.email_consent is False
    assert [(c.channel, c.granted, c.source) for c in consents][-1] == (
        "email",
        False,
        "unsubscribe_link",
    )
    assert (survey.score, survey.comment) == (9, "Super")
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "Traceback" not in logs and "ola@example.com" not in logs
