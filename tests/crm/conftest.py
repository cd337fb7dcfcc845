"""CRM sync tests run against the HubSpot and Salesforce emulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loyalty.pacing import forget_local_windows
from sandbox.salesforce import SalesforceSandbox
from tests.crm.support import salesforce_fields


@pytest.fixture
def salesforce_org(salesforce_sandbox: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    """The Salesforce emulator with every mapped custom field created."""
    salesforce_sandbox.set_custom_fields(salesforce_fields())
    yield salesforce_sandbox


@pytest.fixture(autouse=True)
def _fresh_pacing() -> None:
    """Each test's emulator starts with empty rate windows; so do ours."""
    forget_local_windows()
