"""Twilio Programmable Messaging emulator: Messages, pacing, callbacks, inbound, opt-outs."""

from __future__ import annotations

import base64
import re
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from twilio.request_validator import RequestValidator

from sandbox.dispatch import Delivery, Dispatcher
from sandbox.emulator import ADMIN_PREFIX, Emulator
from sandbox.faults import FaultConfig
from sandbox.sms import keyword_type, segments

__all__ = ["TwilioSandbox"]

DEFAULT_ACCOUNT_SID = "AC" + "5a" * 16
DEFAULT_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
#: Sender used for a Messaging Service that has no configured numbers.
DEFAULT_SERVICE_NUMBER = "+15017122661"
API = "/2010-04-01/Accounts/{account_sid}"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
MAX_BODY = 1600


class TwilioSandbox(Emulator):
    """Messages.json with Basic auth, per-sender pacing, signed callbacks and inbound SMS."""

    name = "twilio"
    settings = (
        "inbound_url",
        "segments_per_second",
        "delivery_delay_s",
        "queue_timeout_s",
        "undelivered",
        "messaging_services",
    )

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        inbound_url: str | None = None,
        segments_per_second: float = 1.0,
        delivery_delay_s: float = 0.2,
        queue_timeout_s: float = 4 * 3600,
        undelivered: dict[str, int] | None = None,
        messaging_services: dict[str, list[str]] | None = None,
        faults: FaultConfig | None = None,
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.inbound_url = inbound_url
        self.segments_per_second = segments_per_second
        self.delivery_delay_s = delivery_delay_s
        self.queue_timeout_s = queue_timeout_s
        #: Recipient number -> error code its delivery fails with (30003, 30005, 30007...).
        self.undelivered = dict(undelivered or {})
        self.messaging_services = dict(messaging_services or {})
        self.dispatcher = Dispatcher("sandbox-twilio-callbacks")
        self._basic = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        super().__init__(faults=faults, port=port)

    def reset_state(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        #: (sender number or service sid, member number) pairs that texted STOP.
        self.opt_outs: set[tuple[str, str]] = set()
        self._next_free: dict[str, float] = {}
        self.dispatcher.clear()

    def close(self) -> None:
        self.dispatcher.close()

    # -- Python accessors ---------------------------------------------------------------

    def message(self, sid: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.messages[sid])

    def callbacks(self) -> list[Delivery]:
        """Every status callback and inbound post sent so far."""
        return self.dispatcher.deliveries()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.dispatcher.wait_idle(timeout)

    def is_opted_out(self, sender: str, member: str) -> bool:
        with self.lock:
            return (sender, member) in self.opt_outs

    def send_inbound(self, from_: str, to: str, body: str) -> str:
        """A member texts `body` to our number `to`: opt-out keywords apply, then a signed post."""
        sid = "SM" + secrets.token_hex(16)
        kind = keyword_type(body)
        service = next((s for s, nums in self.messaging_services.items() if to in nums), None)
        key = service or to
        now = _now()
        with self.lock:
            if kind == "STOP":
                self.opt_outs.add((key, from_))
            elif kind == "START":
                self.opt_outs.discard((key, from_))
            self.messages[sid] = self._resource(sid, from_, to, body, service, "received", now)
            self.messages[sid]["direction"] = "inbound"
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "FromCountry": "US",
            "To": to,
            "NumSegments": str(segments(body)[0]),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }
        if service:
            params["MessagingServiceSid"] = service
        if kind:
            params["OptOutType"] = kind
        url = self.inbound_url
        if url:
            self.dispatcher.schedule(0, lambda: self._post_signed(url, params))
        return sid

    # -- provider shapes ------------------------------------------------------------------

    def error_response(self, status: int) -> Response:
        return _error(20500 if status == 500 else 20503, "Internal Server Error", status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        return _error(20429, "Too Many Requests", 429)

    def provider_routes(self) -> list[BaseRoute]:
        return [
            Route(f"{API}/Messages.json", self.messages_endpoint, methods=["GET", "POST"]),
            Route(f"{API}/Messages/{{sid}}.json", self.fetch_message, methods=["GET"]),
        ]

    def extra_admin_routes(self) -> list[BaseRoute]:
        return [Route(f"{ADMIN_PREFIX}/inbound", self._admin_inbound, methods=["POST"])]

    def _authorized(self, request: Request) -> Response | None:
        if (
            request.headers.get("authorization") != self._basic
            or request.path_params["account_sid"] != self.account_sid
        ):
            return _error(20003, "Authenticate", 401)
        return None

    async def messages_endpoint(self, request: Request) -> Response:
        denied = self._authorized(request)
        if denied:
            return denied
        if request.method == "GET":
            return self._list(request)
        # Parsed by hand: form-urlencoded only, without the multipart dependency.
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        return self._create(form)

    async def fetch_message(self, request: Request) -> Response:
        denied = self._authorized(request)
        if denied:
            return denied
        with self.lock:
            found = self.messages.get(request.path_params["sid"])
            found = dict(found) if found is not None else None
        if found is None:
            msg = f"The requested resource {request.url.path} was not found"
            return _error(20404, msg, 404)
        return JSONResponse(found)

    def _list(self, request: Request) -> Response:
        size = int(request.query_params.get("PageSize", "50"))
        with self.lock:
            items = [dict(m) for m in reversed(self.messages.values())]  # newest first
        page = items[:size]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json?PageSize={size}&Page=0"
        return JSONResponse(
            {
                "messages": page,
                "end": max(len(page) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    def _create(self, form: dict[str, str]) -> Response:
        to, from_ = form.get("To", ""), form.get("From", "")
        service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
        if not to:
            return _error(21604, "A 'To' phone number is required.", 400)
        if not from_ and not service:
            return _error(21603, "A 'From' phone number is required.", 400)
        if service and not SERVICE_SID.match(service):
            return _error(21701, f"The Messaging Service Sid {service} is invalid.", 400)
        if not body and not form.get("MediaUrl"):
            return _error(21602, "Message body is required.", 400)
        if len(body) > MAX_BODY:
            msg = "The concatenated message body exceeds the 1600 character limit."
            return _error(21617, msg, 400)
        if not E164.match(to):
            return _error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
        if from_ and not E164.match(from_) and not from_.isalnum():
            msg = (
                f"The 'From' number {from_} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID."
            )
            return _error(21212, msg, 400)
        sender_key = service or from_
        sender = from_ or (self.messaging_services.get(service) or [DEFAULT_SERVICE_NUMBER])[0]
        with self.lock:
            if (sender_key, to) in self.opt_outs or (sender, to) in self.opt_outs:
                return _error(21610, "Attempt to send to unsubscribed recipient", 400)
            sid = "SM" + secrets.token_hex(16)
            status = "accepted" if service else "queued"
            message = self._resource(sid, sender, to, body, service or None, status, _now())
            self.messages[sid] = message
            limit = self.queue_timeout_s
            validity = form.get("ValidityPeriod", "")
            if validity.isdigit():
                limit = min(limit, float(validity))
            send_in = self._pace(sender_key, int(message["num_segments"]), limit)
            callback = form.get("StatusCallback") or None
            created = dict(message)  # as it was before any status change
        self._schedule_lifecycle(sid, send_in, limit, callback)
        return JSONResponse(created, status_code=201)

    def _pace(self, sender_key: str, num_segments: int, limit_s: float) -> float:
        """Seconds until this sender may send, reserving its slots (lock held)."""
        now = time.monotonic()
        start = max(now, self._next_free.get(sender_key, now))
        if start - now <= limit_s:
            self._next_free[sender_key] = start + num_segments / self.segments_per_second
        return start - now

    def _schedule_lifecycle(
        self, sid: str, send_in: float, limit_s: float, callback: str | None
    ) -> None:
        def transition(status: str, error: int | None = None) -> None:
            with self.lock:
                message = self.messages.get(sid)
                if message is None:
                    return
                message["status"] = status
                message["date_updated"] = _now()
                if status == "sent":
                    message["date_sent"] = message["date_updated"]
                    message["price"] = f"-{0.0079 * int(message['num_segments']):.5f}"
                if error is not None:
                    message["error_code"] = error
                    message["error_message"] = _DELIVERY_ERRORS.get(error, "Unknown error")
                params = {
                    "SmsSid": sid,
                    "SmsStatus": status,
                    "MessageStatus": status,
                    "To": message["to"],
                    "From": message["from"],
                    "MessageSid": sid,
                    "AccountSid": self.account_sid,
                    "ApiVersion": "2010-04-01",
                }
                if message["messaging_service_sid"]:
                    params["MessagingServiceSid"] = message["messaging_service_sid"]
                if error is not None:
                    params["ErrorCode"] = str(error)
            if callback:
                self._post_signed(callback, params)

        schedule = self.dispatcher.schedule
        if send_in > limit_s:
            # Waited longer than the queue (or the message's ValidityPeriod) allows.
            schedule(limit_s, lambda: transition("failed", 30001))
            return
        schedule(0, lambda: transition("queued"))
        schedule(send_in, lambda: transition("sent"))
        to = self.messages[sid]["to"]
        code = self.undelivered.get(to)
        final_in = send_in + self.delivery_delay_s
        if code is None:
            schedule(final_in, lambda: transition("delivered"))
        else:
            schedule(final_in, lambda: transition("undelivered", code))

    def _post_signed(self, url: str, params: dict[str, str]) -> None:
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "X-Twilio-Signature": signature,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        self.dispatcher.post(url, urlencode(params).encode(), headers)

    def _resource(
        self, sid: str, from_: str, to: str, body: str, service: str | None, status: str, now: str
    ) -> dict[str, Any]:
        count, _ = segments(body)
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(count),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }

    async def _admin_inbound(self, request: Request) -> Response:
        body = await request.json()
        sid = self.send_inbound(body["from"], body["to"], body.get("body", ""))
        return JSONResponse({"sid": sid}, status_code=201)


_DELIVERY_ERRORS = {
    30001: "Queue overflow",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
}


def _error(code: int, message: str, status: int) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


def _now() -> str:
    return format_datetime(datetime.now(UTC))
