"""The production shape of the CRM push: what HubSpot receives from the real processes.

2,200 members (two compare pages) on PostgreSQL. `loyalty scheduler` queues the push
when it starts and a `loyalty worker` runs it against the HubSpot emulator, through the
pacing window in Redis: every member lands, in batches of 100. Then a few members
change, on both sides of the page boundary and in a field derived from another table;
a new scheduler's first push sends exactly those, in one call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.soak_processes import Supervisor, loyalty_command
from crm_sync.plan import PAGE
from loyalty.app import App
from loyalty.models import Member, Survey, SyncCursor
from sandbox.hubspot import HubSpotSandbox
from tests.crm.support import add_members, hubspot_app, set_points
from tests.processes import wait_for

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
MEMBERS = PAGE + 200


def _upserts(hubspot: HubSpotSandbox) -> list[list[str]]:
    """The keys of each batch upsert HubSpot accepted, in order."""
    return [
        [i["id"] for i in r.json()["inputs"]]
        for r in hubspot.requests(path=UPSERT)
        if r.status == 200
    ]


def _pushed(app: App) -> bool:
    """Whether a push run ended (it notes its last run on the cursor)."""
    with app.database.sessions() as session:
        row = session.get(SyncCursor, ("hubspot", "push"))
        return row is not None and row.last_run_at is not None


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_worker_pushes_every_member_then_only_the_changed_ones(
    postgres_app: App, hubspot_sandbox: HubSpotSandbox, redis_url: str, tmp_path: Path
) -> None:
    app = hubspot_app(postgres_app, hubspot_sandbox)
    ids = add_members(app, MEMBERS)
    env = {
        **os.environ,
        "DATABASE_URL": app.database.url,
        "REDIS_URL": redis_url,
        "HUBSPOT_ACCESS_TOKEN": hubspot_sandbox.access_token,
        "HUBSPOT_BASE_URL": hubspot_sandbox.base_url,
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "SCHEDULER_LOCK_TTL_SECONDS": "5",
        "LOG_LEVEL": "WARNING",
    }
    loyalty = loyalty_command()
    logs = tmp_path / "logs"
    logs.mkdir()
    workers = Supervisor(env, tmp_path, logs)
    schedulers = Supervisor(env, tmp_path, logs)
    try:
        workers.start("worker", [*loyalty, "worker", "--processes", "1", "--threads", "2"])
        schedulers.start("scheduler", [*loyalty, "scheduler"])
        wait_for(
            lambda: len(hubspot_sandbox.contacts()) == MEMBERS and _pushed(app),
            "every member pushed",
            logs=logs,
        )
        schedulers.stop_all()
        first = _upserts(hubspot_sandbox)
        assert sorted(len(batch) for batch in first) == [100] * (MEMBERS // 100)
        assert len({key for batch in first for key in batch}) == MEMBERS
        hubspot_sandbox.recorder.clear()

        changed = [ids[0], ids[PAGE - 1], ids[PAGE], ids[-1]]
        set_points(app, changed, 4321)
        with app.database.transaction() as session:
            session.add(
                Survey(
                    member_id=ids[600],
                    kind="nps",
                    channel="email",
                    token="production-crm-push",
                    score=3,
                    sent_at=app.clock.now(),
                    answered_at=app.clock.now(),
                )
            )
        changed.append(ids[600])
        with app.database.sessions() as session:
            keys: dict[int, str] = {
                member_id: key
                for member_id, key in session.execute(
                    select(Member.id, Member.external_id).where(Member.id.in_(changed))
                )
            }

        schedulers.start("scheduler", [*loyalty, "scheduler"])
        wait_for(lambda: bool(_upserts(hubspot_sandbox)), "the changed members pushed", logs=logs)
        schedulers.stop_all()
    finally:
        schedulers.stop_all()
        workers.stop_all()

    second = _upserts(hubspot_sandbox)
    assert len(second) == 1 and sorted(second[0]) == sorted(keys.values())
    for member_id, prop, value in (
        (ids[PAGE], "loyalty_points_balance", "4321"),
        (ids[600], "loyalty_last_nps_score", "3"),
    ):
        contact = hubspot_sandbox.contact_by("loyalty_member_id", keys[member_id])
        assert contact is not None and contact["properties"][prop] == value
