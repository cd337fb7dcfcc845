"""The processes a soak starts, as an operator's supervisor would run them.

Each process gets its own session (process group), so a kill takes the whole of
it (a `loyalty worker` and the Dramatiq processes it forked) and a Ctrl-C in the
terminal reaches only the soak, which then stops everything it started, by id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis

__all__ = ["Managed", "RedisServer", "Supervisor", "free_port", "loyalty_command"]

#: Seconds a process gets to stop after SIGTERM before it is killed.
STOP_GRACE_S = 10.0
#: The shape of `loyalty worker` that benchmarks and production tests run by default.
WORKER_PROCESSES, WORKER_THREADS = 2, 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loyalty_command() -> list[str]:
    """The `loyalty` script of this interpreter's environment."""
    script = Path(sys.executable).with_name("loyalty")
    if script.exists():
        return [str(script)]
    found = shutil.which("loyalty")
    if found is None:
        raise RuntimeError("the `loyalty` command is not installed in this environment")
    return [found]


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class Managed:
    """One supervised process: a role (worker, scheduler, serve), its command and its log."""

    role: str
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Supervisor:
    """Starts, kills, restarts and finally stops the soak's processes.

    As a context manager, it stops everything it started at the end of the block.
    """

    def __init__(self, env: dict[str, str], cwd: Path, logs: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.logs = logs
        self.running: list[Managed] = []
        self.kills = 0
        #: Processes that ended without being told to, and were started again.
        self.unexpected: list[str] = []
        self._count = 0
        self._files: list[IO[bytes]] = []

    def start(self, role: str, argv: list[str]) -> Managed:
        self._count += 1
        name = f"{role}-{self._count}"
        log = self.logs / f"{name}.log"
        stream = log.open("wb")
        self._files.append(stream)
        process = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        managed = Managed(role, name, argv, process, log)
        self.running.append(managed)
        return managed

    def worker(self, processes: int = WORKER_PROCESSES, threads: int = WORKER_THREADS) -> Managed:
        """`loyalty worker` with this many processes of this many threads."""
        argv = ["worker", "--processes", str(processes), "--threads", str(threads)]
        return self.start("worker", [*loyalty_command(), *argv])

    def scheduler(self) -> Managed:
        """`loyalty scheduler`."""
        return self.start("scheduler", [*loyalty_command(), "scheduler"])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def of(self, role: str) -> list[Managed]:
        return [m for m in self.running if m.role == role]

    def kill(self, managed: Managed) -> None:
        """SIGKILL the process and everything it forked, at once, and reap it."""
        _kill_group(managed.process.pid, signal.SIGKILL)
        managed.process.wait()
        self.running.remove(managed)
        self.kills += 1

    def stop(self, managed: Managed) -> None:
        """SIGTERM the process and everything it forked, SIGKILL after the grace, and reap it."""
        _kill_group(managed.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            managed.process.wait(timeout=STOP_GRACE_S)
        _kill_group(managed.process.pid, signal.SIGKILL)
        managed.process.wait()
        self.running.remove(managed)

    def replace_dead(self) -> list[str]:
        """Start again whatever ended on its own (a supervisor's restart policy)."""
        restarted = []
        for managed in list(self.running):
            if managed.alive:
                continue
            # Its forked children may outlive it: take the whole group down first.
            _kill_group(managed.process.pid, signal.SIGKILL)
            self.running.remove(managed)
            self.unexpected.append(f"{managed.name} (exit {managed.process.returncode})")
            restarted.append(self.start(managed.role, managed.argv).name)
        return restarted

    def stop_all(self) -> None:
        """SIGTERM every process group, then SIGKILL whatever is left after the grace."""
        for managed in self.running:
            _kill_group(managed.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for managed in self.running:
            left = max(0.1, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                managed.process.wait(timeout=left)
            _kill_group(managed.process.pid, signal.SIGKILL)
            managed.process.wait()
        self.running.clear()
        for stream in self._files:
            stream.close()
        self._files.clear()


class RedisServer:
    """A redis-server of the soak's own on a fixed port, without persistence, so it can die."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH")
        self._process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: whatever it held (queues, locks, pacing windows) is gone."""
        if self._process is not None:
            _kill_group(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def restart(self, down_s: float) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None
