"""A referral program wired to the Shopify emulator, customers who order through signed
webhooks, and the rows to assert on."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from automations.runtime.ticks import pay_referrals
from loyalty.app import App
from loyalty.models import Event, Member, Referral
from sandbox.shopify import ShopifySandbox
from sandbox.shopify_payloads import address, customer_payload, order_payload, refund_payload
from tests.conftest import make_settings
from tests.engine.helpers import published, workers
from tests.shops.support import SHOPIFY_SECRET, post_shopify, process_stored_events

SHOP_URL = "https://shop.example"
FRIEND_REWARD = "friend_discount"
REFERRAL_POINTS = 500
CATALOG = f"""\
rewards:
  - id: {FRIEND_REWARD}
    name: {{en: "10% off your first order"}}
    cost: 1
    kind: percentage
    percentage: 10
"""
JOURNEY = f"""\
id: referral_reward
name: Referral reward
status: active
trigger:
  type: event
  event: referral.completed
  conditions: {{field: event.fraud_verdict, in: [clean, approved]}}
entry: {{every_time: true}}
steps:
  - {{id: reward, type: award_points, amount: {REFERRAL_POINTS}, reason: Referral reward}}
"""

_ids = itertools.count(5000)


def program(app: App, tmp_path: Path, sandbox: ShopifySandbox, **settings: Any) -> App:
    """`app` with the referral program on: Shopify webhooks and codes, the friend reward, the
    referral journey published."""
    folder = tmp_path / "journeys"
    folder.mkdir(exist_ok=True)
    (folder / "rewards.yaml").write_text(CATALOG, encoding="utf-8")
    (folder / "referral_reward.yaml").write_text(JOURNEY, encoding="utf-8")
    values: dict[str, Any] = {
        "journeys_dir": folder,
        "outbox_dir": tmp_path / "outbox",
        "shopify_webhook_secret": SHOPIFY_SECRET,
        "shopify_shop_domain": sandbox.shop_domain,
        "shopify_access_token": sandbox.access_token,
        "shopify_api_version": sandbox.api_version,
        "shopify_ca_bundle": sandbox.ca_file,
        "reward_code_secret": "test-secret",
        "provider_timeout_seconds": 2.0,
        "points_per_currency_unit": "1",
        "shop_url": SHOP_URL,
        "referral_friend_reward": FRIEND_REWARD,
        **settings,
    }
    configured = App(make_settings(app.database, **values), app.database, app.clock)
    published(configured, folder)
    return configured


class Shop:
    """Customers ordering at the Shopify shop: each delivery is a signed webhook."""

    def __init__(self, app: App, client: TestClient, sandbox: ShopifySandbox) -> None:
        self.app, self.client, self.sandbox = app, client, sandbox

    def customer(self, customer_id: int, **fields: Any) -> dict[str, Any]:
        fields.setdefault("email", f"customer{customer_id}@example.com")
        fields.setdefault("first_name", f"C{customer_id}")
        return customer_payload(customer_id, created_at=self.app.clock.now(), **fields)

    def sign_up(self, customer: dict[str, Any]) -> Member:
        self._post("customers/create", customer)
        return self.member(customer["id"])

    def order(
        self,
        customer: dict[str, Any],
        *,
        codes: list[str] | None = None,
        ip: str | None = None,
        ship_to: dict[str, Any] | None = None,
        total: str = "100.00",
    ) -> int:
        order_id = next(_ids)
        payload = order_payload(
            order_id,
            total,
            customer=customer,
            discount_codes=codes or [],
            browser_ip=ip or f"198.51.100.{order_id % 250}",
            shipping_address=ship_to or address(address1=f"Street {order_id}"),
            created_at=self.app.clock.now(),
        )
        self._post("orders/paid", payload)
        return order_id

    def refund(self, order_id: int, amount: str = "100.00") -> None:
        self._post("refunds/create", refund_payload(next(_ids), order_id, amount))

    def visit(self, code: str) -> Any:
        return self.client.get(f"/r/{code}", follow_redirects=False)

    def friend_code(self, referrer: Member) -> str:
        answer = self.visit(referrer.referral_code)
        assert answer.status_code == 303, answer.text
        return str(answer.headers["location"]).rsplit("/", 1)[1]

    def _post(self, topic: str, payload: dict[str, Any]) -> None:
        answer = post_shopify(self.client, topic, payload, shop_domain=self.sandbox.shop_domain)
        assert answer.status_code == 200, answer.text
        process_stored_events(self.app)

    def member(self, customer_id: int) -> Member:
        with self.app.database.sessions() as session:
            member = session.scalars(
                select(Member).where(Member.external_id == f"shopify:{customer_id}")
            ).one()
            session.expunge(member)
            return member


def payouts(app: App) -> int:
    """The scheduler's referral tick, with workers to process what it records."""
    with workers(app):
        return pay_referrals(app)


def referral_of(app: App, referee: Member) -> Referral:
    with app.database.sessions() as session:
        referral = session.scalars(select(Referral).where(Referral.referee_id == referee.id)).one()
        session.expunge(referral)
        return referral


def balance(app: App, member: Member) -> int:
    with app.database.sessions() as session:
        return int(session.get_one(Member, member.id).points_balance)


def referral_events(app: App) -> int:
    with app.database.sessions() as session:
        count = session.scalar(
            select(func.count(Event.id)).where(Event.type == "referral.completed")
        )
        return int(count or 0)
