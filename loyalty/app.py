"""The program's parts for one process: settings, database, clock and request pacers."""

from __future__ import annotations

from dataclasses import dataclass, field

from loyalty.clock import Clock, SystemClock
from loyalty.db import Database
from loyalty.pacing import PacerFactory, local_pacer
from loyalty.settings import Settings, get_settings

__all__ = ["App"]


@dataclass
class App:
    settings: Settings
    database: Database
    clock: Clock = field(default_factory=SystemClock)
    #: Where provider clients get their rate windows: in-process, unless the process
    #: shares them with every worker through Redis (`automations.runtime.pacing`).
    pacers: PacerFactory = local_pacer

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        clock: Clock | None = None,
        pacers: PacerFactory | None = None,
    ) -> App:
        settings = settings or get_settings()
        database = Database(settings.database_url)
        return cls(settings, database, clock or SystemClock(), pacers or local_pacer)
