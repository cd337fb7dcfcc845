"""The ceiling of the pipeline benchmark: a Dramatiq actor that does nothing, on Redis.

`python -m dramatiq bench.pipeline_noop` runs it with the same processes, threads and
idle wait as `loyalty worker`; BENCH_NOOP_REDIS_URL names the broker.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

__all__ = ["QUEUE", "broker", "noop"]

#: The queue the no-op messages wait in.
QUEUE = "noop"

broker = RedisBroker(url=os.environ.get("BENCH_NOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, broker=broker)
def noop(n: int) -> None:
    """Nothing: what a message costs the broker and the worker alone."""
