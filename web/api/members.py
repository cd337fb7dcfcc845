"""Members over /api/v1: create or update one (as `members import` does a row), read one,
and page through their points ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty import ledger
from loyalty.app import App
from loyalty.member_rows import unusable_text
from loyalty.member_upsert import ErasedMemberError, InvalidProfileError, upsert_member
from loyalty.models import LedgerEntry, Member, Redemption
from loyalty.referrals import referral_link
from loyalty.rewards import RedemptionState, cached_catalog, tier_allows
from loyalty.settings import Settings
from web.api.auth import Caller, require
from web.api.errors import ERROR_RESPONSES, ApiError, Problem, described
from web.api.profiles import FieldWarning, MemberIn, warnings_of
from web.common import loyalty_app

__all__ = ["LedgerPage", "MemberOut", "router"]

#: Source of the consent changes made through the API.
API_SOURCE = "api"
#: Ledger entries per page, by default and at most.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

ExternalId = Annotated[
    str,
    Path(min_length=1, max_length=255, description="the member's external_id (the shop's id)"),
]


class Expiry(BaseModel):
    points: int = Field(description="points that expire next")
    at: datetime = Field(description="when they expire (UTC)")


class AvailableReward(BaseModel):
    id: str
    name: str = Field(description="in the member's locale")
    cost: int = Field(description="points it costs")
    kind: str


class MemberOut(BaseModel):
    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    time_zone: str | None
    birthday: str | None = Field(description="YYYY-MM-DD, or --MM-DD without the year")
    email_consent: bool | None
    sms_consent: bool | None
    attributes: dict[str, Any]
    tier: str
    points: int = Field(description="the points balance")
    redeemable_points: int = Field(description="points that can be spent now (unexpired)")
    lifetime_points: int
    next_expiry: Expiry | None = Field(description="the next points to expire, if any")
    referral_code: str
    referral_link: str
    enrolled_at: datetime
    rewards: list[AvailableReward] = Field(description="rewards the member can take now")


class MemberWritten(MemberOut):
    created: bool
    changed: bool = Field(description="whether anything was written")
    warnings: list[FieldWarning] = Field(description="fields left out: their value was invalid")


class LedgerLine(BaseModel):
    id: int
    delta: int
    kind: str
    reason: str
    created_at: datetime
    expires_at: datetime | None
    remaining: int = Field(description="points of this lot not yet spent or expired")


class LedgerPage(BaseModel):
    entries: list[LedgerLine] = Field(description="newest first")
    next_before: int | None = Field(description="pass as `before` for the next page; null: done")


router = APIRouter(tags=["members"])
_MEMBER_ERRORS = {**ERROR_RESPONSES, **described(404, 410)}


@router.put(
    "/members/{external_id}",
    response_model=MemberWritten,
    summary="Create or update a member (scope members:write)",
    responses={
        200: {"model": MemberWritten, "description": "Updated"},
        201: {"model": MemberWritten, "description": "Created"},
        **ERROR_RESPONSES,
        **described(409),
    },
)
def put_member(
    request: Request,
    response: Response,
    external_id: ExternalId,
    body: MemberIn,
    caller: Annotated[Caller, Depends(require("members:write"))],
) -> MemberWritten:
    """Fields left out stay as they are; `null` clears one. An invalid value is left out
    and answered in `warnings`, and the member is kept without it. Consent changes are
    logged with the source `api`."""
    _check_id(external_id)
    app = loyalty_app(request)
    columns, warnings = body.as_columns()
    now = app.clock.now()
    try:
        with app.database.transaction() as session:
            result = upsert_member(
                session, external_id, columns, settings=app.settings, now=now, source=API_SOURCE
            )
            view = _view(session, result.member, app)
    except ErasedMemberError as exc:
        raise ApiError(409, ["path", "external_id"], str(exc), "erased") from None
    except InvalidProfileError as exc:
        problems = [
            Problem(
                loc=["path", "external_id"] if e.field == "external_id" else ["body", e.field],
                msg=e.reason,
                type="value_error",
            )
            for e in exc.errors
        ]
        raise ApiError.many(422, problems) from None
    response.status_code = 201 if result.created else 200
    return MemberWritten(
        **view.model_dump(),
        created=result.created,
        changed=result.changed,
        warnings=warnings_of([*warnings, *result.warnings]),
    )


@router.get(
    "/members/{external_id}",
    response_model=MemberOut,
    summary="A member's points, tier, next expiry, referral link and rewards (members:read)",
    responses=_MEMBER_ERRORS,
)
def get_member(
    request: Request,
    external_id: ExternalId,
    caller: Annotated[Caller, Depends(require("members:read"))],
) -> MemberOut:
    _check_id(external_id)
    app = loyalty_app(request)
    with app.database.sessions() as session:
        return _view(session, _found(session, external_id), app)


@router.get(
    "/members/{external_id}/ledger",
    response_model=LedgerPage,
    summary="A member's points ledger, newest first, a page at a time (members:read)",
    responses=_MEMBER_ERRORS,
)
def get_ledger(
    request: Request,
    external_id: ExternalId,
    caller: Annotated[Caller, Depends(require("members:read"))],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="entries per page")] = (
        PAGE_SIZE
    ),
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="entries older than this id")
    ] = None,
) -> LedgerPage:
    _check_id(external_id)
    app = loyalty_app(request)
    with app.database.sessions() as session:
        member = _found(session, external_id)
        query = select(LedgerEntry).where(LedgerEntry.member_id == member.id)
        if before is not None:
            query = query.where(LedgerEntry.id < before)
        rows = list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return LedgerPage(
        entries=[
            LedgerLine(
                id=row.id,
                delta=row.delta,
                kind=row.kind,
                reason=row.reason,
                created_at=row.created_at,
                expires_at=row.expires_at,
                remaining=row.remaining,
            )
            for row in page
        ],
        next_before=page[-1].id if len(rows) > limit else None,
    )


def _check_id(external_id: str) -> None:
    reason = unusable_text(external_id, 255)
    if reason is not None:
        raise ApiError(422, ["path", "external_id"], reason, "value_error")


def _found(session: Session, external_id: str) -> Member:
    member = session.scalar(select(Member).where(Member.external_id == external_id))
    if member is None:
        raise ApiError(404, ["path", "external_id"], "no member with this external_id", "unknown")
    if member.erased_at is not None:
        raise ApiError(410, ["path", "external_id"], "the member was erased (GDPR)", "erased")
    return member


def _view(session: Session, member: Member, app: App) -> MemberOut:
    now = app.clock.now()
    expiring = ledger.next_expiring(session, member, now=now)
    redeemable = ledger.redeemable(session, member, now=now)
    return MemberOut(
        external_id=member.external_id,
        email=member.email,
        phone=member.phone,
        first_name=member.first_name,
        last_name=member.last_name,
        locale=member.locale,
        time_zone=member.time_zone,
        birthday=member.birthday,
        email_consent=member.email_consent,
        sms_consent=member.sms_consent,
        attributes=dict(member.attributes),
        tier=member.tier,
        points=member.points_balance,
        redeemable_points=redeemable,
        lifetime_points=member.lifetime_points,
        next_expiry=Expiry(points=expiring[0], at=expiring[1]) if expiring else None,
        referral_code=member.referral_code,
        referral_link=referral_link(app.settings.public_base_url, member.referral_code),
        enrolled_at=member.enrolled_at,
        rewards=available_rewards(session, member, app.settings, redeemable),
    )


def available_rewards(
    session: Session, member: Member, settings: Settings, points: int
) -> list[AvailableReward]:
    """Rewards of the catalog the member can take now with `points`: tier and limit allowing."""
    catalog = cached_catalog(settings.journeys_dir, settings.tier_thresholds)
    if catalog is None:  # a catalog with errors is not used (`loyalty rewards validate`)
        return []
    candidates = [
        reward
        for reward in catalog.rewards
        if reward.cost <= points
        and tier_allows(member.tier, reward.min_tier, settings.tier_thresholds)
    ]
    if not candidates:
        return []
    taken = dict(
        session.execute(
            select(Redemption.reward_id, func.count(Redemption.id))
            .where(
                Redemption.member_id == member.id,
                Redemption.state != RedemptionState.FAILED,
            )
            .group_by(Redemption.reward_id)
        ).all()
    )
    return [
        AvailableReward(
            id=reward.id,
            name=reward.display_name(member.locale),
            cost=reward.cost,
            kind=reward.kind,
        )
        for reward in candidates
        if reward.limit_per_member is None or taken.get(reward.id, 0) < reward.limit_per_member
    ]
