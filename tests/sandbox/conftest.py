"""Sandbox tests: contract checks run last (the fixtures come from sandbox.pytest_plugin)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Contract tests validate what the other tests sent, so they go last."""
    items.sort(key=lambda item: item.path.name == "test_contract.py")
