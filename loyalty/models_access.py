"""The tables of access: API tokens, console users and failed sign-ins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.model_base import Base, Id, JSONType

__all__ = ["ApiToken", "ConsoleUser", "SignInFailure"]


class ApiToken(Base):
    """A bearer token for /api/v1: only its SHA-256 hash is kept, shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The scopes it grants, e.g. ["events:write", "members:read"].
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ConsoleUser(Base):
    """A person who signs in to the console; apart from the API tokens of /api/v1."""

    __tablename__ = "console_users"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'marketer', 'operator')", name="role"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: Lower case; the sign-in name.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: An argon2id hash (argon2-cffi's encoded form, parameters included).
    password_hash: Mapped[str] = mapped_column(String(255))
    #: viewer < marketer < operator (`loyalty.users.Role`).
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime | None]
    #: A disabled user cannot sign in, and their open sessions stop working.
    disabled_at: Mapped[datetime | None]


class SignInFailure(Base):
    """A failed console sign-in, by a digest of (email, address); counted to slow guessing."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
