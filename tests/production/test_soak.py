"""The short soak (`python -m bench.soak --short`): the production shape under chaos.

Three workers, two schedulers and the web process on PostgreSQL and a Redis of
the soak's own, against provider emulators that fail 5 % of requests and drop
1 % of answers, while workers are killed with SIGKILL and Redis is restarted
once. The soak runs once for the module; each test reads one of its figures.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_service

ROOT = Path(__file__).resolve().parents[2]
#: The short soak takes about 60-90 s; this bounds a hung one.
SOAK_TIMEOUT_S = 200

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SOAK_TIMEOUT_S + 30)]


@dataclass(frozen=True)
class SoakRun:
    returncode: int
    stdout: str
    stderr: str

    def figure(self, name: str) -> int:
        """The number that starts the line `name: N ...` of the report."""
        match = re.search(rf"^{re.escape(name)}: (\d+)", self.stdout, re.MULTILINE)
        if match is None:
            pytest.fail(f"the soak printed no {name!r} figure\n{self.output}")
        return int(match[1])

    @property
    def output(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr (last lines)\n{self.stderr[-4000:]}"


@pytest.fixture(scope="module")
def soak() -> SoakRun:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    if shutil.which("redis-server") is None:  # the soak restarts a Redis of its own
        message = "redis-server is not on PATH"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: integration tests must run)")
        pytest.skip(message)
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SOAK_TIMEOUT_S,
        check=False,
    )
    run = SoakRun(done.returncode, done.stdout, done.stderr)
    if done.returncode not in (0, 1):  # 2: it could not set itself up
        pytest.fail(f"the soak did not run (exit {done.returncode})\n{run.output}")
    return run


def test_the_chaos_happened(soak: SoakRun) -> None:
    assert soak.figure("worker kills") >= 1, soak.output
    assert soak.figure("redis restarts") == 1, soak.output


def test_every_event_is_processed(soak: SoakRun) -> None:
    match = re.search(
        r"^events: (\d+) stored, (\d+) processed .*?, (\d+) unprocessed", soak.stdout, re.MULTILINE
    )
    assert match is not None, soak.output
    stored, processed, unprocessed = (int(g) for g in match.groups())
    assert stored > 0, soak.output
    assert (processed, unprocessed) == (stored, 0), soak.output


def test_no_message_is_accepted_twice_by_a_provider(soak: SoakRun) -> None:
    assert soak.figure("duplicated at the providers") == 0, soak.output


def test_no_ledger_effect_is_applied_twice(soak: SoakRun) -> None:
    assert soak.figure("duplicate ledger effects") == 0, soak.output


def test_no_message_stays_claimed(soak: SoakRun) -> None:
    assert soak.figure("stuck claimed") == 0, soak.output


def test_nothing_is_lost(soak: SoakRun) -> None:
    assert soak.figure("lost") == 0, soak.output
