"""The collector settings of the long-running processes (`loyalty.collector`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from loyalty.collector import OLDER_THRESHOLD, YOUNG_THRESHOLD, tune_collector


@pytest.fixture
def default_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_started_process_freezes_what_it_built_and_collects_its_young_objects_less_often(
    default_collector: None,
) -> None:
    # Given a process that has built its modules and objects
    built = [object() for _ in range(1000)]

    # When it tunes the collector
    tune_collector()

    # Then what it built is out of the collector's sight and young collections are rarer
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
