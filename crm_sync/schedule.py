"""Scheduler ticks: push changed members and pull CRM edits for every configured CRM.

Each tick is safe to run twice (pushes are upserts of what changed; pulls re-read from
the cursor) and does nothing when no CRM is configured, the embedded default.
"""

from __future__ import annotations

import logging

from crm_sync.adapters import configured_crms
from crm_sync.pull import run_pull
from crm_sync.runs import run_push
from loyalty.app import App

__all__ = ["crm_pull_tick", "crm_push_tick"]

log = logging.getLogger("crm_sync")


def crm_push_tick(app: App) -> int:
    """Push changed members (and journeys' `update_crm` rows) to each CRM; members landed."""
    landed = 0
    for crm in configured_crms(app.settings):
        report = run_push(app, crm)
        landed += report.landed
        if report.stopped:
            log.warning("crm.push_stopped", extra={"crm": crm, "reason": report.stopped})
    return landed


def crm_pull_tick(app: App) -> int:
    """Apply CRM edits since each CRM's cursor; members updated."""
    return sum(run_pull(app, crm).updated for crm in configured_crms(app.settings))
