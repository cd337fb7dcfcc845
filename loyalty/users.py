"""Console users: created with a role, passwords kept as argon2id hashes, disabled by email.

Roles are ordered: a viewer reads, a marketer also pauses and resumes journeys,
an operator also replays dead letters. Console users are not API tokens: a
token never opens the console and a user never calls /api/v1.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from enum import IntEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.errors import ConfigError
from loyalty.models import ConsoleUser

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "Role",
    "UserError",
    "check_password",
    "create_user",
    "disable_user",
    "list_users",
]

#: Characters a console password needs at least.
MIN_PASSWORD_LENGTH = 12
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the email is unknown, so an unknown email takes as long as a
    known one; made at the first sign-in rather than at import (a fifth of a second that
    every `loyalty` command would pay)."""
    return _hasher.hash("not a password of anyone's")


class Role(IntEnum):
    """What a console user may do; each role may do all that the ones below it may."""

    VIEWER = 1
    MARKETER = 2
    OPERATOR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise UserError(f"unknown role {name!r}; choose viewer, marketer or operator") from None


class UserError(ConfigError):
    """A user cannot be created or changed as asked."""


def create_user(
    session: Session, email: str, role: str, password: str, *, now: datetime
) -> ConsoleUser:
    """Store a new console user with the password's argon2id hash."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise UserError(f"not an email address: {email[:80]!r}")
    checked = Role.named(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email)) is not None:
        raise UserError(f"a user {email!r} exists; `loyalty users list` shows them")
    row = ConsoleUser(
        email=email, password_hash=_hasher.hash(password), role=checked.label, created_at=now
    )
    session.add(row)
    session.flush()
    return row


def list_users(session: Session) -> list[ConsoleUser]:
    """Every console user, disabled ones too, by email."""
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.email)))


def disable_user(session: Session, email: str, *, now: datetime) -> ConsoleUser:
    """Disable a user at once: no sign-in, and their open sessions end on the next request."""
    row = session.scalar(
        select(ConsoleUser).where(ConsoleUser.email == email.strip().lower()).with_for_update()
    )
    if row is None:
        raise UserError(f"no user {email!r}; `loyalty users list` shows them")
    if row.disabled_at is None:
        row.disabled_at = now
    return row


def check_password(
    session: Session, email: str, password: str, *, now: datetime
) -> ConsoleUser | None:
    """The enabled user with this email and password, or None; notes the sign-in."""
    row = session.scalar(select(ConsoleUser).where(ConsoleUser.email == email.strip().lower()))
    try:
        _hasher.verify(row.password_hash if row else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    row.last_sign_in_at = now
    return row
