"""`GET /rewards` (the catalog) and `POST /members/{external_id}/redemptions` (points for a reward).

A redemption is made once per `Idempotency-Key`: the same key again answers
200 with the same redemption and takes nothing more. The code at the shop is
made after the answer: on Redis by a worker; on the embedded default (no
broker in the web process) right here, after the commit.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from automations.intake import BROKER_OUTAGES
from automations.runtime import actors
from automations.runtime.broker import build_broker
from loyalty.app import App
from loyalty.errors import InsufficientPointsError, UnknownMemberError
from loyalty.models import Redemption
from loyalty.redemptions import RedemptionError, redeem_member
from loyalty.rewards import FixedAmount, Percentage, RedemptionState, load_catalog
from shops.codes import issue_code
from web.api.auth import Caller, require
from web.api.errors import ERROR_RESPONSES, ApiError
from web.common import loyalty_app

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["rewards"])

_broker_lock = threading.Lock()
_broker_built: set[str] = set()


class RewardOut(BaseModel):
    id: str
    name: dict[str, str]
    cost: int = Field(description="points it costs")
    kind: str = Field(description="fixed_amount, percentage or free_shipping")
    value: dict[str, str] | None = Field(None, description="fixed_amount: amount per currency")
    percentage: str | None = None
    min_tier: str | None = None
    valid_for: str
    limit_per_member: int | None = None


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward: str = Field(min_length=1, max_length=64, description="a reward id from GET /rewards")
    currency: str | None = Field(
        None, pattern=r"^[A-Za-z]{3}$", description="for a fixed amount with several currencies"
    )


class RedemptionOut(BaseModel):
    id: int
    member: str
    reward: str
    state: str = Field(description="pending, issued or failed")
    points: int
    code: str | None = Field(None, description="set once issued")
    value: str | None = None
    currency: str | None = None
    expires_at: datetime
    shop: str | None = None
    error: str | None = None
    created_at: datetime


@router.get(
    "/rewards",
    response_model=list[RewardOut],
    summary="The rewards catalog (scope rewards:read)",
    responses=ERROR_RESPONSES,
)
async def get_rewards(
    request: Request, caller: Annotated[Caller, Depends(require("rewards:read"))]
) -> list[RewardOut]:
    """Every reward points can buy, from journeys/rewards.yaml."""
    settings = loyalty_app(request).settings
    catalog = load_catalog(settings.journeys_dir, settings.tier_thresholds)
    out = []
    for reward in catalog.rewards:
        extra: dict[str, Any] = {}
        if isinstance(reward, FixedAmount):
            extra["value"] = {cur: str(amount) for cur, amount in reward.value.items()}
        if isinstance(reward, Percentage):
            extra["percentage"] = str(reward.percentage)
        out.append(
            RewardOut(
                id=reward.id,
                name=reward.name,
                cost=reward.cost,
                kind=reward.kind,
                min_tier=reward.min_tier,
                valid_for=reward.valid_for,
                limit_per_member=reward.limit_per_member,
                **extra,
            )
        )
    return out


@router.post(
    "/members/{external_id}/redemptions",
    status_code=201,
    response_model=RedemptionOut,
    summary="Redeem points for a reward, once per Idempotency-Key (scope rewards:write)",
    responses={
        **ERROR_RESPONSES,
        200: {"model": RedemptionOut, "description": "The key was used: the same redemption"},
        404: ERROR_RESPONSES.get(404, {"description": "No such member"}),
    },
)
async def post_redemption(
    request: Request,
    response: Response,
    external_id: str,
    body: RedemptionIn,
    caller: Annotated[Caller, Depends(require("rewards:write"))],
    idempotency_key: Annotated[
        str, Header(min_length=1, max_length=200, description="the same key redeems once")
    ],
) -> RedemptionOut:
    """Take the reward's points and record the redemption; the shop's code follows.

    201: made now (state `pending`, or `issued` when codes are local). 200: the
    key was used before; nothing more was taken. 422: unknown reward, tier too
    low, limit reached, not enough points, or the key used for another reward.
    """
    app = loyalty_app(request)
    try:
        redeemed = await run_in_threadpool(
            redeem_member,
            app.database,
            external_id,
            body.reward,
            idempotency_key,
            settings=app.settings,
            now=app.clock.now(),
            currency=body.currency,
        )
    except UnknownMemberError:
        raise ApiError(404, ["path", "external_id"], "no such member", "unknown_member") from None
    except InsufficientPointsError as exc:
        raise ApiError(422, ["body", "reward"], str(exc), "insufficient_points") from None
    except RedemptionError as exc:
        raise ApiError(422, ["body", "reward"], str(exc), "not_redeemable") from None
    redemption = redeemed.redemption
    if redemption.state == RedemptionState.PENDING:
        await run_in_threadpool(_make_code, app, redemption.id, redeemed.caused)
        redemption = await run_in_threadpool(_reload, app, redemption)
    if not redeemed.created:
        response.status_code = 200
    log.info(
        "api.redemption",
        extra={
            "token": caller.name,
            "redemption_id": redemption.id,
            "member_id": redemption.member_id,
            "created": redeemed.created,
        },
    )
    return _out(redemption, external_id)


def _make_code(app: App, redemption_id: int, caused: tuple[int, ...] = ()) -> None:
    """Queue the code (and the events the points taken caused) on Redis; else make it here.

    A pending redemption asked for again is queued again: the code is made once either way.
    On the embedded default the caused events are queued by the scheduler's relay.
    """
    if app.settings.redis_url:
        try:
            with _broker_lock:
                if app.settings.redis_url not in _broker_built:
                    build_broker(app.settings)
                    _broker_built.add(app.settings.redis_url)
            actors.send("create_reward_code", redemption_id)
            for event_id in caused:
                actors.send("process_event", event_id)
        except BROKER_OUTAGES:
            log.warning("api.redemption_queue_later", extra={"redemption_id": redemption_id})
        return
    try:
        issue_code(app, redemption_id)  # its events are queued by the scheduler's relay
    except Exception as exc:  # the points are taken and kept; the same key tries again
        log.warning(
            "api.redemption_code_later",
            extra={"redemption_id": redemption_id, "error": type(exc).__name__},
        )


def _reload(app: App, redemption: Redemption) -> Redemption:
    with app.database.sessions() as session:
        return session.get(Redemption, redemption.id) or redemption


def _out(redemption: Redemption, external_id: str) -> RedemptionOut:
    return RedemptionOut(
        id=redemption.id,
        member=external_id,
        reward=redemption.reward_id,
        state=redemption.state,
        points=redemption.points,
        code=redemption.code,
        value=None if redemption.value is None else str(redemption.value),
        currency=redemption.currency,
        expires_at=redemption.expires_at,
        shop=redemption.shop,
        error=redemption.error,
        created_at=redemption.created_at,
    )
