"""The Grafana dashboard shipped in ops/grafana queries only figures that `/metrics` exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from loyalty.app import App
from tests.conftest import make_settings
from web.app import create_app

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "loyalty-journeys.json"
#: The series names a family of each type exposes, after its own name.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def queried_names(dashboard: dict[str, object]) -> set[str]:
    panels = dashboard["panels"]
    assert isinstance(panels, list)
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert exprs, "the dashboard queries nothing"
    return {name for expr in exprs for name in re.findall(r"\bloyalty_[a-z0-9_]+\b", expr)}


@pytest.mark.integration
def test_every_metric_the_dashboard_queries_is_exposed(app: App, redis_url: str) -> None:
    # Given the shipped dashboard, valid JSON with one id per panel
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    names = queried_names(dashboard)

    # When /metrics of a web process with a database and Redis is scraped
    app.settings = make_settings(app.database, redis_url=redis_url)
    with TestClient(create_app(app)) as client:
        text = client.get("/metrics").text

    # Then every series the dashboard queries is there (families without samples yet
    # still announce themselves), and the dashboard covers every family of ours
    exposed = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(family.type, ("",))
    }
    assert names - exposed == set()
    ours = {n for n in exposed if n.startswith("loyalty_") and not n.endswith(("_count", "_sum"))}
    assert ours - names == set()
