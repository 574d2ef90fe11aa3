"""Synchronization primitives for tasks: Event, CapacityLimiter, Semaphore,
Lock, StrictFIFOLock, Condition. Same names, semantics and error messages as
Trio's.

Every primitive is built on :class:`corral.lowlevel.ParkingLot` (or, for
Event, directly on ``wait_task_rescheduled``), which gives two properties
all of them share:

- *Fairness by hand-off.* Releasing a contended resource never makes it
  "free" for whoever runs next: the resource is assigned to the task that
  has waited longest, at the moment of release, before that task even
  runs. So ``acquire_nowait`` fails while anyone is queued, and a task that
  releases and immediately re-acquires goes to the back of the line.
- *The checkpoint rule.* Every ``async`` method is a cancel point and, when
  it returns normally, a schedule point. The non-blocking path therefore
  checks for cancellation first (``checkpoint_if_cancelled``) and yields
  afterwards without re-checking it (``cancel_shielded_checkpoint``): once
  the resource is ours, a cancellation must not make us drop it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, NoReturn, Protocol, final

import attrs

from ._core import (
    Abort,
    BrokenResourceError,
    Cancelled,
    CancelScope,
    ParkingLot,
    WouldBlock,
    add_parking_lot_breaker,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    enable_ki_protection,
    remove_parking_lot_breaker,
    reschedule,
    wait_task_rescheduled,
)

if TYPE_CHECKING:
    from ._core import ParkingLotStatistics, Task

__all__ = [
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "Condition",
    "ConditionStatistics",
    "Event",
    "EventStatistics",
    "Lock",
    "LockStatistics",
    "Semaphore",
    "StrictFIFOLock",
]


# --------------------------------------------------------------------------
# Event


@attrs.frozen
class EventStatistics:
    """Debugging information about an :class:`Event`.

    Attributes:
      tasks_waiting: how many tasks are blocked in :meth:`Event.wait`.
    """

    tasks_waiting: int


@final
class Event:
    """A flag that starts false, can be set once, and that tasks can wait for.

    :meth:`wait` returns at once if the flag is already set, so it does not
    matter whether :meth:`set` happens before or after the wait: no wake-up
    is lost. Unlike :class:`threading.Event` there is no ``clear()``: an
    event that happened cannot un-happen. Use a new :class:`Event` for each
    occurrence (they are cheap), or a channel, :class:`Condition` or
    :class:`corral.lowlevel.ParkingLot` for repeated signals.
    """

    __slots__ = ("__weakref__", "_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        # A dict used as an ordered set: waiters wake in arrival order, and
        # a cancelled waiter leaves in O(1).
        self._waiters: dict[Task, None] = {}

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<{state} corral.Event at {id(self):#x} with {len(self._waiters)} waiters>"

    def is_set(self) -> bool:
        """Return True once :meth:`set` has been called."""
        return self._flag

    @enable_ki_protection
    def set(self) -> None:
        """Set the flag and wake every task blocked in :meth:`wait`.
        Setting an already set event does nothing."""
        if not self._flag:
            self._flag = True
            for task in self._waiters:
                reschedule(task)
            self._waiters.clear()

    async def wait(self) -> None:
        """Wait until the flag is set; return at once if it already is.

        A checkpoint either way. If cancelled while waiting, raises
        :exc:`corral.Cancelled` and the event is left as it was.
        """
        if self._flag:
            await checkpoint()
            return
        task = current_task()
        waiters = self._waiters
        waiters[task] = None

        def abort(_: Callable[[], NoReturn]) -> Abort:
            del waiters[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def statistics(self) -> EventStatistics:
        """Return an :class:`EventStatistics` for this event."""
        return EventStatistics(tasks_waiting=len(self._waiters))

    def __bool__(self) -> Literal[True]:
        """Refuse: ``if event:`` is almost always a bug for ``if event.is_set():``."""
        raise NotImplementedError(
            "corral events cannot be treated as bools; consider using "
            "`event.is_set()` instead."
        )


# --------------------------------------------------------------------------
# Shared "async with" support


class _AcquireRelease(Protocol):
    async def acquire(self) -> object: ...

    def release(self) -> object: ...


class AsyncContextManagerMixin:
    """``async with x:`` calls ``await x.acquire()`` on entry and
    ``x.release()`` on exit (which does not block)."""

    __slots__ = ()

    @enable_ki_protection
    async def __aenter__(self: _AcquireRelease) -> None:
        await self.acquire()

    @enable_ki_protection
    async def __aexit__(
        self: _AcquireRelease,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


# --------------------------------------------------------------------------
# CapacityLimiter


@attrs.frozen
class CapacityLimiterStatistics:
    """Debugging information about a :class:`CapacityLimiter`.

    Attributes:
      borrowed_tokens: how many tokens are currently borrowed.
      total_tokens: the sack's size. It can be smaller than
        ``borrowed_tokens`` just after :attr:`CapacityLimiter.total_tokens`
        was decreased.
      borrowers: every task or other object currently holding a token.
      tasks_waiting: how many tasks are blocked in ``acquire`` or
        ``acquire_on_behalf_of``.
    """

    borrowed_tokens: int
    total_tokens: int | float
    borrowers: list[Task | object]
    tasks_waiting: int


@final
class CapacityLimiter(AsyncContextManagerMixin):
    """Limit how many tasks (or threads) use a resource at once.

    Think of a sack holding ``total_tokens`` tokens: ``async with limiter:``
    borrows one for the duration of the block, waiting if the sack is empty.
    Each borrower may hold at most one token, which catches double-acquire
    bugs a plain :class:`Semaphore` would hide. :func:`corral.to_thread.run_sync`
    uses one (see :func:`corral.to_thread.current_default_thread_limiter`)
    to bound the number of worker threads.

    Waiters get tokens strictly in arrival order.

    Args:
      total_tokens: an ``int >= 0``, or :data:`math.inf`.

    Raises:
      TypeError: if ``total_tokens`` is neither an int nor ``math.inf``.
      ValueError: if it is negative.
    """

    __slots__ = ("__weakref__", "_borrowers", "_lot", "_pending_borrowers", "_total_tokens")

    def __init__(self, total_tokens: int | float) -> None:
        self._lot = ParkingLot()
        self._borrowers: set[Task | object] = set()
        # The borrower each parked task is acquiring for: when we wake a
        # task we give its token to that borrower on its behalf.
        self._pending_borrowers: dict[Task, Task | object] = {}
        self._total_tokens: int | float = 0
        self.total_tokens = total_tokens

    def __repr__(self) -> str:
        return (
            f"<corral.CapacityLimiter at {id(self):#x}, "
            f"{len(self._borrowers)}/{self._total_tokens} with {len(self._lot)} waiting>"
        )

    @property
    def total_tokens(self) -> int | float:
        """The sack's size. Assignable: growing it wakes as many waiters as
        there are new tokens at once; shrinking it below the number borrowed
        lets current borrowers finish normally but admits nobody new until
        enough tokens came back.

        Raises (on assignment):
          TypeError: if the value is neither an int nor ``math.inf``.
          ValueError: if it is negative.
        """
        return self._total_tokens

    @total_tokens.setter
    def total_tokens(self, new_total_tokens: int | float) -> None:
        if not isinstance(new_total_tokens, int) and new_total_tokens != math.inf:
            raise TypeError("total_tokens must be an int or math.inf")
        if new_total_tokens < 0:
            raise ValueError("total_tokens must be >= 0")
        self._total_tokens = new_total_tokens
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        free = self._total_tokens - len(self._borrowers)
        if free > 0 and self._lot:
            for task in self._lot.unpark(count=free):
                self._borrowers.add(self._pending_borrowers.pop(task))

    @property
    def borrowed_tokens(self) -> int:
        """How many tokens are currently borrowed."""
        return len(self._borrowers)

    @property
    def available_tokens(self) -> int | float:
        """How many tokens could be borrowed right now (negative just after
        :attr:`total_tokens` was decreased below :attr:`borrowed_tokens`)."""
        return self._total_tokens - len(self._borrowers)

    @enable_ki_protection
    def acquire_nowait(self) -> None:
        """Borrow a token for the current task without blocking.

        Raises:
          WouldBlock: if no token is free (or other tasks are queued).
          RuntimeError: if the current task already holds a token.
        """
        self.acquire_on_behalf_of_nowait(current_task())

    @enable_ki_protection
    def acquire_on_behalf_of_nowait(self, borrower: Task | object) -> None:
        """Borrow a token for ``borrower`` without blocking.

        ``borrower`` is any hashable object that identifies who holds the
        token: :func:`corral.to_thread.run_sync` borrows on behalf of the
        thread it starts, which may outlive the task that asked for it.

        Raises:
          WouldBlock: if no token is free (or other tasks are queued).
          RuntimeError: if ``borrower`` already holds a token.
        """
        if borrower in self._borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            )
        if len(self._borrowers) < self._total_tokens and not self._lot:
            self._borrowers.add(borrower)
        else:
            raise WouldBlock

    @enable_ki_protection
    async def acquire(self) -> None:
        """Borrow a token for the current task, waiting for one if needed.

        Raises:
          RuntimeError: if the current task already holds a token.
          Cancelled: if cancelled before a token was obtained (then no
            token is held).
        """
        await self.acquire_on_behalf_of(current_task())

    @enable_ki_protection
    async def acquire_on_behalf_of(self, borrower: Task | object) -> None:
        """Borrow a token for ``borrower``, waiting for one if needed.

        Raises:
          RuntimeError: if ``borrower`` already holds a token.
          Cancelled: if cancelled before a token was obtained (then
            ``borrower`` holds no token).
        """
        await checkpoint_if_cancelled()
        try:
            self.acquire_on_behalf_of_nowait(borrower)
        except WouldBlock:
            task = current_task()
            self._pending_borrowers[task] = borrower
            try:
                await self._lot.park()
            except Cancelled:
                # Not woken, so no token was given to us: only forget the
                # pending entry.
                del self._pending_borrowers[task]
                raise
        else:
            await cancel_shielded_checkpoint()

    @enable_ki_protection
    def release(self) -> None:
        """Return the current task's token to the sack (never blocks).

        Raises:
          RuntimeError: if the current task holds no token.
        """
        self.release_on_behalf_of(current_task())

    @enable_ki_protection
    def release_on_behalf_of(self, borrower: Task | object) -> None:
        """Return ``borrower``'s token to the sack (never blocks). The token
        goes straight to the longest waiter, if any.

        Raises:
          RuntimeError: if ``borrower`` holds no token.
        """
        if borrower not in self._borrowers:
            raise RuntimeError(
                "this borrower isn't holding any of this CapacityLimiter's tokens"
            )
        self._borrowers.remove(borrower)
        self._wake_waiters()

    def statistics(self) -> CapacityLimiterStatistics:
        """Return a :class:`CapacityLimiterStatistics` for this limiter."""
        return CapacityLimiterStatistics(
            borrowed_tokens=len(self._borrowers),
            total_tokens=self._total_tokens,
            borrowers=list(self._borrowers),
            tasks_waiting=len(self._lot),
        )


# --------------------------------------------------------------------------
# Semaphore


@final
class Semaphore(AsyncContextManagerMixin):
    """A counting semaphore: :meth:`acquire` decrements the value, waiting
    while it is zero; :meth:`release` increments it.

    To bound how many tasks use something at once, prefer
    :class:`CapacityLimiter`, which also catches double acquires.

    Args:
      initial_value: the starting value, an ``int >= 0``.
      max_value: if given, :meth:`release` refuses to raise the value above
        it (a "bounded" semaphore).

    Raises:
      TypeError: if ``initial_value`` is not an int, or ``max_value`` is
        neither None nor an int.
      ValueError: if ``initial_value < 0`` or ``max_value < initial_value``.
    """

    __slots__ = ("__weakref__", "_lot", "_max_value", "_value")

    def __init__(self, initial_value: int, *, max_value: int | None = None) -> None:
        if not isinstance(initial_value, int):
            raise TypeError("initial_value must be an int")
        if initial_value < 0:
            raise ValueError("initial value must be >= 0")
        if max_value is not None:
            if not isinstance(max_value, int):
                raise TypeError("max_value must be None or an int")
            if max_value < initial_value:
                raise ValueError("max_values must be >= initial_value")
        self._lot = ParkingLot()
        self._value = initial_value
        self._max_value = max_value

    def __repr__(self) -> str:
        bound = "" if self._max_value is None else f", max_value={self._max_value}"
        return f"<corral.Semaphore({self._value}{bound}) at {id(self):#x}>"

    @property
    def value(self) -> int:
        """The current value."""
        return self._value

    @property
    def max_value(self) -> int | None:
        """The bound given at construction, or None."""
        return self._max_value

    @enable_ki_protection
    def acquire_nowait(self) -> None:
        """Decrement the value without blocking.

        Raises:
          WouldBlock: if the value is zero.
        """
        if self._value > 0:
            # Invariant: a positive value means nobody is queued (release()
            # hands its unit straight to a waiter instead of incrementing).
            assert not self._lot
            self._value -= 1
        else:
            raise WouldBlock

    @enable_ki_protection
    async def acquire(self) -> None:
        """Decrement the value, waiting while it is zero.

        Raises:
          Cancelled: if cancelled before the value was decremented.
        """
        await checkpoint_if_cancelled()
        if self._value > 0:
            self._value -= 1
            await cancel_shielded_checkpoint()
        else:
            await self._lot.park()

    @enable_ki_protection
    def release(self) -> None:
        """Increment the value, or hand the unit directly to the longest
        waiting :meth:`acquire`.

        Raises:
          ValueError: if the value would exceed ``max_value``.
        """
        if self._lot:
            assert self._value == 0
            self._lot.unpark(count=1)
        else:
            if self._max_value is not None and self._value == self._max_value:
                raise ValueError("semaphore released too many times")
            self._value += 1

    def statistics(self) -> ParkingLotStatistics:
        """Return the statistics of the underlying parking lot;
        ``tasks_waiting`` is how many tasks are blocked in :meth:`acquire`."""
        return self._lot.statistics()


# --------------------------------------------------------------------------
# Lock, StrictFIFOLock


@attrs.frozen
class LockStatistics:
    """Debugging information about a :class:`Lock` or :class:`StrictFIFOLock`.

    Attributes:
      locked: whether the lock is held.
      owner: the :class:`corral.lowlevel.Task` holding it, or None.
      tasks_waiting: how many tasks are blocked in ``acquire``.
    """

    locked: bool
    owner: Task | None
    tasks_waiting: int


class _LockImpl(AsyncContextManagerMixin):
    """The shared implementation of :class:`Lock` and :class:`StrictFIFOLock`.

    The owner registers the lock's parking lot as one to *break* if it
    exits while still holding it: the waiters then get
    :exc:`BrokenResourceError` instead of waiting forever.
    """

    __slots__ = ("__weakref__", "_lot", "_owner")

    def __init__(self) -> None:
        self._lot = ParkingLot()
        self._owner: Task | None = None

    def __repr__(self) -> str:
        if self._owner is not None:
            state, waiters = "locked", f" with {len(self._lot)} waiters"
        else:
            state, waiters = "unlocked", ""
        return f"<{state} {type(self).__name__} object at {id(self):#x}{waiters}>"

    def locked(self) -> bool:
        """Return True if some task holds the lock."""
        return self._owner is not None

    @enable_ki_protection
    def acquire_nowait(self) -> None:
        """Take the lock without blocking.

        Raises:
          WouldBlock: if the lock is held, or other tasks are queued for it.
          RuntimeError: if the current task already holds it.
        """
        task = current_task()
        if self._owner is task:
            raise RuntimeError("attempt to re-acquire an already held Lock")
        if self._owner is None and not self._lot:
            self._owner = task
            add_parking_lot_breaker(task, self._lot)
        else:
            raise WouldBlock

    @enable_ki_protection
    async def acquire(self) -> None:
        """Take the lock, waiting in line if it is held.

        Raises:
          RuntimeError: if the current task already holds it.
          BrokenResourceError: if the owner exited without releasing it.
          Cancelled: if cancelled before getting the lock.
        """
        await checkpoint_if_cancelled()
        try:
            self.acquire_nowait()
        except WouldBlock:
            try:
                await self._lot.park()
            except BrokenResourceError:
                raise BrokenResourceError(
                    f"Owner of this lock exited without releasing: {self._owner}"
                ) from None
        else:
            await cancel_shielded_checkpoint()

    @enable_ki_protection
    def release(self) -> None:
        """Release the lock; the longest waiter, if any, becomes the owner
        at once.

        Raises:
          RuntimeError: if the current task does not hold the lock.
        """
        task = current_task()
        if task is not self._owner:
            raise RuntimeError("can't release a Lock you don't own")
        remove_parking_lot_breaker(task, self._lot)
        if self._lot:
            (self._owner,) = self._lot.unpark(count=1)
            add_parking_lot_breaker(self._owner, self._lot)
        else:
            self._owner = None

    def statistics(self) -> LockStatistics:
        """Return a :class:`LockStatistics` for this lock."""
        return LockStatistics(
            locked=self._owner is not None, owner=self._owner, tasks_waiting=len(self._lot)
        )


@final
class Lock(_LockImpl):
    """A mutex: at most one task holds it; only the holder may release it;
    not re-entrant. Waiters get it in arrival order.

    ``async with lock:`` acquires on entry and releases on exit.
    """

    __slots__ = ()


@final
class StrictFIFOLock(_LockImpl):
    """A :class:`Lock` that promises to be granted in strict arrival order,
    now and in future versions.

    Use it when correctness depends on that order, for example several tasks
    that produce chunks of one byte stream in a known order (each queues for
    the lock in the same scheduling step that generated its chunk) and must
    send them in that order. Today :class:`Lock` behaves the same; choosing
    this class documents the dependency and keeps it if :class:`Lock` ever
    trades strict FIFO order for throughput.
    """

    __slots__ = ()


# --------------------------------------------------------------------------
# Condition


@attrs.frozen
class ConditionStatistics:
    """Debugging information about a :class:`Condition`.

    Attributes:
      tasks_waiting: how many tasks are blocked in :meth:`Condition.wait`.
      lock_statistics: the underlying lock's :class:`LockStatistics`.
    """

    tasks_waiting: int
    lock_statistics: LockStatistics


@final
class Condition(AsyncContextManagerMixin):
    """A condition variable, like :class:`threading.Condition`.

    ``async with condition:`` takes the underlying lock.

    Args:
      lock: the :class:`Lock` to use (exactly that class), or None for a new one.

    Raises:
      TypeError: if ``lock`` is not a :class:`corral.Lock`.
    """

    __slots__ = ("__weakref__", "_lock", "_lot")

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        if type(lock) is not Lock:
            raise TypeError("lock must be a corral.Lock")
        self._lock = lock
        self._lot = ParkingLot()

    def locked(self) -> bool:
        """Return True if the underlying lock is held."""
        return self._lock.locked()

    def acquire_nowait(self) -> None:
        """Take the underlying lock without blocking.

        Raises:
          WouldBlock: if it is held.
        """
        self._lock.acquire_nowait()

    async def acquire(self) -> None:
        """Take the underlying lock, waiting if needed.

        Raises:
          BrokenResourceError: if its owner exited without releasing it.
        """
        await self._lock.acquire()

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    @enable_ki_protection
    async def wait(self) -> None:
        """Release the lock, wait for :meth:`notify` or :meth:`notify_all`,
        and return holding the lock again.

        A notification moves the waiter into the lock's queue, so it
        returns when the lock is handed to it, in order.

        Cancellation: when cancelled, ``wait`` first takes the lock back
        (shielded, so this can take a while) and only then raises
        :exc:`corral.Cancelled`. That keeps ``async with condition: await
        condition.wait()`` correct: ``__aexit__`` always releases a lock it
        holds.

        Raises:
          RuntimeError: if the current task does not hold the lock.
          BrokenResourceError: if re-taking the lock fails because its
            owner exited without releasing it.
        """
        if current_task() is not self._lock._owner:
            raise RuntimeError("must hold the lock to wait")
        self.release()
        try:
            await self._lot.park()
        except BaseException:
            with CancelScope(shield=True):
                await self.acquire()
            raise

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` tasks blocked in :meth:`wait` (longest waiting
        first); each returns once it gets the lock.

        Raises:
          RuntimeError: if the current task does not hold the lock.
        """
        if current_task() is not self._lock._owner:
            raise RuntimeError("must hold the lock to notify")
        self._lot.repark(self._lock._lot, count=n)

    def notify_all(self) -> None:
        """Wake every task blocked in :meth:`wait`.

        Raises:
          RuntimeError: if the current task does not hold the lock.
        """
        if current_task() is not self._lock._owner:
            raise RuntimeError("must hold the lock to notify")
        self._lot.repark_all(self._lock._lot)

    def statistics(self) -> ConditionStatistics:
        """Return a :class:`ConditionStatistics` for this condition."""
        return ConditionStatistics(
            tasks_waiting=len(self._lot), lock_statistics=self._lock.statistics()
        )
