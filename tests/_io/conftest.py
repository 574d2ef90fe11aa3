"""Fixtures for the completion-core tests (helpers live in iohelpers.py)."""

from __future__ import annotations

import pytest
from iohelpers import BACKENDS, REAL_BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each available backend in turn."""
    return str(request.param)


@pytest.fixture(params=REAL_BACKENDS)
def real_backend(request: pytest.FixtureRequest) -> str:
    """Each backend that talks to a real kernel."""
    return str(request.param)
