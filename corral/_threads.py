"""Bridging tasks and threads: ``to_thread.run_sync`` runs blocking code in a
worker thread; ``from_thread.run``/``run_sync``/``check_cancelled`` let that
thread (or any foreign thread holding a token) call back into the run.

Same semantics and errors as Trio's ``trio.to_thread``/``trio.from_thread``.

How a worker thread talks to its task
-------------------------------------

``to_thread.run_sync`` parks its task in ``wait_task_rescheduled`` for as
long as the thread runs, and the thread carries a :class:`_ThreadLink` (in a
thread-local) back to it. Everything the thread sends to the run goes
through the run's token (``run_sync_soon``), and the task wakes up with one
of three messages:

- an :class:`outcome.Outcome`: the thread is done; return or raise it;
- a :class:`_RunAsync` / :class:`_RunSync` from ``from_thread.run`` /
  ``run_sync``: run the function *in this task* (so it inherits the task's
  cancel scopes and context variables), post the result to the thread's
  queue, and park again.

When ``abandon_on_cancel=True`` and the task is cancelled, the task leaves at
once (``Abort.SUCCEEDED``) and clears ``link.task``: the thread's later
messages can no longer go to the task, so ``from_thread`` calls from it run
in new system tasks instead, and its result is dropped. With
``abandon_on_cancel=False`` the abort fails (the task keeps waiting for the
thread); in both cases ``link.raise_cancel`` is filled in so the thread can
notice with ``from_thread.check_cancelled()``.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from itertools import count
from typing import Any, Generic, NoReturn, TypeVar, TypeVarTuple, Unpack

import attrs
import outcome
from sniffio import current_async_library_cvar

from ._core import (
    Abort,
    CorralToken,
    RunFinishedError,
    RunVar,
    Task,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_corral_token,
    current_task,
    disable_ki_protection,
    enable_ki_protection,
    reschedule,
    spawn_system_task,
    start_thread_soon,
    wait_task_rescheduled,
)
from ._core._task import coroutine_or_error
from ._sync import CapacityLimiter, Event

__all__ = [
    "active_thread_count",
    "current_default_thread_limiter",
    "from_thread_check_cancelled",
    "from_thread_run",
    "from_thread_run_sync",
    "to_thread_run_sync",
    "wait_all_threads_completed",
]

RetT = TypeVar("RetT")
Ts = TypeVarTuple("Ts")

RaiseCancel = Callable[[], NoReturn]

#: The default limiter's size. An arbitrary but conventional number (Trio's).
DEFAULT_LIMIT = 40

_limiter_local: RunVar[CapacityLimiter] = RunVar("limiter")
_thread_numbers = count()


# --------------------------------------------------------------------------
# The link between a worker thread and its task


class _ThreadLink:
    """Shared between a ``to_thread.run_sync`` call and its worker thread.

    ``task`` is the waiting task, or None once it abandoned the thread;
    ``raise_cancel`` is set when a cancellation was delivered to the task.
    Both are written only in the run's thread; the worker thread reads
    them (single attribute reads are atomic).
    """

    __slots__ = ("abandon_on_cancel", "raise_cancel", "task", "token")

    def __init__(self, token: CorralToken, task: Task, abandon_on_cancel: bool) -> None:
        self.token = token
        self.task: Task | None = task
        self.abandon_on_cancel = abandon_on_cancel
        self.raise_cancel: RaiseCancel | None = None


class _WorkerLocal(threading.local):
    link: _ThreadLink


_worker_local = _WorkerLocal()


# --------------------------------------------------------------------------
# Counting running threads (for corral.testing.wait_all_threads_completed)


@attrs.define
class _ActiveThreads:
    count: int
    idle: Event


_active_threads_local: RunVar[_ActiveThreads] = RunVar("active_threads")


@contextlib.contextmanager
def _track_active_thread() -> Generator[None, None, None]:
    try:
        active = _active_threads_local.get()
    except LookupError:
        active = _ActiveThreads(0, Event())
        _active_threads_local.set(active)
    active.count += 1
    try:
        yield
    finally:
        active.count -= 1
        if active.count == 0:
            active.idle.set()
            active.idle = Event()


async def wait_all_threads_completed() -> None:
    """Wait until no ``to_thread.run_sync`` call of this run is in progress.

    For tests: together with :func:`corral.testing.wait_all_tasks_blocked`
    it lets a test wait until everything settled::

        while True:
            await corral.testing.wait_all_threads_completed()
            await corral.testing.wait_all_tasks_blocked()
            if corral.testing.active_thread_count() == 0:
                break

    A checkpoint.
    """
    await checkpoint()
    try:
        active = _active_threads_local.get()
    except LookupError:
        return
    while active.count != 0:
        await active.idle.wait()


def active_thread_count() -> int:
    """How many ``to_thread.run_sync`` calls of this run are in progress
    (see :func:`wait_all_threads_completed`)."""
    try:
        return _active_threads_local.get().count
    except LookupError:
        return 0


# --------------------------------------------------------------------------
# to_thread


def current_default_thread_limiter() -> CapacityLimiter:
    """Return the :class:`corral.CapacityLimiter` that
    :func:`corral.to_thread.run_sync` uses when given no ``limiter``: one per
    run, created on first use with 40 tokens. Change its
    :attr:`~corral.CapacityLimiter.total_tokens` to allow more or fewer
    threads at once.

    Raises:
      RuntimeError: outside a run.
    """
    try:
        return _limiter_local.get()
    except LookupError:
        limiter = CapacityLimiter(DEFAULT_LIMIT)
        _limiter_local.set(limiter)
        return limiter


@attrs.frozen(eq=False, slots=False)
class ThreadPlaceholder:
    """Stands for a worker thread as a :class:`corral.CapacityLimiter`
    borrower (the thread may outlive the task that started it)."""

    name: str


class _RunSync(Generic[RetT]):
    """A ``from_thread.run_sync`` request."""

    __slots__ = ("args", "context", "fn", "queue")

    def __init__(self, fn: Callable[..., RetT], args: tuple[object, ...]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.queue: queue.SimpleQueue[outcome.Outcome[RetT]] = queue.SimpleQueue()

    @disable_ki_protection
    def _call(self) -> RetT:
        result = self.context.run(self.fn, *self.args)
        if inspect.iscoroutine(result):
            result.close()  # avoid "coroutine was never awaited"
            raise TypeError(
                f"corral expected a synchronous function, but "
                f"{getattr(self.fn, '__qualname__', self.fn)!r} appears to be asynchronous"
            )
        return result

    def run_sync(self) -> None:
        """Run in the run's thread (in a task or as a run_sync_soon callback)."""
        self.queue.put_nowait(outcome.capture(self._call))

    def run_in_host_task(self, link: _ThreadLink) -> None:
        link.token.run_sync_soon(_wake_host_task, link, self)

    def run_in_system_nursery(self, token: CorralToken) -> None:
        token.run_sync_soon(self.run_sync)


class _RunAsync(Generic[RetT]):
    """A ``from_thread.run`` request."""

    __slots__ = ("afn", "args", "context", "queue")

    def __init__(self, afn: Callable[..., Awaitable[RetT]], args: tuple[object, ...]) -> None:
        self.afn = afn
        self.args = args
        self.context = contextvars.copy_context()
        self.queue: queue.SimpleQueue[outcome.Outcome[RetT]] = queue.SimpleQueue()

    @disable_ki_protection
    async def _call(self) -> RetT:
        coro: Coroutine[Any, Any, RetT] = coroutine_or_error(self.afn, *self.args)
        return await coro

    async def run(self) -> None:
        """Run in the task blocked in ``to_thread.run_sync``, in the thread's
        context. Assigning ``task.context`` takes effect at the task's next
        step, hence the shielded checkpoints around the call."""
        task = current_task()
        saved = task.context
        task.context = self.context.copy()
        await cancel_shielded_checkpoint()
        result = await outcome.acapture(self._call)
        task.context = saved
        await cancel_shielded_checkpoint()
        self.queue.put_nowait(result)

    async def run_system(self) -> None:
        self.queue.put_nowait(await outcome.acapture(self._call))

    def run_in_host_task(self, link: _ThreadLink) -> None:
        link.token.run_sync_soon(_wake_host_task, link, self)

    def run_in_system_nursery(self, token: CorralToken) -> None:
        def spawn() -> None:
            try:
                spawn_system_task(self.run_system, name=self.afn, context=self.context)
            except RuntimeError:  # the system nursery is closed: run is ending
                self.queue.put_nowait(outcome.Error(RunFinishedError("system nursery is closed")))

        token.run_sync_soon(spawn)


def _wake_host_task(link: _ThreadLink, message: _RunSync[Any] | _RunAsync[Any]) -> None:
    task = link.task
    # from_thread only routes to the host task when the thread cannot be
    # abandoned, so the task is still waiting for it.
    assert task is not None, "a non-abandonable thread lost its task"
    reschedule(task, outcome.Value(message))


@enable_ki_protection
async def to_thread_run_sync(
    sync_fn: Callable[[Unpack[Ts]], RetT],
    *args: *Ts,
    thread_name: str | None = None,
    abandon_on_cancel: bool = False,
    limiter: CapacityLimiter | None = None,
) -> RetT:
    """Call ``sync_fn(*args)`` in a worker thread and wait for its result,
    letting other tasks run meanwhile.

    From the thread, :mod:`corral.from_thread` functions call back into
    this run (the functions run in this task, inside its cancel scopes).

    Args:
      sync_fn: a synchronous callable (use :func:`functools.partial` for
        keyword arguments).
      *args: its positional arguments.
      thread_name: the worker's name while it runs ``sync_fn``
        (``threading.Thread.name``, and the OS thread name truncated to 15
        bytes where supported). Default: ``"<sync_fn.__name__> from <task
        name>"``.
      abandon_on_cancel: what cancellation does once the thread runs. False
        (the default): nothing: the call keeps waiting for the thread, as if
        ``sync_fn`` ran inline, and returns or raises its result (the
        cancelled scope then raises at the next checkpoint). True: raise
        :exc:`corral.Cancelled` at once and abandon the thread, which keeps
        running in the background; its result or exception is discarded.
        Only for code that is safe to leave running. Either way the thread
        can poll :func:`corral.from_thread.check_cancelled`.
      limiter: bounds the number of threads running at once. Anything with
        ``acquire_on_behalf_of``/``release_on_behalf_of`` methods; default:
        :func:`current_default_thread_limiter`. The token is held until the
        thread actually finishes (after an abandon, possibly after this call
        returned; never, if the run ends first).

    Returns whatever ``sync_fn(*args)`` returns; raises what it raises.

    Raises:
      TypeError: if ``sync_fn`` returns a coroutine (it is async).
      Cancelled: if cancelled before the thread started (this call is a
        checkpoint), or after, with ``abandon_on_cancel=True``.

    Do not use it for long CPU-bound work: besides the GIL, CPU-bound
    threads tend to starve the thread running the event loop.
    """
    await checkpoint_if_cancelled()
    # bool() early: a bad abandon_on_cancel must fail before a thread starts.
    abandon = bool(abandon_on_cancel)
    if limiter is None:
        limiter = current_default_thread_limiter()
    token = current_corral_token()
    task = current_task()
    link = _ThreadLink(token, task, abandon)
    placeholder = ThreadPlaceholder(f"corral.to_thread.run_sync-{next(_thread_numbers)}")
    if thread_name is None:
        thread_name = f"{getattr(sync_fn, '__name__', None)} from {task.name}"

    # Run in the thread: worker() under a copy of the caller's context.
    context = contextvars.copy_context()
    # The thread is not in async context, even if the caller's context says
    # so through sniffio's context variable.
    context.run(current_async_library_cvar.set, None)

    def worker() -> RetT:
        _worker_local.link = link
        try:
            result = context.run(sync_fn, *args)
            if inspect.iscoroutine(result):
                result.close()  # avoid "coroutine was never awaited"
                raise TypeError(
                    f"corral expected a sync function, but "
                    f"{getattr(sync_fn, '__qualname__', sync_fn)!r} appears to be asynchronous"
                )
            return result
        finally:
            del _worker_local.link

    # Run in the worker thread once sync_fn is done.
    def deliver(result: outcome.Outcome[RetT]) -> None:
        # If the run already ended, the task is long gone (it abandoned the
        # thread): there is nobody to tell.
        with contextlib.suppress(RunFinishedError):
            token.run_sync_soon(report_back, result)

    # Run in the run's thread.
    def report_back(result: outcome.Outcome[RetT]) -> None:
        def release_then_unwrap() -> RetT:
            # The limiter is arbitrary user code: if releasing raises, that
            # error replaces (and chains with) the thread's result.
            try:
                return result.unwrap()
            finally:
                assert limiter is not None
                limiter.release_on_behalf_of(placeholder)

        final = outcome.capture(release_then_unwrap)
        if link.task is not None:
            reschedule(link.task, outcome.Value(final))

    await limiter.acquire_on_behalf_of(placeholder)
    with _track_active_thread():
        try:
            start_thread_soon(worker, deliver, thread_name)
        except BaseException:
            limiter.release_on_behalf_of(placeholder)
            raise

        def abort(raise_cancel: RaiseCancel) -> Abort:
            link.raise_cancel = raise_cancel
            if abandon:
                link.task = None  # report_back must not wake us any more
                return Abort.SUCCEEDED
            return Abort.FAILED

        while True:
            message: Any = await wait_task_rescheduled(abort)
            if isinstance(message, outcome.Outcome):
                return message.unwrap()  # type: ignore[no-any-return]
            if isinstance(message, _RunAsync):
                await message.run()
            else:
                assert isinstance(message, _RunSync)
                message.run_sync()
            del message


# --------------------------------------------------------------------------
# from_thread


def from_thread_check_cancelled() -> None:
    """Raise :exc:`corral.Cancelled` if the task waiting for this worker
    thread in :func:`corral.to_thread.run_sync` has been cancelled.

    Lets a thread started with ``abandon_on_cancel=False`` stop early at a
    safe point, or an abandoned thread stop sooner.

    It reports whether a cancellation was ever *delivered* to the waiting
    task (whatever ``abandon_on_cancel`` is), even one a shield later hid;
    a normal checkpoint only raises while the cancellation is in effect.

    Raises:
      Cancelled: as described.
      RuntimeError: if this thread was not started by
        :func:`corral.to_thread.run_sync`.
    """
    try:
        raise_cancel = _worker_local.link.raise_cancel
    except AttributeError:
        raise RuntimeError(
            "this thread wasn't created by corral, can't check for cancellation"
        ) from None
    if raise_cancel is not None:
        raise_cancel()


def _send_to_run(
    token: CorralToken | None, message: _RunSync[RetT] | _RunAsync[RetT]
) -> RetT:
    if token is None:
        try:
            link = _worker_local.link
        except AttributeError:
            raise RuntimeError(
                "this thread wasn't created by corral, pass kwarg corral_token=..."
            ) from None
        token = link.token
    else:
        link = None
        if not isinstance(token, CorralToken):
            raise RuntimeError("Passed kwarg corral_token is not of type CorralToken")

    # Waiting for the run from inside the run would deadlock.
    try:
        current_task()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("this is a blocking function; call it from a thread")

    if link is None or link.abandon_on_cancel:
        # A foreign thread (or one that may be abandoned at any moment):
        # run the function on its own, not in the waiting task.
        message.run_in_system_nursery(token)
    else:
        message.run_in_host_task(link)
    return message.queue.get().unwrap()


def from_thread_run(
    afn: Callable[[Unpack[Ts]], Awaitable[RetT]],
    *args: *Ts,
    corral_token: CorralToken | None = None,
    trio_token: CorralToken | None = None,
) -> RetT:
    """From a thread, run ``await afn(*args)`` in the run and wait for it.

    Which run, and where:

    - In a thread started by :func:`corral.to_thread.run_sync`, with no
      token: in the task waiting for this thread, inside its cancel scopes
      and with the context variables of this thread. (If the thread was
      started with ``abandon_on_cancel=True``, in a new system task instead,
      since the waiting task may leave at any time.)
    - With ``corral_token=`` (from :func:`corral.lowlevel.current_corral_token`;
      ``trio_token=`` is accepted as an alias for ported code): in a new
      system task of that run. Works from any thread.

    Returns what ``afn(*args)`` returns; raises what it raises.

    Raises:
      RunFinishedError: if the run has finished, or is shutting down and
        cannot start system tasks any more.
      Cancelled: ``afn`` is likely to raise it if the waiting task is
        cancelled (no token), or if the run ends while it runs (token).
      RuntimeError: if called from the run's own thread (it would
        deadlock), or without a token from a thread corral did not start.
      TypeError: if ``afn`` is not an async function.
    """
    token = corral_token if corral_token is not None else trio_token
    return _send_to_run(token, _RunAsync(afn, args))


def from_thread_run_sync(
    fn: Callable[[Unpack[Ts]], RetT],
    *args: *Ts,
    corral_token: CorralToken | None = None,
    trio_token: CorralToken | None = None,
) -> RetT:
    """From a thread, call ``fn(*args)`` in the run's thread and wait for it.

    Where it runs follows :func:`from_thread_run`: in the task waiting in
    :func:`corral.to_thread.run_sync` (no token), else as a callback of the
    run given by ``corral_token=`` (``trio_token=`` is an alias).

    Returns what ``fn(*args)`` returns; raises what it raises.

    Raises:
      RunFinishedError: if the run has finished.
      RuntimeError: if called from the run's own thread (it would
        deadlock), or without a token from a thread corral did not start.
      TypeError: if ``fn`` is an async function.
    """
    token = corral_token if corral_token is not None else trio_token
    return _send_to_run(token, _RunSync(fn, args))
