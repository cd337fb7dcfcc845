"""How a soak feeds the program: one-off `loyalty` commands as an operator runs them
(import, ingest, emit), and batches of events the way a shop integration sends them."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.production import SetupError
from bench.soak_data import EventStream, write_events
from bench.soak_processes import loyalty_command
from bench.soak_report import say

if TYPE_CHECKING:
    from bench.soak import Plan

__all__ = ["FEED_INTERVAL_S", "Cli", "Feeder"]

#: Seconds between two batches of events (each is one `loyalty events ingest`).
FEED_INTERVAL_S = 0.5


class Cli:
    """Runs one-off `loyalty` commands (import, ingest, emit) in the soak's environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self._lock = threading.Lock()
        self._current: subprocess.Popen[str] | None = None
        self._closed = False

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        argv = [*loyalty_command(), *args]
        with self._lock:
            if self._closed:  # the soak is stopping: start nothing new
                return subprocess.CompletedProcess(argv, -1, "", "the soak is stopping")
        process = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        with self._lock:
            self._current = process
            if self._closed:
                process.kill()
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        finally:
            with self._lock:
                self._current = None
        return subprocess.CompletedProcess(argv, process.returncode, out, err)

    def must(self, *args: str) -> str:
        done = self.run(*args)
        if done.returncode not in (0,):
            raise SetupError(
                f"`loyalty {' '.join(args)}` failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done.stdout

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            if self._current is not None and self._current.poll() is None:
                self._current.kill()


class Feeder(threading.Thread):
    """Sends batches of events the way a shop integration would, until told to stop."""

    def __init__(self, cli: Cli, stream: EventStream, folder: Path, plan: Plan) -> None:
        super().__init__(name="soak-feeder", daemon=True)
        self.cli = cli
        self.stream = stream
        self.folder = folder
        self.plan = plan
        self.stopping = threading.Event()
        self.batches = 0
        self.lines = 0
        self.failures: list[str] = []
        self._retry: list[Path] = []
        rounds = max(1.0, plan.seconds / (FEED_INTERVAL_S + 1.5))
        self._enrol = math.ceil(stream.left_to_enrol / max(1.0, rounds / 2))

    def run(self) -> None:
        while not self.stopping.is_set():
            self._send(self.stream.batch(self.plan.events_per_batch, self._enrol))
            self.stopping.wait(FEED_INTERVAL_S)

    def _send(self, lines: list[dict[str, Any]]) -> None:
        self.batches += 1
        self.lines += len(lines)
        if self.batches % 7 == 0 and lines:  # now and then one event by hand
            first, lines = lines[0], lines[1:]
            args = ["events", "emit", first["type"], "--member", first["member"]]
            args += ["--id", first["id"], "--data", json.dumps(first.get("data", {}))]
            done = self.cli.run(*args)
            if done.returncode != 0:
                self._failed(f"emit: {done.returncode} {done.stderr.strip()[-300:]}")
                lines.insert(0, first)
        path = self.folder / f"events-{self.batches:05d}.jsonl"
        write_events(path, lines)
        for file in [*self._retry, path]:
            done = self.cli.run("events", "ingest", str(file))
            if done.returncode in (0, 1):  # 1: some lines refused (they are reported)
                if file in self._retry:
                    self._retry.remove(file)
            else:
                self._failed(f"ingest {file.name}: {done.returncode} {done.stderr.strip()[-300:]}")
                if file not in self._retry:
                    self._retry.append(file)

    def _failed(self, what: str) -> None:
        self.failures.append(what)
        say(f"feeding: {what}")

    def finish(self, attempts: int = 10) -> int:
        """Stop, then send the rest (sign-ups, referees' orders, failed batches); files left."""
        self.stopping.set()
        self.join()
        self._send(self.stream.rest())
        for _ in range(attempts):
            if not self._retry:
                break
            time.sleep(2)
            self._send([])
        return len(self._retry)
