"""The run-level functions of the public API: ``current_*``, ``reschedule``,
``spawn_system_task`` and friends.

Each looks up the current run in ``GLOBAL_RUN_CONTEXT`` and raises
``RuntimeError("must be called from async context")`` outside one. They are
KeyboardInterrupt-protected, like the runner code they call into.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from outcome import Outcome

from ._ki import enable_ki_protection
from ._run_context import GLOBAL_RUN_CONTEXT

if TYPE_CHECKING:
    from .._abc import Clock
    from ._entry_queue import CorralToken
    from ._io_manager import IOManager
    from ._run import Runner, RunStatistics
    from ._task import Task

def _runner() -> Runner:
    try:
        return GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def current_task() -> Task:
    """Return the :class:`~corral.lowlevel.Task` that is running this code.

    Raises:
      RuntimeError: not called from inside a task.
    """
    try:
        return GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


@enable_ki_protection
def current_root_task() -> Task | None:
    """Return the run's root task, the ultimate parent of all other tasks
    (``None`` very early in a run)."""
    return _runner().init_task


@enable_ki_protection
def current_time() -> float:
    """Return the current time on the run's clock, in seconds.

    Raises:
      RuntimeError: outside a run.
    """
    return _runner().clock.current_time()


@enable_ki_protection
def current_clock() -> Clock:
    """Return the run's :class:`corral.abc.Clock`."""
    return _runner().clock


@enable_ki_protection
def current_statistics() -> RunStatistics:
    """Return run-loop statistics (:class:`corral.lowlevel.RunStatistics`):
    ``tasks_living``, ``tasks_runnable``, ``seconds_to_next_deadline``,
    ``io_statistics`` and ``run_sync_soon_queue_size``."""
    return _runner().current_statistics()


@enable_ki_protection
def current_io_manager() -> IOManager:
    """Return the run's I/O manager (the completion core uses this to find
    its backend)."""
    return _runner().io_manager


@enable_ki_protection
def current_corral_token() -> CorralToken:
    """Return the :class:`~corral.lowlevel.CorralToken` of the current run,
    for re-entering it from other threads."""
    return _runner().current_corral_token()


@enable_ki_protection
def reschedule(task: Task, next_send: Outcome[Any] | None = None) -> None:
    """Wake ``task``, which must be blocked in
    :func:`~corral.lowlevel.wait_task_rescheduled`, making that call return
    or raise what ``next_send`` holds (default ``outcome.Value(None)``).

    Exactly one call per ``wait_task_rescheduled`` (an abort callback
    returning ``Abort.SUCCEEDED`` counts as that call).
    """
    # The task knows its run: no thread-local lookup on this hot path.
    task._runner.reschedule(task, next_send)


@enable_ki_protection
def spawn_system_task(
    async_fn: Callable[..., Awaitable[object]],
    *args: object,
    name: object = None,
    context: contextvars.Context | None = None,
) -> Task:
    """Spawn a *system* task and return it.

    System tasks live in the run's system nursery rather than a nursery of
    yours; they are cancelled when the main task exits; an exception from
    one crashes the whole run with :exc:`corral.CorralInternalError`; they
    run with KeyboardInterrupt protection enabled; and they do not inherit
    your context variables (pass ``context=`` to choose).

    Raises:
      RuntimeError: the system nursery is closed (very late in the run:
        ``"Nursery is closed to new arrivals"``).
    """
    return _runner().spawn_system_task(async_fn, *args, name=name, context=context)


@enable_ki_protection
async def wait_all_tasks_blocked(cushion: float = 0.0) -> None:
    """Block until every other task has been blocked for ``cushion`` seconds
    of real time.

    With several waiters, the one with the smallest ``cushion`` wakes first
    (all with that same cushion wake together), which resets the others'
    timers. Cancellable.
    """
    await _runner().wait_all_tasks_blocked(cushion)


def current_effective_deadline() -> float:
    """Return the deadline that applies to the calling code, considering
    every enclosing cancel scope and shield: ``-inf`` if it is already
    cancelled, ``inf`` if no deadline applies."""
    return current_task()._cancel_status.effective_deadline()


def in_corral_run() -> bool:
    """Whether the calling code runs inside a corral run (exactly when
    :func:`corral.current_time` would succeed)."""
    return hasattr(GLOBAL_RUN_CONTEXT, "runner")


def in_corral_task() -> bool:
    """Whether the calling code runs inside a corral task (exactly when
    :func:`corral.lowlevel.current_task` would succeed)."""
    return hasattr(GLOBAL_RUN_CONTEXT, "task")


#: Trio's names.
in_trio_run = in_corral_run
in_trio_task = in_corral_task
current_trio_token = current_corral_token
