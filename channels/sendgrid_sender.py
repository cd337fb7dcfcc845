"""SendGrid mail send: one request for up to 1000 messages that share a template.

Each message is a personalization carrying its own recipient, subject,
headers (one-click unsubscribe), `custom_args.message_id`, and its rendered
body as substitutions into a shared content. A body too large for
substitutions (10,000 bytes per personalization) goes in a request of its own.
"""

from __future__ import annotations

import json
import time
import urllib.error
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from channels.outcomes import Outcome, OutcomeKind, retry_after_seconds
from loyalty.settings import Settings

__all__ = ["Outcome", "OutgoingEmail", "SendGridSender", "batches"]

#: SendGrid's limits per request and per personalization's substitutions.
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
_HTML, _TEXT = "%loyalty_html%", "%loyalty_text%"


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: int
    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    categories: tuple[str, ...] = ()
    template_id: str | None = None
    template_data: dict[str, Any] | None = None


def _fits(email: OutgoingEmail) -> bool:
    return len(email.html.encode()) + len(email.text.encode()) <= MAX_SUBSTITUTION_BYTES


def batches(emails: list[OutgoingEmail]) -> list[list[OutgoingEmail]]:
    """Group into requests: dynamic templates and small bodies share, large bodies go alone.

    A request's template, categories and unsubscribe group are its first email's, so only
    emails that agree on them share one.
    """
    shared: dict[tuple[str | None, tuple[str, ...], bool], list[OutgoingEmail]] = {}
    alone: list[list[OutgoingEmail]] = []
    for email in emails:
        if email.template_id or _fits(email):
            key = (email.template_id, email.categories, "List-Unsubscribe" in email.headers)
            shared.setdefault(key, []).append(email)
        else:
            alone.append([email])
    out = [
        group[i : i + MAX_PERSONALIZATIONS]
        for group in shared.values()
        for i in range(0, len(group), MAX_PERSONALIZATIONS)
    ]
    return out + alone


class SendGridSender:
    def __init__(self, settings: Settings) -> None:
        assert settings.sendgrid_api_key
        self._client = SendGridAPIClient(settings.sendgrid_api_key, host=settings.sendgrid_base_url)
        self._from = {"email": settings.email_from or "loyalty@example.com"}
        self._reply_to = settings.email_reply_to
        self._group = settings.sendgrid_unsubscribe_group_id
        self._timeout = settings.provider_timeout_seconds

    def body(self, batch: list[OutgoingEmail]) -> dict[str, Any]:
        first = batch[0]
        personalizations = []
        for email in batch:
            item: dict[str, Any] = {
                "to": [{"email": email.to}],
                "custom_args": {"message_id": str(email.message_id)},
            }
            if email.headers:
                item["headers"] = email.headers
            if first.template_id:
                item["dynamic_template_data"] = {
                    **(email.template_data or {}),
                    "subject": email.subject,
                }
            else:
                item["subject"] = email.subject
                if len(batch) > 1:  # a lone message carries its body as content directly
                    item["substitutions"] = {_HTML: email.html, _TEXT: email.text}
            personalizations.append(item)
        body: dict[str, Any] = {"personalizations": personalizations, "from": self._from}
        if self._reply_to:
            body["reply_to"] = {"email": self._reply_to}
        if first.template_id:
            body["template_id"] = first.template_id
        elif len(batch) == 1:
            body["content"] = [
                {"type": "text/plain", "value": first.text},
                {"type": "text/html", "value": first.html},
            ]
        else:
            body["content"] = [
                {"type": "text/plain", "value": _TEXT},
                {"type": "text/html", "value": _HTML},
            ]
        if first.categories:
            body["categories"] = list(first.categories)[:10]
        if self._group and any("List-Unsubscribe" in e.headers for e in batch):
            body["asm"] = {"group_id": self._group}
        return body

    def send(self, batch: list[OutgoingEmail]) -> Outcome:
        """One request; the outcome says whether it landed, may be retried, or is unknown."""
        try:
            response = self._client.client.mail.send.post(
                request_body=self.body(batch), timeout=self._timeout
            )
        except HTTPError as exc:
            return _classify(exc)
        except urllib.error.URLError as exc:
            # Raised while connecting or writing: the request never arrived whole.
            return Outcome(OutcomeKind.RETRY, error=f"connection: {exc.reason}")
        except (TimeoutError, ConnectionError, OSError) as exc:
            # The request left; its answer did not come back. Never resend blindly.
            return Outcome(OutcomeKind.UNKNOWN, error=f"no response: {type(exc).__name__}")
        headers = {k.lower(): v for k, v in dict(response.headers).items()}
        return Outcome(
            OutcomeKind.SENT,
            provider_id=headers.get("x-message-id"),
            status=int(response.status_code),
        )


def _classify(exc: HTTPError) -> Outcome:
    status = int(exc.status_code)
    headers = {k.lower(): v for k, v in dict(exc.headers or {}).items()}
    if status == 429 or status >= 500:
        return Outcome(
            OutcomeKind.RETRY,
            retry_after=_wait(headers),
            error=f"HTTP {status}",
            throttled=status == 429,
            status=status,
        )
    try:
        errors = json.loads(exc.body)["errors"]
        reason = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors)
    except (ValueError, KeyError, TypeError):
        reason = str(exc.body)[:300]
    return Outcome(OutcomeKind.FAILED, error=f"HTTP {status}: {reason}", status=status)


def _wait(headers: dict[str, str]) -> float | None:
    """How long SendGrid asked us to wait: Retry-After, else until X-RateLimit-Reset."""
    delay = retry_after_seconds(headers.get("retry-after"))
    if delay is not None:
        return delay
    reset = headers.get("x-ratelimit-reset", "")
    try:
        return max(1.0, float(reset) - time.time())  # a Unix time, in seconds
    except ValueError:
        return None
