"""Deterministic split assignment: the same member always lands in the same arm."""

from __future__ import annotations

import hashlib

from .models import Split, Variant

__all__ = ["bucket", "choose_variant"]

#: Buckets per split; percents are whole numbers, so 100 would do, 10 000 leaves room.
BUCKETS = 10_000


def bucket(journey_id: str, step_id: str, member_key: str) -> int:
    """A stable bucket in [0, BUCKETS) for this member at this split step."""
    digest = hashlib.sha256(f"{journey_id}\x1f{step_id}\x1f{member_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose_variant(split: Split, journey_id: str, member_key: str) -> Variant | None:
    """The variant for the member, or None for the holdout (the control: they get nothing)."""
    point = bucket(journey_id, split.id, member_key)
    edge = 0
    for variant in split.variants:
        edge += variant.percent * BUCKETS // 100
        if point < edge:
            return variant
    return None
