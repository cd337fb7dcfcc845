"""Apps pointed at the SendGrid and Twilio emulators, for the channel tests."""

from __future__ import annotations

import pytest

from loyalty.app import App
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox
from tests.conftest import make_settings

#: The sending number of the emulated Twilio account.
SENDER = "+15005550006"


@pytest.fixture
def mail_app(app: App, sendgrid_sandbox: SendGridSandbox) -> App:
    """The test app sending email through the SendGrid emulator (answers lost after 1 s).

    Due emails go at once: the frozen clock would never end a gathering (it has tests of
    its own, with the clock moved on).
    """
    app.settings = make_settings(
        app.database,
        email_batch_gather_ms=0,
        sendgrid_api_key=sendgrid_sandbox.api_key,
        sendgrid_base_url=sendgrid_sandbox.base_url,
        email_from="club@example.com",
        max_marketing_emails_per_week=100,
        provider_timeout_seconds=1.0,
        outbox_dir=app.settings.outbox_dir,
    )
    return app


@pytest.fixture
def sms_app(app: App, twilio_sandbox: TwilioSandbox) -> App:
    """The test app sending SMS through the Twilio emulator, unpaced, no quiet hours."""
    app.settings = make_settings(
        app.database,
        twilio_account_sid=twilio_sandbox.account_sid,
        twilio_auth_token=twilio_sandbox.auth_token,
        twilio_base_url=twilio_sandbox.base_url,
        twilio_from=SENDER,
        twilio_messages_per_second=1000,
        sms_quiet_hours="",
        outbox_dir=app.settings.outbox_dir,
    )
    return app
