"""One member created or updated from a profile, as `members import` does for one row.

The API (`PUT /api/v1/members/{id}`), events that carry a profile and the shop
webhooks all come through here. The profile's keys are the import columns
(`loyalty.member_rows.KNOWN_COLUMNS`); any other key is an attribute. Fields are
parsed by the importer's rules: an invalid optional field is left out and
reported as a warning, and the member is kept without it. Consent changes go to
the consent log with the caller's source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.consent import record_consent
from loyalty.db import insert_ignore
from loyalty.errors import InvalidEventError, RowError
from loyalty.member_rows import MemberRow, parse_row
from loyalty.models import Member, Referral
from loyalty.referrals import new_referral_code, referral_verdict
from loyalty.settings import Settings
from loyalty.states import ReferralStatus
from loyalty.tiers import tier_for

__all__ = ["ErasedMemberError", "InvalidProfileError", "UpsertResult", "upsert_member"]


class InvalidProfileError(InvalidEventError):
    """The external_id is unusable, or a value is corrupt (not UTF-8, NUL, far too long)."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = errors

    @property
    def field(self) -> str:
        """The first field at fault."""
        return self.errors[0].field if self.errors else "*"


class ErasedMemberError(InvalidEventError):
    """The member was erased (GDPR): nothing may bring their data back."""

    def __init__(self, external_id: str) -> None:
        super().__init__(
            f"member {external_id!r} was erased (GDPR); their profile cannot be written again"
        )
        self.external_id = external_id


@dataclass
class UpsertResult:
    member: Member
    created: bool
    #: Whether anything was written: a new member, a changed field, consent or referrer.
    changed: bool
    #: Optional fields left out because their value was invalid.
    warnings: list[RowError] = field(default_factory=list)
    #: The profile was made before the one applied (`as_of`): nothing was changed.
    stale: bool = False


def upsert_member(
    session: Session,
    external_id: str,
    profile: Mapping[str, Any],
    *,
    settings: Settings,
    now: datetime,
    source: str,
    as_of: datetime | None = None,
) -> UpsertResult:
    """Create or update the member `external_id` from `profile` (see the module docstring).

    `as_of` is when a source that may deliver out of order made this profile (a shop
    customer's `updated_at`): one made before the newest such profile applied changes
    nothing, so a late delivery never overwrites a newer one. Without `as_of` (the
    API, imports) the profile is applied as it comes.

    Raises InvalidProfileError for an unusable external_id or a corrupt value, and
    ErasedMemberError for an erased member. Runs in the caller's transaction.
    """
    raw = {key: value for key, value in profile.items() if key != "external_id"}
    raw["external_id"] = external_id
    try:
        row = parse_row(raw, phone_region=settings.default_phone_region)
    except ExceptionGroup as group:
        errors = [error for error in group.exceptions if isinstance(error, RowError)]
        raise InvalidProfileError(errors) from None
    if row.external_id != external_id:
        # parse_row strips spaces; a key that needs stripping would name another member.
        raise InvalidProfileError([RowError("external_id", "has spaces at its start or end")])
    member = _locked(session, external_id)
    created = False
    if member is None:
        member, created = _create(session, row, settings, now)
    if member.erased_at is not None:
        raise ErasedMemberError(external_id)
    if as_of is not None:
        if not created and member.profile_as_of is not None and as_of < member.profile_as_of:
            return UpsertResult(member, False, False, list(row.warnings), stale=True)
        if member.profile_as_of is None or as_of > member.profile_as_of:
            member.profile_as_of = as_of
    changed = created or _update(member, row, now)
    for channel in ("email", "sms"):
        wanted = getattr(row, f"{channel}_consent")
        if wanted is not None:
            changed |= record_consent(session, member, channel, wanted, source=source, at=now)
    warnings = list(row.warnings)
    if row.referred_by_code:
        changed |= _link_referrer(session, member, row.referred_by_code, now, warnings)
    session.flush()
    return UpsertResult(member, created, changed, warnings)


def _locked(session: Session, external_id: str) -> Member | None:
    return session.scalar(
        select(Member)
        .where(Member.external_id == external_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _create(
    session: Session, row: MemberRow, settings: Settings, now: datetime
) -> tuple[Member, bool]:
    """Insert the member; when another transaction just did, take theirs (returns created)."""
    member = Member(
        external_id=row.external_id,
        **row.fields,
        tier=tier_for(0, settings.tier_thresholds),
        points_balance=0,
        lifetime_points=0,
        referral_code=new_referral_code(),
        orders_count=0,
        attributes=dict(row.attributes),
        enrolled_at=now,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(member)
    except IntegrityError:
        existing = _locked(session, row.external_id)
        if existing is None:
            raise
        return existing, False
    return member, True


def _update(member: Member, row: MemberRow, now: datetime) -> bool:
    change = {key: value for key, value in row.fields.items() if getattr(member, key) != value}
    if row.attributes:
        merged = {**member.attributes, **row.attributes}
        if merged != member.attributes:
            change["attributes"] = merged
    for key, value in change.items():
        setattr(member, key, value)
    if change:
        member.updated_at = now
    return bool(change)


def _link_referrer(
    session: Session, member: Member, code: str, now: datetime, warnings: list[RowError]
) -> bool:
    """Record who referred the member, once; an unknown code or self-referral is a warning."""
    if member.referred_by_id is not None:
        return False
    referrer = session.scalar(select(Member).where(Member.referral_code == code))
    if referrer is None:
        warnings.append(RowError("referred_by_code", f"no member has referral code {code!r}"))
        return False
    if referrer.id == member.id:
        warnings.append(RowError("referred_by_code", "a member cannot refer themselves"))
        return False
    verdict = referral_verdict(member.email, referrer.email)
    member.referred_by_id = referrer.id
    member.updated_at = now
    insert_ignore(
        session,
        Referral,
        [
            {
                "referrer_id": referrer.id,
                "referee_id": member.id,
                "code": code,
                "status": ReferralStatus.PENDING,  # checked again at the first order
                "fraud_verdict": verdict,
                "created_at": now,
            }
        ],
        ["referee_id"],
    )
    return True
