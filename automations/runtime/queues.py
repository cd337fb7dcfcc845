"""How much work waits in Redis, per Dramatiq queue (read by `/metrics`)."""

from __future__ import annotations

import redis

from automations.runtime.actors import queue_names

__all__ = ["QUEUE_TIMEOUT_SECONDS", "queue_depths"]

#: Seconds a depth read may take before Redis counts as unreachable.
QUEUE_TIMEOUT_SECONDS = 2.0
#: Dramatiq's Redis key prefix (`RedisBroker(namespace=...)`, left at its default).
NAMESPACE = "dramatiq"


def queue_depths(redis_url: str) -> dict[tuple[str, str], int]:
    """Messages held for each queue, `ready` (waiting or being worked on) and `delayed`
    (retries and delays not yet due), keyed by (queue, kind).

    Dramatiq keeps every message of a queue in the hash `<ns>:<queue>.msgs` until
    it is acknowledged, and delayed ones under `<queue>.DQ`. Raises redis.RedisError
    when Redis does not answer in time.
    """
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=QUEUE_TIMEOUT_SECONDS,
        socket_connect_timeout=QUEUE_TIMEOUT_SECONDS,
    )
    try:
        names = queue_names()
        with client.pipeline(transaction=False) as pipe:
            for queue in names:
                pipe.hlen(f"{NAMESPACE}:{queue}.msgs")
                pipe.hlen(f"{NAMESPACE}:{queue}.DQ.msgs")
            counts = pipe.execute()
    finally:
        client.close()
    depths: dict[tuple[str, str], int] = {}
    for index, queue in enumerate(names):
        depths[(queue, "ready")] = int(counts[2 * index])
        depths[(queue, "delayed")] = int(counts[2 * index + 1])
    return depths
