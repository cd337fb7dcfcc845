"""What one event costs the database on its way to its email, counted so it cannot grow unseen.

A journey mails a member when a `member.enrolled` event arrives. The event is stored, then
each hop (the event, the enrollment's step, the delivery to the SendGrid emulator) runs in
this thread; a SQLAlchemy listener counts the statements and commits they send.
"""

from __future__ import annotations

import json
from pathlib import Path

from automations.versions import publish
from bench.pipeline_journey import event_journey, mailable_members, one_event_to_email
from loyalty.app import App
from sandbox.sendgrid import SendGridSandbox
from tests.channels.support import states

#: Statements of one event → email, each hop's bound (measured: intake 3, the event with
#: the step it starts 12, delivery 13 on both databases; the event and its step took 8 and
#: 6 in two transactions before they shared one, the delivery 15 before its claim recorded
#: that its request left, and it all took 42 before the pipeline work).
BOUNDS = {"intake": 3, "event": 12, "delivery": 13}
#: Commits: the intake, the event with its step, and the delivery's claim (with "request
#: left", committed just before the request goes) and record: what makes a send exactly-once.
COMMITS = 4


def test_one_event_to_its_email_takes_a_bounded_number_of_statements(
    mail_app: App, sendgrid_sandbox: SendGridSandbox, tmp_path: Path
) -> None:
    # Given a journey that mails a member on `member.enrolled`, and two members
    folder = event_journey(tmp_path / "journeys")
    mail_app.settings = mail_app.settings.model_copy(update={"journeys_dir": folder})
    publish(mail_app, folder)
    first, second = mailable_members(mail_app, 2)
    one_event_to_email(mail_app, first, "warm-up")  # reads the published version once

    # When the second member's event goes all the way to the emulator
    counts = one_event_to_email(mail_app, second, "counted")

    # Then the email left, and it took no more statements and commits than the bounds
    sent = [json.loads(r.body) for r in sendgrid_sandbox.requests(path="/v3/mail/send")]
    addresses = [p["to"][0]["email"] for body in sent for p in body["personalizations"]]
    assert addresses == [f"{first}@example.com", f"{second}@example.com"]
    assert states(mail_app) == {"sent": 2}
    over = {hop: n for hop, n in counts.by_hop.items() if n > BOUNDS.get(hop, 0)}
    assert not over, f"{counts} (bounds {BOUNDS})"
    assert counts.statements <= sum(BOUNDS.values()), str(counts)
    assert counts.commits <= COMMITS, str(counts)
