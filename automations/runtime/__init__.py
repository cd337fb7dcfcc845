"""The App that actors use in this process, set once at start-up."""

from __future__ import annotations

from loyalty.app import App

__all__ = ["configure", "current"]

_app: App | None = None


def configure(app: App) -> None:
    """Make `app` the one actors use in this process."""
    global _app
    _app = app


def current() -> App:
    if _app is None:
        raise RuntimeError("automations.runtime.configure(app) was not called in this process")
    return _app
