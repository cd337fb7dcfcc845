"""Group commit of shop webhook deliveries: those that arrive together share one commit.

A shop sends webhooks in bursts (a sale, a bulk fulfilment): one transaction per
delivery would queue the requests behind the database's commits and the
connection pool. Here each request hands its verified delivery to its process's
`DeliveryKeeper` and waits. While one batch is being stored, the next ones
gather; the keeper stores each batch in one transaction (`store_deliveries`:
one INSERT … ON CONFLICT DO NOTHING RETURNING), queues the new rows to the
workers, and only then answers each request. Nothing is answered before its
delivery is committed, so a 200 still means "kept"; a failed batch answers every
request in it with the error (a 500 the shop retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from automations.shop_deliveries import store_deliveries
from loyalty.app import App
from loyalty.provider_events import Delivery

__all__ = ["DeliveryKeeper", "Kept"]

#: Deliveries stored in one transaction at most; the rest wait for the next one.
MAX_BATCH = 500


@dataclass(frozen=True)
class Kept:
    #: The stored row's id; None when the delivery was seen before.
    row_id: int | None
    #: Whether the new row is already queued to the workers (else the relay tick queues it).
    queued: bool


@dataclass
class _Waiting:
    delivery: Delivery
    answer: asyncio.Future[Kept]
    #: Stored in a transaction of its own (its batch failed).
    alone: bool = False


def _answer(waiting: _Waiting, answer: Kept | Exception) -> None:
    if waiting.answer.done():  # its client has gone
        return
    if isinstance(answer, Exception):
        waiting.answer.set_exception(answer)
    else:
        waiting.answer.set_result(answer)


@dataclass
class DeliveryKeeper:
    """Stores and queues the deliveries of one web process, a batch at a time."""

    app: App
    #: Queues stored row ids to the workers; returns the ids left for the relay tick.
    queue: Callable[[App, list[int]], list[int]]
    _waiting: list[_Waiting] = field(default_factory=list)
    _draining: asyncio.Task[None] | None = None

    async def keep(self, delivery: Delivery) -> Kept:
        """Store `delivery` once (with whatever arrives beside it) and queue it."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(delivery, loop.create_future())
        self._waiting.append(waiting)
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await waiting.answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._next_batch()
                try:
                    kept = await run_in_threadpool(self._store, [w.delivery for w in batch])
                except Exception as exc:
                    if len(batch) == 1:
                        _answer(batch[0], exc)
                        continue
                    # One delivery the database refuses must not fail the others: each
                    # is tried on its own, and only the refused one answers the error.
                    self._waiting[:0] = [_Waiting(w.delivery, w.answer, alone=True) for w in batch]
                    continue
                for waiting, answer in zip(batch, kept, strict=True):
                    _answer(waiting, answer)
        finally:
            self._draining = None

    def _next_batch(self) -> list[_Waiting]:
        if self._waiting[0].alone:
            return [self._waiting.pop(0)]
        size = 0
        while size < min(len(self._waiting), MAX_BATCH) and not self._waiting[size].alone:
            size += 1
        batch = self._waiting[:size]
        del self._waiting[:size]
        return batch

    def _store(self, deliveries: Sequence[Delivery]) -> list[Kept]:
        row_ids = store_deliveries(self.app, deliveries)
        new = [row_id for row_id in row_ids if row_id is not None]
        left = set(self.queue(self.app, new)) if new else set()
        return [Kept(row_id, row_id is not None and row_id not in left) for row_id in row_ids]
