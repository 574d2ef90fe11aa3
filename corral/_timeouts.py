"""Sleeping and timeouts: sleep*, move_on_*, fail_*, TooSlowError."""

from __future__ import annotations

import math
from collections.abc import Generator
from contextlib import contextmanager
from typing import NoReturn

from ._core._accessors import current_time
from ._core._cancel import CancelScope
from ._core._traps import Abort, checkpoint, sleep_until_trap, wait_task_rescheduled


def move_on_at(deadline: float, *, shield: bool = False) -> CancelScope:
    """Return a :class:`CancelScope` that cancels itself at clock time
    ``deadline``; when it does, the ``with`` block is abandoned silently.

    Raises:
      ValueError: ``deadline`` is NaN.
    """
    return CancelScope(deadline=deadline, shield=shield)


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """Return a :class:`CancelScope` that cancels itself ``seconds`` after
    it is *entered*; when it does, the ``with`` block is abandoned silently.

    Raises:
      ValueError: ``seconds`` is negative or NaN.
    """
    if seconds < 0:
        raise ValueError("`seconds` must be non-negative")
    if math.isnan(seconds):
        raise ValueError("`seconds` must not be NaN")
    return CancelScope(shield=shield, relative_deadline=seconds)


async def sleep_forever() -> NoReturn:
    """Block until cancelled (``await sleep(math.inf)``).

    Raises:
      corral.Cancelled: the only way out.
      RuntimeError: if someone reschedules the task by hand.
    """
    await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)
    raise RuntimeError("Should never have been rescheduled!")


async def sleep_until(deadline: float) -> None:
    """Block until clock time ``deadline`` (see :func:`corral.current_time`).

    A deadline in the past still executes a checkpoint. Waking a sleeper
    costs one timer-heap entry; no exception is raised internally.

    Raises:
      ValueError: ``deadline`` is NaN.
      corral.Cancelled: the sleep was cancelled.
    """
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    if deadline == math.inf:
        await sleep_forever()
    await sleep_until_trap(deadline)


async def sleep(seconds: float) -> None:
    """Block for ``seconds`` seconds; ``sleep(0)`` is a pure checkpoint.

    Raises:
      ValueError: ``seconds`` is negative or NaN.
      corral.Cancelled: the sleep was cancelled.
    """
    if seconds < 0:
        raise ValueError("`seconds` must be non-negative")
    if seconds == 0:
        await checkpoint()
    else:
        await sleep_until(current_time() + seconds)


class TooSlowError(Exception):
    """Raised by :func:`fail_after` and :func:`fail_at` when their deadline
    passes and the block is cancelled."""


@contextmanager
def fail_at(deadline: float, *, shield: bool = False) -> Generator[CancelScope, None, None]:
    """Like :func:`move_on_at`, but when the deadline cancels the block,
    :exc:`TooSlowError` is raised in place of the caught
    :exc:`corral.Cancelled`.

    Raises:
      TooSlowError: the block was cancelled by this scope.
      ValueError: ``deadline`` is NaN.
    """
    with move_on_at(deadline, shield=shield) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TooSlowError


@contextmanager
def fail_after(seconds: float, *, shield: bool = False) -> Generator[CancelScope, None, None]:
    """Like :func:`move_on_after`, but when the timeout cancels the block,
    :exc:`TooSlowError` is raised in place of the caught
    :exc:`corral.Cancelled`. The deadline is computed on entry.

    Raises:
      TooSlowError: the block was cancelled by this scope.
      ValueError: ``seconds`` is negative or NaN.
    """
    with move_on_after(seconds, shield=shield) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TooSlowError
