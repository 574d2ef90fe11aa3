"""The narrow waist: the only functions that ever yield to the run loop.

Every blocking path in corral ends in one of the traps below. A trap yields a
small message object to the runner; the runner resumes the task later by
sending either ``None`` (plain success: checkpoints, sleeps, and
:func:`reschedule` without an outcome) or an :class:`outcome.Outcome` (what :func:`reschedule` was given, or
the ``Cancelled``/``KeyboardInterrupt`` being delivered), which the trap
unwraps in the task's own frame so tracebacks point at the blocking call.

Messages (the runner dispatches on identity or exact type, most frequent
first):

* ``CHECKPOINT``: a full checkpoint. The runner re-queues the task at once; on
  resumption it delivers a pending cancellation (or ``KeyboardInterrupt`` for
  the main task) instead of resuming normally. Cancel point + schedule point.
* ``CANCEL_SHIELDED_CHECKPOINT``: schedule point only.
* :class:`SleepUntil`: park until a clock time. The runner files the message
  itself in the timer heap; expiry re-queues the task directly (no
  exception is raised to wake a sleeper), and cancellation invalidates the
  heap entry. Cancel point + schedule point.
* :class:`WaitTaskRescheduled`: park until :func:`reschedule`; the general
  blocking primitive with an abort callback.
* :class:`PermanentlyDetachCoroutineObject`: the task ends, its coroutine
  lives on under another runner.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import outcome

from ._run_context import GLOBAL_RUN_CONTEXT

if TYPE_CHECKING:
    from ._task import Task

RaiseCancelT: TypeAlias = Callable[[], NoReturn]


class Abort(enum.Enum):
    """What an abort callback passed to :func:`wait_task_rescheduled` reports.

    .. data:: SUCCEEDED

       The operation was cleaned up; the runner reschedules the task at once
       with the pending ``Cancelled`` (or ``KeyboardInterrupt``).

    .. data:: FAILED

       The operation could not be cancelled synchronously. The task stays
       parked; someone must still call :func:`reschedule` on it exactly once
       (possibly passing ``outcome.capture(raise_cancel)`` to deliver the
       cancellation late: the delayed-cancel pattern).
    """

    SUCCEEDED = 1
    FAILED = 2


class _Checkpoint:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<corral checkpoint trap>"


class _CancelShieldedCheckpoint:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<corral cancel-shielded checkpoint trap>"


#: Singleton messages: dispatched by identity, never allocated per call.
CHECKPOINT: Any = _Checkpoint()
CANCEL_SHIELDED_CHECKPOINT: Any = _CancelShieldedCheckpoint()


class WaitTaskRescheduled:
    """Message: park until rescheduled; ``abort_func`` handles cancellation."""

    __slots__ = ("abort_func",)

    def __init__(self, abort_func: Callable[[RaiseCancelT], Abort]) -> None:
        self.abort_func = abort_func


class SleepUntil:
    """Message and timer-heap entry for a sleep.

    The runner sets ``task`` when it files the entry and clears it when the
    entry fires or the sleep is cancelled; an entry whose ``task`` is ``None``
    is stale and skipped when popped (lazy deletion). The object is also the
    sleeping task's abort callback, so a sleep costs one allocation.
    """

    __slots__ = ("deadline", "task")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.task: Task | None = None

    def __call__(self, raise_cancel: RaiseCancelT) -> Abort:
        # Cancelled while parked: invalidate the heap entry; the runner then
        # reschedules the task with the Cancelled.
        if self.task is not None:
            self.task._runner.deadlines.active -= 1
            self.task = None
        return Abort.SUCCEEDED


class PermanentlyDetachCoroutineObject:
    """Message: the task exits with ``final_outcome``; its coroutine is now
    somebody else's."""

    __slots__ = ("final_outcome",)

    def __init__(self, final_outcome: outcome.Outcome[object]) -> None:
        self.final_outcome = final_outcome


@types.coroutine
def _yield(msg: object) -> Generator[Any, Any, Any]:
    # The bottommost frame of every trap. What comes back is None or an
    # Outcome (see the module docstring).
    return (yield msg)


async def checkpoint() -> None:
    """A pure :ref:`checkpoint <checkpoints>`: a schedule point, then a cancel
    point.

    Lets other tasks run, then raises :exc:`corral.Cancelled` if the calling
    context is cancelled (or :exc:`KeyboardInterrupt` in the main task when
    one is pending). Equivalent to ``await corral.sleep(0)``.
    """
    result = await _yield(CHECKPOINT)
    if result is not None:
        # No local may keep the outcome: see wait_task_rescheduled.
        try:
            result.unwrap()
        finally:
            del result


async def cancel_shielded_checkpoint() -> None:
    """A schedule point that is not a cancel point.

    Equivalent to (but cheaper than)::

        with corral.CancelScope(shield=True):
            await corral.lowlevel.checkpoint()

    Combined with :func:`checkpoint_if_cancelled` it makes a full checkpoint.
    """
    result = await _yield(CANCEL_SHIELDED_CHECKPOINT)
    if result is not None:
        # No local may keep the outcome: see wait_task_rescheduled.
        try:
            result.unwrap()
        finally:
            del result


async def checkpoint_if_cancelled() -> None:
    """A cancel point that is a schedule point only when cancelled.

    If the calling context is cancelled (``current_effective_deadline() ==
    -inf``), lets other tasks run and raises :exc:`corral.Cancelled`;
    otherwise returns at once without yielding.
    """
    task = GLOBAL_RUN_CONTEXT.task
    if task._cancel_status.effectively_cancelled or (
        task._runner.ki_pending and task is task._runner.main_task
    ):
        await checkpoint()
        raise AssertionError("this should never happen")  # pragma: no cover
    task._cancel_points += 1


async def sleep_until_trap(deadline: float) -> None:
    """Park the calling task until clock time ``deadline`` (cancel point and
    schedule point). Used by :func:`corral.sleep_until`; validates nothing."""
    result = await _yield(SleepUntil(deadline))
    if result is not None:
        # No local may keep the outcome: see wait_task_rescheduled.
        try:
            result.unwrap()
        finally:
            del result


async def wait_task_rescheduled(abort_func: Callable[[RaiseCancelT], Abort]) -> Any:
    """Put the current task to sleep until someone calls :func:`reschedule`.

    The lowest-level way to block; prefer :class:`ParkingLot` or higher-level
    APIs when they fit. It is a checkpoint: the call's context may already be
    cancelled, in which case ``abort_func`` runs right away.

    Before calling, arrange for "someone" to call :func:`reschedule` on the
    current task later. Then one of two things happens:

    1. :func:`reschedule` is called with an :class:`outcome.Outcome`, and this
       function returns (or raises) what it holds.
    2. The call's context becomes cancelled (a deadline passes, a scope is
       cancelled, a ``KeyboardInterrupt`` is pending for the main task). Then
       ``abort_func(raise_cancel)`` is called, at most once per call. It must
       try to undo the pending operation so that nobody reschedules the task:

       * if that worked, return :data:`Abort.SUCCEEDED`; the runner
         reschedules the task with the exception ``raise_cancel()`` raises;
       * otherwise return :data:`Abort.FAILED`; the task stays parked, no
         exception is delivered, and someone must still reschedule it exactly
         once. That someone may deliver the cancellation late, by passing
         ``outcome.capture(raise_cancel)`` to :func:`reschedule` or by
         rescheduling normally and calling ``raise_cancel()`` in the task
         afterwards. This is the delayed-cancel pattern: corral's completion
         core requests a kernel cancel in ``abort_func``, returns ``FAILED``,
         and resumes the task only with the operation's terminal completion.

    :attr:`Task.custom_sleep_data` is free for the sleeping task, the abort
    callback and the waker to share; the runner clears it on reschedule.

    Warning:
      If ``abort_func`` raises or returns anything but an :class:`Abort`
      member, the run crashes with :exc:`corral.CorralInternalError`. Missing
      or duplicate :func:`reschedule` calls deadlock or corrupt the run.
    """
    result = await _yield(WaitTaskRescheduled(abort_func))
    # reschedule(task) without an outcome sends None: return None.
    if result is None:
        return None
    try:
        return result.unwrap()
    finally:
        # A raised error's traceback references this frame: a local still
        # holding the outcome (which holds the error) would be a reference
        # cycle keeping the failed task's locals alive until the GC runs.
        del result


async def permanently_detach_coroutine_object(
    final_outcome: outcome.Outcome[object],
) -> object:
    """Detach the current task's coroutine from corral for good.

    corral acts as if the task exited with ``final_outcome``; the coroutine is
    resumed by whatever foreign runner takes it over, and this call returns or
    raises what that runner sends in.

    Raises:
      RuntimeError: if the task still has open nurseries.
    """
    if GLOBAL_RUN_CONTEXT.task._child_nurseries:
        raise RuntimeError(
            "can't permanently detach a coroutine object with open nurseries",
        )
    return await _yield(PermanentlyDetachCoroutineObject(final_outcome))


async def temporarily_detach_coroutine_object(
    abort_func: Callable[[RaiseCancelT], Abort],
) -> object:
    """Detach the current coroutine from corral until
    :func:`reattach_detached_coroutine_object` is called from inside it.

    The :class:`Task` stays alive but suspended; meanwhile another runner may
    drive the coroutine, and this call returns (or raises) what that runner
    first sends in. ``abort_func`` is as for :func:`wait_task_rescheduled`
    except that it must return :data:`Abort.FAILED`.
    """
    return await _yield(WaitTaskRescheduled(abort_func))


async def reattach_detached_coroutine_object(task: Task, yield_value: object) -> None:
    """Give a detached coroutine back to corral.

    Must be called from inside the coroutine being resumed by the foreign
    runner: it yields ``yield_value`` to that runner (which should then stop
    driving the coroutine), and returns once corral resumes the task.

    Raises:
      RuntimeError: if ``task``'s coroutine is not the one running.
    """
    # A crude check (the coroutine runner's own task could also be running),
    # but this is an experts-only interface.
    if not task.coro.cr_running:
        raise RuntimeError("given task does not match calling coroutine")
    task._runner.reschedule(task, outcome.Value("reattaching"))
    value = await _yield(yield_value)
    assert value == outcome.Value("reattaching")
