"""One run of a job at a time, in one process or across workers sharing Redis."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest

from automations.runtime.limits import one_at_a_time


@pytest.mark.parametrize("shared", [False, True])
def test_a_second_run_is_turned_away_until_the_first_ends(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if shared else None

    def run(name: str) -> AbstractContextManager[bool]:
        return one_at_a_time(name, redis_url).acquire(raise_on_failure=False)

    with run("crm_push:hubspot") as first:
        assert first is True
        with run("crm_push:hubspot") as second:
            assert second is False
        with run("crm_push:salesforce") as other:
            assert other is True
    with run("crm_push:hubspot") as again:
        assert again is True
