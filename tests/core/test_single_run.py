"""One run of a job at a time, in one process or across workers sharing Redis."""

from __future__ import annotations

import pytest

from automations.single_run import single_run


@pytest.mark.parametrize("shared", [False, True])
def test_a_second_run_is_turned_away_until_the_first_ends(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if shared else None
    with single_run("crm_push:hubspot", redis_url) as first:
        assert first is True
        with single_run("crm_push:hubspot", redis_url) as second:
            assert second is False
        with single_run("crm_push:salesforce", redis_url) as other:
            assert other is True
    with single_run("crm_push:hubspot", redis_url) as again:
        assert again is True
