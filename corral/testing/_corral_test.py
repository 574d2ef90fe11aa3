"""``corral_test``: turn an async test function into a sync one that runs it
in :func:`corral.run` (for test runners without corral's pytest plugin)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ..abc import Clock, Instrument

__all__ = ["corral_test", "trio_test"]

P = ParamSpec("P")
R = TypeVar("R")


def corral_test(fn: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """Wrap the async function ``fn`` into a synchronous function that runs
    it inside a new :func:`corral.run` and returns its result.

    Keyword arguments that are :class:`corral.abc.Clock` or
    :class:`corral.abc.Instrument` instances (pytest fixtures, typically)
    are also given to :func:`corral.run` as its clock and instruments; they
    are still passed on to ``fn``.

    Raises:
      ValueError: ``"too many clocks spoil the broth!"`` when more than one
        keyword argument is a clock.
      Whatever ``fn`` raises, as :func:`corral.run` reports it.

    Example::

        @corral_test
        async def test_sleep(autojump_clock):
            await corral.sleep(10)
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True
        from .. import run

        clocks = [value for value in kwargs.values() if isinstance(value, Clock)]
        if len(clocks) > 1:
            raise ValueError("too many clocks spoil the broth!")
        instruments = [value for value in kwargs.values() if isinstance(value, Instrument)]
        return run(
            functools.partial(fn, *args, **kwargs),
            clock=clocks[0] if clocks else None,
            instruments=instruments,
        )

    return wrapper


# Trio's spelling, so that a ported test suite keeps working unchanged.
trio_test = corral_test
