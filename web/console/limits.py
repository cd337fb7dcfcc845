"""Failed console sign-ins, counted per (email, address) to slow password guessing.

In Redis when REDIS_URL is set (shared by every web process), otherwise in the
database. Only a digest of the email and address is kept.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

import redis
from sqlalchemy import delete, func, select

from loyalty.app import App
from loyalty.models import SignInFailure

__all__ = ["SignInLimit"]

_PREFIX = "loyalty:console:sign_in:"


class SignInLimit:
    """CONSOLE_SIGN_IN_ATTEMPTS failures per (email, address) within the window, then a wait."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.attempts = settings.console_sign_in_attempts
        self.window = timedelta(minutes=settings.console_sign_in_window_minutes)
        self.redis = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None

    @staticmethod
    def key(email: str, address: str) -> str:
        return hashlib.sha256(f"{email.strip().lower()}|{address}".encode()).hexdigest()

    def wait_seconds(self, key: str) -> int:
        """Seconds until this key may try again; 0 when it may now."""
        if self.redis is not None:
            count = int(self.redis.get(_PREFIX + key) or 0)
            if count < self.attempts:
                return 0
            return max(1, int(self.redis.ttl(_PREFIX + key)))
        now = self.app.clock.now()
        with self.app.database.sessions() as session:
            count, oldest = session.execute(
                select(func.count(SignInFailure.id), func.min(SignInFailure.at)).where(
                    SignInFailure.key == key, SignInFailure.at > now - self.window
                )
            ).one()
        if count < self.attempts or oldest is None:
            return 0
        return max(1, math.ceil((oldest + self.window - now).total_seconds()))

    def failed(self, key: str) -> None:
        if self.redis is not None:
            with self.redis.pipeline() as pipe:
                pipe.incr(_PREFIX + key)
                pipe.expire(_PREFIX + key, int(self.window.total_seconds()), nx=True)
                pipe.execute()
            return
        now = self.app.clock.now()
        with self.app.database.transaction() as session:
            session.execute(
                delete(SignInFailure).where(
                    SignInFailure.key == key, SignInFailure.at <= now - self.window
                )
            )
            session.add(SignInFailure(key=key, at=now))

    def succeeded(self, key: str) -> None:
        if self.redis is not None:
            self.redis.delete(_PREFIX + key)
            return
        with self.app.database.transaction() as session:
            session.execute(delete(SignInFailure).where(SignInFailure.key == key))

    @staticmethod
    def minutes(seconds: int) -> int:
        return max(1, math.ceil(seconds / 60))

    def now(self) -> datetime:
        return self.app.clock.now()
