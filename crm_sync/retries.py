"""One CRM call, paced and retried: the loop both adapters share.

Each adapter sorts an exception into *retry after N seconds* (429, 5xx, timeouts) or
*give up* (anything else) through `Verdict`; this module does the waiting. A 429 also
pauses the shared pacer, so that other workers stop hammering the same account.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from crm_sync.errors import CrmUnavailable
from loyalty.metrics import CRM_REQUESTS, CRM_THROTTLED
from loyalty.pacing import Pacer

__all__ = ["Verdict", "backoff_s", "call"]

T = TypeVar("T")
log = logging.getLogger("crm_sync")

#: Backoff of the first retry, doubled each time up to the cap, with full jitter.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0


@dataclass(frozen=True)
class Verdict:
    """What to do about one failed call."""

    retry: bool
    after_s: float | None = None
    rate_limited: bool = False
    reason: str = ""


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter for the `attempt`-th retry (0-based)."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return (rng or random).uniform(ceiling / 2, ceiling)


def call(
    crm: str,
    what: str,
    fn: Callable[[], T],
    *,
    judge: Callable[[Exception], Verdict],
    pacer: Pacer,
    max_retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn` under the pacer; retry what `judge` calls retriable, honouring Retry-After."""
    attempt = 0
    while True:
        token = pacer.acquire()
        try:
            result = fn()
        except Exception as exc:
            failure = exc
        else:
            CRM_REQUESTS.labels(crm, "ok").inc()
            return result
        finally:
            pacer.release(token)
        verdict = judge(failure)
        if verdict.rate_limited:
            CRM_THROTTLED.labels(crm).inc()
        if not verdict.retry or attempt >= max_retries:
            CRM_REQUESTS.labels(crm, "failed").inc()
        else:
            CRM_REQUESTS.labels(crm, "retried").inc()
        if not verdict.retry:
            raise failure
        if attempt >= max_retries:
            raise CrmUnavailable(
                f"{crm} {what}: still failing after {attempt} retries ({verdict.reason})",
                retry_after=verdict.after_s,
            ) from failure
        wait = verdict.after_s if verdict.after_s is not None else backoff_s(attempt)
        log.warning(
            "crm.retry",
            extra={"crm": crm, "call": what, "attempt": attempt + 1, "wait_s": round(wait, 2)},
        )
        attempt += 1
        if verdict.rate_limited:
            pacer.pause(wait)  # every worker on this account waits, not only this one
        else:
            sleep(wait)
