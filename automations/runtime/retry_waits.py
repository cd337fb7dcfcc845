"""The middleware that notes each delayed retry of a job the relay would queue again
(see `loyalty.retry_waits`)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from dramatiq import Broker, Message, Middleware
from sqlalchemy.exc import SQLAlchemyError

from automations import runtime
from loyalty.retry_waits import note_retry

__all__ = ["RELAYED_ACTORS", "RetryWaits"]

log = logging.getLogger(__name__)

#: Actors of one row id whose rows the scheduler's relay (or wake-up tick) queues again.
RELAYED_ACTORS = frozenset(
    {"process_event", "create_reward_code", "apply_shop_delivery", "run_enrollment"}
)


class RetryWaits(Middleware):
    """Notes each delayed retry of a relayed actor's message."""

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        retried = message.options.get("retries")
        if not delay or not retried or message.actor_name not in RELAYED_ACTORS:
            return  # a first send, or not a row the relay looks at
        if not message.args:
            return
        app = runtime.current()
        due = app.clock.now() + timedelta(milliseconds=delay)
        try:
            with app.database.transaction() as session:
                note_retry(session, message.actor_name, int(message.args[0]), due)
        except SQLAlchemyError as exc:  # the relay may queue it once more: safe, only wasteful
            log.warning(
                "retry.not_noted", extra={"actor": message.actor_name, "error": type(exc).__name__}
            )
