"""Shared test configuration: provider emulators and database fixtures."""

from __future__ import annotations
