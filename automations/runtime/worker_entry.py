"""Module that `loyalty worker` hands to the Dramatiq CLI: builds the broker and the App."""

from __future__ import annotations

from automations import runtime
from automations.runtime.broker import build_broker, serve_worker_metrics
from automations.runtime.pacing import pacers_for
from loyalty.app import App
from loyalty.collector import tune_collector
from loyalty.logs import configure_logging
from loyalty.settings import get_settings

app = App.from_settings(pacers=pacers_for(get_settings()))
configure_logging(app.settings.log_level, app.settings.log_format)
runtime.configure(app)
broker = build_broker(app.settings)
serve_worker_metrics(broker, app.settings)
tune_collector()  # the process's own objects are built: see `loyalty.collector`
