"""Module that `loyalty worker` hands to the Dramatiq CLI: builds the broker and the App."""

from __future__ import annotations

from automations import runtime
from automations.broker import build_broker
from loyalty.app import App
from loyalty.logs import configure_logging

app = App.from_settings()
configure_logging(app.settings.log_level)
runtime.configure(app)
broker = build_broker(app.settings)
