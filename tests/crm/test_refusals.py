"""A CRM that refuses its runs (bad token, missing fields) shows one status line and backs off.

Retrying a refusal on every tick cannot help and used to leave a dead letter each
time; the operator needs one line that says what is wrong and when the next try is.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from automations import runtime
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.dead_letters import list_dead_letters
from automations.runtime.ticks import queue_crm_pull, queue_crm_push
from bench.soak_processes import Supervisor, loyalty_command
from cli.crm import crm
from crm_sync.adapters import make_adapter
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from loyalty.models import CrmLink, SyncCursor
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from tests.conftest import REDIS_URL
from tests.crm.support import add_members, crm_app
from tests.processes import wait_for


def cursor(database: Database, crm_name: str, direction: str) -> SyncCursor | None:
    with database.sessions() as session:
        return session.get(SyncCursor, (crm_name, direction))


def status_lines(app: App, **env: str) -> list[str]:
    result = CliRunner().invoke(crm, ["status"], env={"DATABASE_URL": app.database.url, **env})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def run_ticks(app: App) -> tuple[int, int]:
    runtime.configure(app)
    broker = build_broker(app.settings)
    with embedded_worker(broker, threads=1):
        return queue_crm_push(app), queue_crm_pull(app)


def test_a_bad_token_is_one_status_line_and_the_ticks_back_off(
    app: App, clock: FrozenClock, hubspot_sandbox: HubSpotSandbox
) -> None:
    add_members(app, 3)
    wrong = crm_app(app, hubspot=hubspot_sandbox, hubspot_access_token="pat-na1-revoked")
    env = {"HUBSPOT_ACCESS_TOKEN": "pat-na1-revoked", "HUBSPOT_BASE_URL": hubspot_sandbox.base_url}

    # The first tick tries both directions; HubSpot refuses the token
    assert run_ticks(wrong) == (1, 1)
    assert list_dead_letters(app.database) == []
    push = cursor(app.database, "hubspot", "push")
    assert push is not None and push.refusals == 1
    assert (push.last_error or "").startswith("refused: hubspot answered 401")
    lines = status_lines(app, **env)
    assert lines[1] == (
        f"  push: last run {clock.now():%Y-%m-%d %H:%M:%S}Z, stopped: {push.last_error}"
        f" (1 run(s) in a row; next try after {clock.now() + timedelta(minutes=5):%H:%M:%S}Z)"
    )
    assert "pat-na1-revoked" not in "\n".join(lines)

    # Ticks within the backoff queue nothing; the wait doubles after each refusal
    clock.advance(timedelta(minutes=4))
    assert run_ticks(wrong) == (0, 0)
    clock.advance(timedelta(minutes=1))
    assert run_ticks(wrong) == (1, 1)
    clock.advance(timedelta(minutes=5))
    assert run_ticks(wrong) == (0, 0)
    clock.advance(timedelta(minutes=5))
    assert run_ticks(wrong) == (1, 1)
    refused = cursor(app.database, "hubspot", "push")
    assert refused is not None and refused.refusals == 3
    assert list_dead_letters(app.database) == []

    # With the token fixed (and the properties made), the next try lands and clears it
    right = crm_app(app, hubspot=hubspot_sandbox)
    make_adapter(right, "hubspot").ensure_schema()
    clock.advance(timedelta(minutes=20))
    assert run_ticks(right) == (1, 1)
    fixed = cursor(app.database, "hubspot", "push")
    assert fixed is not None and (fixed.refusals, fixed.last_error) == (0, None)
    with app.database.sessions() as session:
        assert len(session.scalars(select(CrmLink).where(CrmLink.crm == "hubspot")).all()) == 3


def test_a_salesforce_org_without_the_mapped_fields_is_refused_not_dead_lettered(
    app: App, salesforce_sandbox: SalesforceSandbox
) -> None:
    add_members(app, 2)
    org = crm_app(app, salesforce=salesforce_sandbox)  # no custom fields created

    assert run_ticks(org)[0] == 1

    assert list_dead_letters(app.database) == []
    push = cursor(app.database, "salesforce", "push")
    assert push is not None and push.refusals == 1
    assert (push.last_error or "").startswith("refused: salesforce answered 400: No such column")
    assert (push.last_error or "").endswith("(see `loyalty crm check --crm salesforce`)")


@pytest.mark.integration
def test_loyalty_worker_and_scheduler_with_a_revoked_token_leave_no_dead_letter(
    postgres_app: App, hubspot_sandbox: HubSpotSandbox, redis_url: str, tmp_path: Path
) -> None:
    database = postgres_app.database
    add_members(postgres_app, 3)
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "HUBSPOT_ACCESS_TOKEN": "pat-na1-revoked",
        "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
    }
    loyalty = loyalty_command()
    supervisor = Supervisor(env, tmp_path, tmp_path)
    try:
        supervisor.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        supervisor.start("scheduler", [*loyalty, "scheduler"])

        def refused_both_ways() -> bool:
            pushed, pulled = (cursor(database, "hubspot", d) for d in ("push", "pull"))
            return bool(pushed and pulled and pushed.refusals and pulled.refusals)

        wait_for(refused_both_ways, "the worker to record the refusals", logs=tmp_path)
    finally:
        supervisor.stop_all()
    assert list_dead_letters(database) == []
    answers = {r.status for r in hubspot_sandbox.requests()}
    assert answers == {401}
