"""``perform(op)``: the one path by which a task awaits I/O.

This is the completion core's narrow waist, the I/O counterpart of
``_core/_traps.py``: every socket, file and pipe call in corral ends here,
and so does every library built on :mod:`corral.lowlevel`'s op records.

The protocol (Trio's delayed-cancel pattern, as its Windows
``wait_overlapped`` uses it, applied to every op):

1. Cancel point: ``checkpoint_if_cancelled()``. A task already cancelled
   submits nothing.
2. ``backend.submit(op)``: queued; the next loop turn flushes it.
3. Park with ``wait_task_rescheduled(abort)``. If the task is cancelled while
   parked, ``abort`` calls ``backend.cancel(op)`` -- a *request* -- and
   returns ``Abort.FAILED``: the task stays parked, because the kernel may
   still be using the op's memory.
4. The terminal completion reschedules the task. If the kernel reports the
   op cancelled (``-ECANCELED``), ``Cancelled`` is raised: the op had no
   effect. Otherwise the result is returned (or ``OSError`` raised) even if a
   cancel was requested; the still-cancelled scope raises ``Cancelled`` at
   the next checkpoint. No received byte is lost.

So when ``perform`` returns or raises, the kernel holds no reference to any
memory the caller can see.
"""

from __future__ import annotations

import errno
import types
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

from .._core import (
    Abort,
    EndOfChannel,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_io_manager,
)
from .._core._run_context import GLOBAL_RUN_CONTEXT
from .._core._traps import WaitTaskRescheduled
from ._backend import RESUMED, Backend
from .ops import DONE, IN_FLIGHT, NEW, Operation, raise_errno

_ECANCELED = errno.ECANCELED
_FAILED = Abort.FAILED


def current_backend() -> Backend:
    """The running completion backend.

    Raises:
      RuntimeError: not inside a run, or the run has no completion backend
        (it was started with ``corral._core.run`` without a backend factory;
        use :func:`corral.run`).
    """
    manager = current_io_manager()
    if not isinstance(manager, Backend):
        raise RuntimeError(
            "this corral run has no completion backend (use corral.run, "
            "not corral._core.run without an io_manager_factory)"
        )
    return manager


async def perform(op: Operation) -> Any:
    """Submit ``op`` to the kernel and wait for its terminal completion.

    Returns the op's result (its class documents the type). For a multishot
    op (``op.multishot``), each call returns the op's next result instead:
    the first call submits it, results that arrive while nobody waits are
    queued on the op, and once the stream has ended (end of file, the op was
    cancelled with :func:`cancel_operation`) the call raises
    :exc:`corral.EndOfChannel`.

    Raises:
      corral.Cancelled: the surrounding scope was cancelled *and* the kernel
        cancelled the op (it had no effect). If the op completed anyway, the
        result is returned and ``Cancelled`` comes at the next checkpoint.
        A multishot op is not cancelled when a task waiting for its next
        result is: the kernel op keeps running and its results stay queued.
      OSError: the kernel failed the op (``errno`` is set).
      RuntimeError: ``op`` is already in flight, or the run has ended.

    This is always a checkpoint.
    """
    if op.multishot:
        return await _next_result(op)
    # This is the per-op hot path, so the scheduler's public helpers are
    # inlined: checkpoint_if_cancelled's "not cancelled" branch, the
    # backend lookup, and wait_task_rescheduled's trap (one generator frame
    # fewer, and a backend's RESUMED is not unwrapped).
    try:
        task = GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError("must be called from async context") from None
    runner = task._runner
    if task._cancel_status.effectively_cancelled or runner.ki_pending:
        await checkpoint_if_cancelled()  # raises if it is the cancel point
    else:
        task._cancel_points += 1
    # Typed as Any: any backend, checked by the attribute lookup below.
    backend: Any = runner.io_manager
    op._raise_cancel = None
    try:
        submit = backend.submit
    except AttributeError:
        current_backend()  # raises the explanatory RuntimeError
        raise
    submit(op)
    op._task = task

    def abort(raise_cancel: Any) -> Abort:
        op._raise_cancel = raise_cancel
        backend.cancel(op)
        return _FAILED

    resumed = await _park(WaitTaskRescheduled(abort))
    if resumed is not RESUMED:
        resumed.unwrap()
    return op._result()


@types.coroutine
def _park(msg: WaitTaskRescheduled) -> Generator[Any, Any, Any]:
    # wait_task_rescheduled's trap, minus its coroutine layer. The runner
    # sends what the backend passed to reschedule: RESUMED (io_uring's
    # completion path) or an Outcome.
    return (yield msg)


def _detach(op: Any) -> Callable[[Any], Abort]:
    def abort(_: Any) -> Abort:
        # The multishot op keeps running; its results queue up on the op.
        op._task = None
        return Abort.SUCCEEDED

    return abort


async def _next_result(op: Any) -> Any:
    # The multishot half of perform(), with the same inlining: this runs
    # once per received chunk on a socket that uses a multishot receive.
    try:
        task = GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError("must be called from async context") from None
    if task._cancel_status.effectively_cancelled or task._runner.ki_pending:
        await checkpoint_if_cancelled()
    else:
        task._cancel_points += 1
    queue = op._queue
    if op._state == NEW:
        current_backend().submit(op)
    parked = False
    while not queue:
        if op._state == DONE:
            raise EndOfChannel("the multishot operation has ended")
        op._task = task
        resumed = await _park(WaitTaskRescheduled(_detach(op)))
        if resumed is not RESUMED:
            resumed.unwrap()  # raises the Cancelled that _detach let in
        parked = True
    res, lease, terminal = queue.popleft()
    if terminal and (res < 0 or not op._rearm_after(res)):
        if lease is not None:
            lease.release()
        if res < 0 and not (res == -_ECANCELED and op._cancel_requested):
            raise_errno(res)
        raise EndOfChannel("the multishot operation has ended")
    if not parked:
        await cancel_shielded_checkpoint()
    return op._item(res, lease)


async def stream(op: Operation) -> AsyncIterator[Any]:
    """Iterate over a multishot op's results until the stream ends (an
    ``OSError`` from the kernel propagates)."""
    if not op.multishot:
        raise TypeError(f"{op!r} is not a multishot operation")
    while True:
        try:
            item = await perform(op)
        except EndOfChannel:
            return
        yield item


def cancel_operation(op: Operation) -> None:
    """Request cancellation of ``op`` (it must belong to the current run).

    Only a request: the op's terminal completion still arrives and decides
    what happened. Harmless if the op is not in flight. Used to stop a
    multishot op; single-shot ops are cancelled through their task's cancel
    scope instead.
    """
    if op._state == IN_FLIGHT:
        current_backend().cancel(op)


def orphan(op: Operation, callback: Callable[[Operation], None] | None = None) -> None:
    """Hand an in-flight op to the runtime: cancellation is requested, no
    task waits for it any more, and at its terminal completion
    ``callback(op)`` runs (or, with no callback, any pool lease it received
    is released). The op's memory stays owned by the op until then.

    Used when a task must stop waiting at once (runner shutdown); an
    orphaned receive's callback puts its bytes in the resource's stash.
    """
    if op._state != IN_FLIGHT:
        if callback is not None:
            callback(op)
        return
    op._task = None
    op._callback = callback
    current_backend().cancel(op)
