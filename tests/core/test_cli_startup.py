"""What a `loyalty` process imports before its command runs.

Every process start pays for the modules it imports (about two seconds of CPU for the
whole program): a command imports its own module only, and `loyalty worker` must not
import Dramatiq before it has read WORKER_TIMEOUT_MS, which Dramatiq reads once, when
it is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

import cli
from bench.soak_processes import loyalty_command


def _imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running `code`."""
    script = (
        f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(done.stdout.split())


def test_the_worker_command_is_resolved_without_dramatiq() -> None:
    modules = _imported_after(
        "import cli, click\n"
        "with click.Context(cli.main) as ctx:\n"
        "    assert cli.main.get_command(ctx, 'worker').name == 'worker'"
    )
    assert "click" in modules and "loyalty" in modules
    assert "dramatiq" not in modules


def test_importing_the_command_line_imports_no_command() -> None:
    modules = _imported_after("import cli")
    assert not modules & {"dramatiq", "sqlalchemy", "alembic", "automations", "sandbox", "web"}


def test_the_workers_import_a_crm_client_only_where_it_is_configured() -> None:
    modules = _imported_after("import automations.runtime.worker_entry")
    assert "dramatiq" in modules and "hubspot" in modules
    assert not modules & {"simple_salesforce", "zeep"}  # Salesforce's, a quarter second


def test_every_command_is_listed_and_resolves() -> None:
    with click.Context(cli.main) as ctx:
        names = cli.main.list_commands(ctx)
        assert {*cli.COMMANDS, "sandbox"} <= set(names)
        for name in names:
            command = cli.main.get_command(ctx, name)
            assert isinstance(command, click.Command), name
        assert cli.main.get_command(ctx, "no-such-command") is None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.integration
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_worker_processes_run_at_a_lower_cpu_priority(redis_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'loyalty.db'}",
        "REDIS_URL": redis_url,
        "WORKER_NICE": "7",
        "JOURNEYS_DIR": str(tmp_path / "journeys"),
    }
    worker = subprocess.Popen(
        [*loyalty_command(), "worker", "--processes", "2", "--threads", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(_children(worker.pid)) < 2 and worker.poll() is None:
            assert time.monotonic() < deadline, "no worker processes started"
            time.sleep(0.1)
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        expected = min(19, os.nice(0) + 7)
        assert _nice(worker.pid) == expected
        assert [_nice(child) for child in _children(worker.pid)] == [expected] * len(
            _children(worker.pid)
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert worker.returncode == 0
