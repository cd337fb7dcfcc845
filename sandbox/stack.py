"""All the emulators together, and the environment that points the project at them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.salesforce_org import mapped_custom_fields
from sandbox.sendgrid import SendGridSandbox
from sandbox.shopify import ShopifySandbox
from sandbox.tls import LoopbackTLS
from sandbox.twilio import TwilioSandbox
from sandbox.woocommerce import WooCommerceSandbox

__all__ = ["Ports", "SandboxStack"]

#: API version the Salesforce emulator is addressed with by default.
SALESFORCE_API_VERSION = "59.0"
#: The sending number the emulated Twilio account uses (one of Twilio's test numbers).
SANDBOX_SENDER = "+15005550006"
#: A sample key for reward codes (never a production value).
SANDBOX_REWARD_CODE_SECRET = "sandbox-reward-codes-0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Ports:
    """0 picks a free port."""

    hubspot: int = 0
    salesforce: int = 0
    sendgrid: int = 0
    twilio: int = 0
    shopify: int = 0
    woocommerce: int = 0


@dataclass
class SandboxStack:
    hubspot: HubSpotSandbox
    salesforce: SalesforceSandbox
    sendgrid: SendGridSandbox
    twilio: TwilioSandbox
    shopify: ShopifySandbox
    woocommerce: WooCommerceSandbox
    _started: bool = field(default=False, repr=False)

    @classmethod
    def create(
        cls,
        ports: Ports | None = None,
        faults: FaultConfig | None = None,
        *,
        sendgrid_webhook_url: str | None = None,
        twilio_inbound_url: str | None = None,
        twilio_segments_per_second: float = 1.0,
        tls_dir: Path | None = None,
        mapping_file: Path | None = None,
    ) -> SandboxStack:
        """Every emulator; the Salesforce org has the fields the CRM mapping needs.

        Salesforce and Shopify share one test CA, so one bundle trusts both.
        """
        ports = ports or Ports()
        tls = LoopbackTLS(tls_dir)
        return cls(
            hubspot=HubSpotSandbox(port=ports.hubspot, faults=faults),
            salesforce=SalesforceSandbox(
                port=ports.salesforce,
                faults=faults,
                tls=tls,
                custom_fields=mapped_custom_fields(mapping_file),
            ),
            sendgrid=SendGridSandbox(
                port=ports.sendgrid, faults=faults, webhook_url=sendgrid_webhook_url
            ),
            twilio=TwilioSandbox(
                port=ports.twilio,
                faults=faults,
                inbound_url=twilio_inbound_url,
                segments_per_second=twilio_segments_per_second,
            ),
            shopify=ShopifySandbox(port=ports.shopify, faults=faults, tls=tls),
            woocommerce=WooCommerceSandbox(port=ports.woocommerce, faults=faults),
        )

    @property
    def emulators(self) -> tuple[Emulator, ...]:
        return (
            self.hubspot,
            self.salesforce,
            self.sendgrid,
            self.twilio,
            self.shopify,
            self.woocommerce,
        )

    def start(self) -> Self:
        try:
            for emulator in self.emulators:
                emulator.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """Settings that point the project's clients at the running emulators."""
        return {
            "HUBSPOT_BASE_URL": self.hubspot.base_url,
            "HUBSPOT_ACCESS_TOKEN": self.hubspot.access_token,
            "SALESFORCE_INSTANCE_URL": self.salesforce.base_url,
            "SALESFORCE_ACCESS_TOKEN": self.salesforce.access_token,
            "SALESFORCE_API_VERSION": SALESFORCE_API_VERSION,
            "SALESFORCE_CA_BUNDLE": str(self.salesforce.ca_file),
            "SENDGRID_BASE_URL": self.sendgrid.base_url,
            "SENDGRID_API_KEY": self.sendgrid.api_key,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": self.sendgrid.public_key,
            "TWILIO_BASE_URL": self.twilio.base_url,
            "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
            "TWILIO_FROM": SANDBOX_SENDER,
            # Marketing email needs a sender and a postal address (CAN-SPAM); sample ones.
            "EMAIL_FROM": "loyalty@example.com",
            "POSTAL_ADDRESS": "Example Shop, 1 Sample Street, 00-001 Warsaw, Poland",
            "SHOPIFY_SHOP_DOMAIN": self.shopify.shop_domain,
            "SHOPIFY_ACCESS_TOKEN": self.shopify.access_token,
            "SHOPIFY_API_VERSION": self.shopify.api_version,
            "SHOPIFY_WEBHOOK_SECRET": self.shopify.webhook_secret,
            "SHOPIFY_CA_BUNDLE": str(self.shopify.ca_file),
            "WOOCOMMERCE_URL": self.woocommerce.url,
            "WOOCOMMERCE_CONSUMER_KEY": self.woocommerce.consumer_key,
            "WOOCOMMERCE_CONSUMER_SECRET": self.woocommerce.consumer_secret,
            "WOOCOMMERCE_WEBHOOK_SECRET": self.woocommerce.webhook_secret,
            # Links in messages point at the emulated shop's storefront page.
            "SHOP_URL": self.woocommerce.url,
            # Reward codes at a shop are derived from this key; a fixed sample keeps them
            # the same from one sandbox run to the next.
            "REWARD_CODE_SECRET": SANDBOX_REWARD_CODE_SECRET,
        }
