"""`/readyz`: whether this web process can do its work now (database and Redis answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from loyalty.app import App

__all__ = ["readyz"]

#: Seconds each dependency gets to answer.
CHECK_TIMEOUT_SECONDS = 2.0


def _database(app: App) -> None:
    with app.database.engine.connect() as connection:
        if not app.database.is_sqlite:
            timeout_ms = int(CHECK_TIMEOUT_SECONDS * 1000)
            connection.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
        connection.execute(text("SELECT 1"))
        connection.rollback()


def _redis(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


async def _check(call: Callable[[], None]) -> str:
    """ "ok", or one line saying why not."""
    try:
        await asyncio.wait_for(run_in_threadpool(call), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except (SQLAlchemyError, redis.RedisError, OSError) as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"


async def readyz(request: Request) -> Response:
    """200 when the database (and Redis, when configured) answer; 503 naming what does not."""
    app: App = request.app.state.loyalty
    checks = [_check(lambda: _database(app))]
    redis_url = app.settings.redis_url
    if redis_url:
        checks.append(_check(lambda: _redis(redis_url)))
    results = await asyncio.gather(*checks)
    answer = {"database": results[0]}
    if redis_url:
        answer["redis"] = results[1]
    ready = all(result == "ok" for result in results)
    return JSONResponse(
        {"status": "ready" if ready else "not ready", **answer}, status_code=200 if ready else 503
    )
