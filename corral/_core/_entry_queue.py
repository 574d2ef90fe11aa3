"""CorralToken and run_sync_soon: re-entering a run from other threads and
from signal handlers.

Jobs go into a queue guarded by a lock; the submitter then calls the I/O
manager's ``force_wakeup()``. After every I/O wait the runner looks at the
queue (two length checks) and, if the entry task is parked, reschedules it.
The entry task runs the jobs in the run thread, in FIFO order (idempotent
jobs are deduplicated and run after the FIFO ones of the same batch).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._exceptions import Cancelled, RunFinishedError, _NoPublicConstructor
from ._ki import enable_ki_protection
from ._run_context import GLOBAL_RUN_CONTEXT
from ._traps import Abort, RaiseCancelT, checkpoint, wait_task_rescheduled

if TYPE_CHECKING:
    from ._io_manager import IOManager
    from ._task import Task

_Job = tuple[Callable[..., object], tuple[Any, ...]]


class EntryQueue:
    """The run's queue of ``run_sync_soon`` jobs."""

    def __init__(self, io_manager: IOManager) -> None:
        self.io_manager = io_manager
        self.queue: deque[_Job] = deque()
        self.idempotent_queue: dict[_Job, None] = {}
        # Held only around queue/`done` updates. It does not protect against
        # a signal handler running in this thread while the lock is held
        # (deque.append and dict stores are atomic anyway); it orders
        # submitters against the final `done = True`.
        self.lock = threading.RLock()
        self.done = False
        # The entry task while it is parked waiting for jobs.
        self.parked_task: Task | None = None

    def has_jobs(self) -> bool:
        return bool(self.queue or self.idempotent_queue)

    def run_sync_soon(
        self, sync_fn: Callable[..., object], *args: object, idempotent: bool = False
    ) -> None:
        with self.lock:
            if self.done:
                raise RunFinishedError("run() has exited")
            if idempotent:
                self.idempotent_queue[(sync_fn, args)] = None
            else:
                self.queue.append((sync_fn, args))
        self.io_manager.force_wakeup()

    def size(self) -> int:
        return len(self.queue) + len(self.idempotent_queue)

    def close(self) -> None:
        with self.lock:
            self.done = True

    def _run_cb(self, job: _Job) -> None:
        sync_fn, args = job
        try:
            sync_fn(*args)
        except BaseException as exc:
            # A crashing callback takes the whole run down, as a system task
            # crash does.
            async def kill_everything(exc: BaseException) -> Any:
                raise exc

            runner = GLOBAL_RUN_CONTEXT.runner
            try:
                runner.spawn_system_task(kill_everything, exc)
            except RuntimeError:
                # Late in shutdown the system nursery is closed: use the
                # entry task's own nursery instead.
                parent_nursery = GLOBAL_RUN_CONTEXT.task.parent_nursery
                if parent_nursery is None:  # pragma: no cover
                    raise AssertionError(
                        "Entry queue task has no parent nursery; cannot report exception"
                    ) from exc
                parent_nursery.start_soon(kill_everything, exc)

    def _run_all_bounded(self) -> None:
        # Only the jobs queued when we start: jobs that queue more jobs must
        # not starve the rest of the run.
        for _ in range(len(self.queue)):
            self._run_cb(self.queue.popleft())
        for job in list(self.idempotent_queue):
            del self.idempotent_queue[job]
            self._run_cb(job)

    async def _wait_for_jobs(self) -> None:
        task = GLOBAL_RUN_CONTEXT.task

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            self.parked_task = None
            return Abort.SUCCEEDED

        self.parked_task = task
        await wait_task_rescheduled(abort)

    @enable_ki_protection
    async def task(self) -> None:
        try:
            while True:
                self._run_all_bounded()
                if not self.queue and not self.idempotent_queue:
                    await self._wait_for_jobs()
                else:
                    await checkpoint()
        except Cancelled:
            with self.lock:
                self.done = True
            # No new jobs can arrive: run what is left.
            self._run_all_bounded()
            assert not self.queue
            assert not self.idempotent_queue


class CorralToken(metaclass=_NoPublicConstructor):
    """An opaque handle on one run, usable from any thread.

    Get it with :func:`corral.lowlevel.current_corral_token` (Trio's name:
    ``current_trio_token``). It is hashable and compares equal only to the
    token of the same run.
    """

    __slots__ = ("__weakref__", "_reentry_queue")

    def __init__(self, reentry_queue: EntryQueue) -> None:
        self._reentry_queue = reentry_queue

    def run_sync_soon(
        self, sync_fn: Callable[..., object], *args: object, idempotent: bool = False
    ) -> None:
        """Schedule ``sync_fn(*args)`` to run in the run's thread soon.

        Thread-safe and signal-safe; never blocks, so it may be called from a
        signal handler. Callbacks run in FIFO order relative to each other,
        with KeyboardInterrupt protection. If ``sync_fn`` raises, the run is
        torn down with :exc:`corral.CorralInternalError`. Callbacks queued
        before the run finishes are all run; later calls raise.

        Args:
          idempotent: if true, a callback already queued with an equal
            ``(sync_fn, args)`` is not queued again (they must be hashable),
            and ordering relative to other callbacks is not guaranteed.

        Raises:
          corral.RunFinishedError: the run has already finished.
        """
        self._reentry_queue.run_sync_soon(sync_fn, *args, idempotent=idempotent)


#: Trio's name for :class:`CorralToken`.
TrioToken = CorralToken
