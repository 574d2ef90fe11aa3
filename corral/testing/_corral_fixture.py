"""``corral_fixture``: declare a pytest fixture that runs inside the test's run.

Kept apart from the pytest plugin so that ``import corral.testing`` does not
import pytest; pytest is imported only when the decorator is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["corral_fixture"]

P = ParamSpec("P")
R = TypeVar("R")

# The attribute the plugin looks for on a fixture function.
CORRAL_FIXTURE_FLAG = "_corral_fixture"


def corral_fixture(fn: Callable[P, R]) -> Callable[P, R]:
    """Declare a function-scoped pytest fixture that is set up inside the
    test's :func:`corral.run`, like an async fixture, even if ``fn`` is a
    plain (or generator) function.

    Use it for a synchronous fixture that needs the run: one that calls
    :func:`corral.current_time`, starts tasks on the ``nursery`` fixture, or
    must be torn down in order with async fixtures. Only tests run by corral
    (``@pytest.mark.corral`` or ``corral_mode``) may use such a fixture;
    anything else is a setup error.

    A fixture that depends on another corral fixture (an async one, or
    ``nursery``) is a corral fixture already; it needs no decorator.
    """
    import pytest

    # The flag goes on the function itself: that is what the plugin's
    # pytest_fixture_setup hook gets back from pytest.
    setattr(fn, CORRAL_FIXTURE_FLAG, True)
    return pytest.fixture(fn)
