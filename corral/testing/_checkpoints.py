"""Assertions about checkpoints: did a block of code yield to the scheduler?

The scheduler keeps two counters on every task (see ``corral/_core``):
``_cancel_points`` grows each time the task passes a point where it could have
been cancelled, ``_schedule_points`` each time it passes a point where the
scheduler could have switched to another task. A *checkpoint* is both at
once, so a block "executed a checkpoint" when both counters moved, and
"executed no checkpoint" when neither did.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, final

from .._core import current_task

if TYPE_CHECKING:
    from types import TracebackType

    from .._core import Task

__all__ = ["assert_checkpoints", "assert_no_checkpoints"]


@final
class _CheckpointAssertion:
    """A one-shot context manager comparing the current task's checkpoint
    counters before and after its block."""

    __slots__ = ("_cancel_points", "_expect_checkpoint", "_schedule_points", "_task")

    def __init__(self, expect_checkpoint: bool) -> None:
        self._expect_checkpoint = expect_checkpoint
        self._task: Task | None = None
        self._cancel_points = 0
        self._schedule_points = 0

    def __enter__(self) -> None:
        task = current_task()
        self._task = task
        self._cancel_points = task._cancel_points
        self._schedule_points = task._schedule_points

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        task = self._task
        assert task is not None, "__exit__ without __enter__"
        cancel_moved = task._cancel_points != self._cancel_points
        schedule_moved = task._schedule_points != self._schedule_points
        if self._expect_checkpoint:
            # A block that raised proves nothing either way (it may have
            # failed before reaching its checkpoint, which is the caller's
            # business), so only a normal exit is judged.
            if exc_type is None and not (cancel_moved and schedule_moved):
                raise AssertionError("assert_checkpoints block did not yield!")
        elif cancel_moved or schedule_moved:
            # Judged on every exit: a checkpoint that raised Cancelled still
            # was a checkpoint. The in-flight exception becomes __context__.
            raise AssertionError("assert_no_checkpoints block yielded!")


def assert_checkpoints() -> AbstractContextManager[None]:
    """Return a context manager asserting that its block executes at least
    one :ref:`checkpoint <checkpoints>`, that is, passes both a cancel point
    and a schedule point, or else exits with an exception.

    Must be entered inside a :func:`corral.run`, in the task whose code is
    checked; only that task's checkpoints count.

    Raises:
      AssertionError: ``"assert_checkpoints block did not yield!"`` when the
        block finished normally without a cancel point and a schedule point.
      RuntimeError: when entered outside :func:`corral.run`.

    Example::

        with corral.testing.assert_checkpoints():
            await corral.sleep(0)
    """
    return _CheckpointAssertion(True)


def assert_no_checkpoints() -> AbstractContextManager[None]:
    """Return a context manager asserting that its block executes no
    :ref:`checkpoint <checkpoints>`: neither a cancel point nor a schedule
    point.

    The check happens however the block exits; if the block raised, the
    :exc:`AssertionError` replaces that exception (which stays reachable as
    its ``__context__``).

    Raises:
      AssertionError: ``"assert_no_checkpoints block yielded!"`` when the
        block passed a cancel point or a schedule point.
      RuntimeError: when entered outside :func:`corral.run`.

    Example::

        send, receive = corral.open_memory_channel(1)
        with corral.testing.assert_no_checkpoints():
            send.send_nowait(None)
    """
    return _CheckpointAssertion(False)
