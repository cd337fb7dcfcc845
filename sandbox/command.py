"""`loyalty sandbox`: run the provider and shop emulators on loopback until Ctrl-C."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import click

from sandbox.emulator import ADMIN_PREFIX
from sandbox.faults import FaultConfig
from sandbox.stack import Ports, SandboxStack

__all__ = ["sandbox"]


@click.command("sandbox")
@click.option("--hubspot-port", type=int, default=0, show_default=True, help="0 = any free port.")
@click.option("--salesforce-port", type=int, default=0, show_default=True)
@click.option("--sendgrid-port", type=int, default=0, show_default=True)
@click.option("--twilio-port", type=int, default=0, show_default=True)
@click.option("--shopify-port", type=int, default=0, show_default=True)
@click.option("--woocommerce-port", type=int, default=0, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, help="Added to every provider response.")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of 500/503.")
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests processed whose response never comes.",
)
@click.option("--rate-limit", type=int, default=None, help="Extra limit: requests per window.")
@click.option("--rate-window", type=float, default=1.0, show_default=True, help="Seconds.")
@click.option("--seed", type=int, default=None, help="Seed for the fault draws.")
@click.option("--sendgrid-webhook-url", default=None, help="Where signed email events go.")
@click.option("--twilio-inbound-url", default=None, help="Where inbound SMS are posted.")
@click.option("--twilio-segments-per-second", type=float, default=1.0, show_default=True)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the test CA (Salesforce, Shopify) here instead of a temporary folder.",
)
@click.option("--dotenv", is_flag=True, help="Print KEY=value lines instead of shell exports.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def sandbox(
    hubspot_port: int,
    salesforce_port: int,
    sendgrid_port: int,
    twilio_port: int,
    shopify_port: int,
    woocommerce_port: int,
    latency_ms: float,
    error_rate: float,
    drop_rate: float,
    rate_limit: int | None,
    rate_window: float,
    seed: int | None,
    sendgrid_webhook_url: str | None,
    twilio_inbound_url: str | None,
    twilio_segments_per_second: float,
    tls_dir: Path | None,
    dotenv: bool,
    duration: float | None,
) -> None:
    """Run local HubSpot, Salesforce, SendGrid, Twilio, Shopify and WooCommerce emulators."""
    faults = FaultConfig(
        latency_ms=latency_ms,
        error_rate=error_rate,
        drop_rate=drop_rate,
        rate_limit=rate_limit,
        rate_window_s=rate_window,
        seed=seed,
    )
    stack = SandboxStack.create(
        Ports(
            hubspot_port,
            salesforce_port,
            sendgrid_port,
            twilio_port,
            shopify_port,
            woocommerce_port,
        ),
        faults,
        sendgrid_webhook_url=sendgrid_webhook_url,
        twilio_inbound_url=twilio_inbound_url,
        twilio_segments_per_second=twilio_segments_per_second,
        tls_dir=tls_dir,
    )
    with stack:
        for key, value in stack.environment().items():
            click.echo(f"{key}={value}" if dotenv else f"export {key}={shlex.quote(value)}")
        for emulator in stack.emulators:
            admin = f"{emulator.base_url}{ADMIN_PREFIX}/{{requests,faults,reset}}"
            click.echo(f"# {emulator.name}: {admin}", err=True)
        click.echo("# sandbox running; Ctrl-C to stop", err=True)
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            click.echo("# stopping", err=True)
