"""Local HubSpot, Salesforce, SendGrid and Twilio emulators that speak the real wire formats.

Each emulator serves on 127.0.0.1 from a background thread; see sandbox/README.md.
"""

from __future__ import annotations

from sandbox.faults import FaultConfig
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import FieldSpec, SalesforceSandbox
from sandbox.sendgrid import SendGridSandbox
from sandbox.sink import WebhookSink
from sandbox.stack import Ports, SandboxStack
from sandbox.twilio import TwilioSandbox

__all__ = [
    "FaultConfig",
    "FieldSpec",
    "HubSpotSandbox",
    "Ports",
    "SalesforceSandbox",
    "SandboxStack",
    "SendGridSandbox",
    "TwilioSandbox",
    "WebhookSink",
]
