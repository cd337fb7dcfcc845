"""API tokens for /api/v1: created with scopes, shown once, kept as hashes, revoked by name.

A token is `lj_` and 32 URL-safe random characters (192 bits), so a plain SHA-256
of it is as good as a slow hash: nobody can guess one from the hash. Looking a
token up goes by its hash, and the stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from loyalty.errors import ConfigError
from loyalty.event_types import INTERNAL_SOURCE
from loyalty.models import ApiToken

__all__ = [
    "SCOPES",
    "TOKEN_PREFIX",
    "TokenError",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "parse_scopes",
    "revoke_token",
]

#: What a token may be allowed to do.
SCOPES = ("events:write", "members:read", "members:write", "rewards:read", "rewards:write")
TOKEN_PREFIX = "lj_"
#: Random characters after the prefix (6 bits each).
TOKEN_CHARS = 32
#: How stale `last_used_at` may get before a request writes it again (one write per
#: request would serialise every API call on SQLite for a date nobody needs to the second).
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A token's name becomes the source of the events it sends: short, plain, printable.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TokenError(ConfigError):
    """A token cannot be created or revoked as asked (bad name, unknown scope, no such token)."""


def hash_token(token: str) -> str:
    """The hex SHA-256 of the token: what is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(values: Iterable[str]) -> list[str]:
    """Scopes from comma-separated values, checked and in canonical order."""
    wanted = {part.strip() for value in values for part in value.split(",") if part.strip()}
    if not wanted:
        raise TokenError(f"give at least one scope: {', '.join(SCOPES)}")
    unknown = wanted - set(SCOPES)
    if unknown:
        raise TokenError(
            f"unknown scope(s) {', '.join(sorted(unknown))}; known scopes: {', '.join(SCOPES)}"
        )
    return [scope for scope in SCOPES if scope in wanted]


def create_token(
    session: Session, name: str, scopes: Iterable[str], *, now: datetime
) -> tuple[ApiToken, str]:
    """Store a new token; returns the row and the token itself, which is never shown again."""
    if not _NAME.match(name):
        raise TokenError(
            "a token name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit (got {name[:80]!r}); it becomes the source of the events the token sends"
        )
    if name == INTERNAL_SOURCE:
        raise TokenError(f"the name {INTERNAL_SOURCE!r} is reserved for the program's own events")
    checked = parse_scopes(scopes)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenError(
            f"a token named {name!r} exists (names stay taken after revoking, so every event "
            "keeps naming who sent it); choose another name"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_CHARS * 3 // 4)
    row = ApiToken(name=name, token_hash=hash_token(token), scopes=checked, created_at=now)
    session.add(row)
    session.flush()
    return row, token


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, revoked ones too, by name."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.name)))


def revoke_token(session: Session, name: str, *, now: datetime) -> ApiToken:
    """Revoke the token `name` at once; revoking it again changes nothing."""
    row = session.scalar(select(ApiToken).where(ApiToken.name == name).with_for_update())
    if row is None:
        raise TokenError(f"no token named {name!r}; `loyalty tokens list` shows them")
    if row.revoked_at is None:
        row.revoked_at = now
    return row


def authenticate(session: Session, token: str, *, now: datetime) -> ApiToken | None:
    """The live token that `token` is, or None; notes when it was last used."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row
