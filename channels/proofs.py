"""Test sends: one rendered template to one address, outside any journey and policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers

from channels import outbox
from channels.render import RenderError, locale_chain, render_message
from channels.segments import measure
from channels.sendgrid_sender import OutgoingEmail, SendGridSender
from channels.templates import read_partials
from channels.twilio_sender import OutgoingSms, TwilioSender
from loyalty.app import App
from loyalty.members import get_member, member_data
from loyalty.referrals import referral_link

__all__ = ["send_test"]

#: Stands in for a member when none is named.
SAMPLE_MEMBER: dict[str, Any] = {
    "external_id": "sample",
    "first_name": "Alex",
    "last_name": "Sample",
    "tier": "silver",
    "points_balance": 1250,
    "lifetime_points": 2400,
    "points_expiring": 150,
    "points_expiring_at": None,
    "referral_code": "SAMPLE1234",
    "referrals_completed": 1,
    "orders_count": 3,
    "email_consent": True,
    "sms_consent": True,
    "attributes": {},
}


def send_test(
    app: App,
    name: str,
    address: str,
    *,
    external_id: str | None,
    locale: str | None,
    templates_dir: Path,
    now: datetime,
) -> str:
    channel = "email" if "@" in address else "sms"
    to = address
    if channel == "sms":
        number = phonenumbers.parse(address, app.settings.default_phone_region)
        if not phonenumbers.is_valid_number(number):
            raise ValueError(f"{address!r} is neither an email address nor a valid phone number")
        to = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    member: dict[str, Any] = {
        **SAMPLE_MEMBER,
        "points_expiring_at": now + timedelta(days=30),
        "referral_link": referral_link(
            app.settings.public_base_url, SAMPLE_MEMBER["referral_code"]
        ),
    }
    member_locale = None
    if external_id:
        with app.database.sessions() as session:
            row = get_member(session, external_id)
            member = member_data(
                session,
                row,
                now=now,
                public_base_url=app.settings.public_base_url,
                default_zone=app.settings.default_time_zone,
            )
            member_locale = row.locale
    base = app.settings.public_base_url.rstrip("/")
    data = {
        "member": member,
        "journey": {"id": "send-test", "name": "Test send"},
        "occurrence": now.date().isoformat(),
        "event": {},
        "award": {"points": 100, "expires_at": (now + timedelta(days=30)).isoformat()},
        "points_expiring": member.get("points_expiring", 0),
        "points_expiring_at": member.get("points_expiring_at"),
        "unsubscribe_url": f"{base}/u/TEST",
        "survey_url": f"{base}/s/TEST",
    }
    templates = {
        f"{p.parent.name}/{p.name.removesuffix('.liquid')}": p.read_text(encoding="utf-8")
        for p in templates_dir.glob(f"*/{name}.{channel}.liquid")
    }
    if not templates:
        raise LookupError(f"no {channel} template {name!r} under {templates_dir}")
    templates |= read_partials(templates_dir)
    chain = locale_chain(locale or member_locale or app.settings.default_locale, "en")
    try:
        rendered = render_message(templates, name, channel, chain, data)
    except RenderError as exc:
        raise ValueError(f"cannot render: {exc}") from None
    if channel == "email":
        subject = f"[TEST] {rendered.subject or ''}"
        if app.settings.sendgrid_api_key:
            outcome = SendGridSender(app.settings).send(
                [OutgoingEmail(0, to, subject, rendered.body, rendered.text or "", {})]
            )
            return f"email {outcome.kind} to {to} ({rendered.locale}) {outcome.error or ''}".strip()
        path = outbox.write_email(
            app.settings.outbox_dir / "tests",
            0,
            rendered,
            to=to,
            sender=app.settings.email_from or "loyalty@localhost",
            sent_at=now,
            headers={"Subject-Prefix": "TEST"},
        )
        return f"email written to {path} ({rendered.locale}): {subject}"
    size = measure(rendered.body)
    detail = f"{size.segments} segment(s), {size.encoding}"
    if app.settings.twilio_account_sid and app.settings.twilio_auth_token:
        outcome = TwilioSender(app.settings, app.pacers).send(OutgoingSms(0, to, rendered.body))
        return f"sms {outcome.kind} to {to} ({detail}) {outcome.error or ''}".strip()
    path = outbox.write_sms(app.settings.outbox_dir / "tests", 0, rendered, to=to, sent_at=now)
    return f"sms written to {path} ({detail}): {rendered.body}"
