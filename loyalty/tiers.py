"""Tiers follow lifetime points."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["tier_for"]


def tier_for(lifetime_points: int, thresholds: Mapping[str, int]) -> str:
    """The highest tier whose threshold the lifetime points reach."""
    reached = [(points, name) for name, points in thresholds.items() if lifetime_points >= points]
    return max(reached)[1] if reached else min((p, n) for n, p in thresholds.items())[1]
