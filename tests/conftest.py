"""Shared test configuration.

TEMPORARY (until corral's pytest plugin lands, corral/testing/_pytest_plugin.py):
run ``async def`` test functions inside ``corral.run``. The plugin replaces this
hook; remove it then.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    import corral

    kwargs: dict[str, Any] = {
        name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames
    }
    corral.run(functools.partial(fn, **kwargs))
    return True
