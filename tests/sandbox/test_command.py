"""`loyalty sandbox` prints the environment and serves all four emulators."""

from __future__ import annotations

import shlex
import ssl

import httpx
from click.testing import CliRunner

from sandbox.command import sandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.stack import SandboxStack

EXPECTED = {
    "HUBSPOT_BASE_URL",
    "HUBSPOT_ACCESS_TOKEN",
    "SALESFORCE_INSTANCE_URL",
    "SALESFORCE_ACCESS_TOKEN",
    "SALESFORCE_API_VERSION",
    "SALESFORCE_CA_BUNDLE",
    "SENDGRID_BASE_URL",
    "SENDGRID_API_KEY",
    "SENDGRID_WEBHOOK_PUBLIC_KEY",
    "TWILIO_BASE_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM",
    "EMAIL_FROM",
    "POSTAL_ADDRESS",
    "SHOPIFY_SHOP_DOMAIN",
    "SHOPIFY_ACCESS_TOKEN",
    "SHOPIFY_API_VERSION",
    "SHOPIFY_WEBHOOK_SECRET",
    "SHOPIFY_CA_BUNDLE",
    "WOOCOMMERCE_URL",
    "WOOCOMMERCE_CONSUMER_KEY",
    "WOOCOMMERCE_CONSUMER_SECRET",
    "WOOCOMMERCE_WEBHOOK_SECRET",
    "SHOP_URL",
    "REWARD_CODE_SECRET",
}


def test_command_prints_exports_for_every_provider() -> None:
    result = CliRunner().invoke(sandbox, ["--duration", "0", "--error-rate", "0.1"])

    assert result.exit_code == 0, result.output
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in result.stdout.splitlines()
        if line.startswith("export ")
    )
    assert set(exports) == EXPECTED
    assert exports["HUBSPOT_BASE_URL"].startswith("http://127.0.0.1:")
    assert exports["SALESFORCE_INSTANCE_URL"].startswith("https://127.0.0.1:")


def test_the_sandbox_org_has_every_field_the_shipped_mapping_needs() -> None:
    from crm_sync.adapters import make_adapter
    from loyalty.app import App
    from loyalty.db import Database
    from loyalty.settings import load_settings

    with SandboxStack.create() as stack:
        env = {k.lower(): v for k, v in stack.environment().items()}
        settings = load_settings(database_url="sqlite://", redis_url=None, **env)
        app = App(settings, Database(settings.database_url))

        problems = make_adapter(app, "salesforce").check()

    assert problems == []


def test_stack_serves_all_four_on_loopback() -> None:
    with SandboxStack.create() as stack:
        env = stack.environment()
        for key in ("HUBSPOT_BASE_URL", "SENDGRID_BASE_URL", "TWILIO_BASE_URL"):
            assert httpx.get(f"{env[key]}/__sandbox/faults").status_code == 200
        salesforce = httpx.get(
            f"{env['SALESFORCE_INSTANCE_URL']}/__sandbox/faults",
            verify=ssl.create_default_context(cafile=env["SALESFORCE_CA_BUNDLE"]),
        )
        assert salesforce.status_code == 200


def test_an_emulator_restarts_after_stop() -> None:
    emulator = SalesforceSandbox()
    emulator.start()
    emulator.stop()

    with emulator:
        assert emulator.base_url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(emulator.ca_file))
        response = httpx.get(f"{emulator.base_url}/__sandbox/faults", verify=context)

    assert response.status_code == 200


def test_the_loyalty_command_offers_the_sandbox_through_its_entry_point() -> None:
    from cli import main

    result = CliRunner().invoke(main, ["sandbox", "--duration", "0"])

    assert result.exit_code == 0, result.output
    assert "HUBSPOT_BASE_URL=" in result.output
