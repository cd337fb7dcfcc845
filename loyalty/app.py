"""The program's parts for one process: settings, database and clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from loyalty.clock import Clock, SystemClock
from loyalty.db import Database
from loyalty.settings import Settings, get_settings

__all__ = ["App"]


@dataclass
class App:
    settings: Settings
    database: Database
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, clock: Clock | None = None) -> App:
        settings = settings or get_settings()
        return cls(settings, Database(settings.database_url), clock or SystemClock())
