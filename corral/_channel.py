"""Memory channels (``open_memory_channel``) and ``as_safe_channel``.

Same semantics and errors as Trio's. A memory channel is a FIFO of Python
objects with a bounded buffer, shared by any number of send and receive
endpoints (``clone()``).

Hand-off rules (they make every operation atomic with respect to
cancellation: it either happens completely or raises ``Cancelled`` with the
channel unchanged):

- A value sent while a receiver is parked goes straight to that receiver
  (the longest waiting one): it is rescheduled with the value, which no
  other task can take any more. The buffer is only used when nobody waits.
- A receiver that finds a parked sender takes the sender's value into the
  buffer (behind what is already there) and reschedules the sender, whose
  ``send`` has then succeeded.
- A parked task that is cancelled simply leaves the wait queue: nothing was
  transferred yet.

Performance notes: channel ping-pong between two tasks is a benchmark
target (issue 2), so ``send``/``receive`` test the channel state inline
rather than calling the ``*_nowait`` methods and catching ``WouldBlock``
(raising and catching an exception per blocked call costs more than the
rest of the operation), and a value is handed to a parked receiver through
a two-slot list the receiver allocated when it parked (``[endpoint,
value]``), then a plain ``reschedule(task)``, rather than through an
``outcome.Value`` per message: a frozen attrs instance costs several times a
list, and a plain wake-up is the scheduler's cheapest path.
"""

from __future__ import annotations

from abc import ABCMeta
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import wraps
from math import inf
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar, final

import attrs
from outcome import Error

from ._abc import ReceiveChannel, SendChannel
from ._core import (
    Abort,
    BrokenResourceError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    enable_ki_protection,
    open_nursery,
    reschedule,
    wait_task_rescheduled,
)
from ._sync import Semaphore

if TYPE_CHECKING:
    from typing import Self

    from ._core import Task, TaskStatus

__all__ = [
    "MemoryChannelStatistics",
    "MemoryReceiveChannel",
    "MemorySendChannel",
    "as_safe_channel",
    "open_memory_channel",
]

T = TypeVar("T")
P = ParamSpec("P")


class _NoPublicConstructor(ABCMeta):
    """Metaclass for channel endpoints: only ``cls._create`` builds them
    (they come from :func:`open_memory_channel` and ``clone()``)."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]  # super() of a metaclass method


# Written as a class so that ``open_memory_channel[int](5)`` works, as in Trio.
@final
class open_memory_channel(tuple["MemorySendChannel[T]", "MemoryReceiveChannel[T]"]):
    """Open a channel for passing Python objects between tasks of one run.

    Returns a pair ``(send_channel, receive_channel)`` (data flows left to
    right). Objects are passed by reference, without copying or
    serialization.

    Every operation is atomic with respect to cancellation: ``send`` either
    delivers the value or raises :exc:`corral.Cancelled` without having
    delivered it; ``receive`` either returns a value or raises without
    having taken one.

    Channels are not closed by the garbage collector. Close each endpoint
    when done with it (``async with``/``with`` or ``aclose``/``close``) so
    that the other side learns it: receivers get :exc:`corral.EndOfChannel`
    once every send endpoint is closed and the buffer is drained; senders get
    :exc:`corral.BrokenResourceError` once every receive endpoint is closed.

    Args:
      max_buffer_size: how many values may wait in the buffer before
        ``send`` blocks: an ``int >= 0`` or :data:`math.inf`. With 0 (a good
        default), ``send`` returns only once a receiver took the value.

    Raises:
      TypeError: if ``max_buffer_size`` is neither an int nor ``math.inf``.
      ValueError: if it is negative.

    Both endpoints have ``statistics()``, returning a
    :class:`MemoryChannelStatistics`.
    """

    def __new__(  # type: ignore[misc]  # returns a plain tuple on purpose
        cls, max_buffer_size: int | float
    ) -> tuple[MemorySendChannel[T], MemoryReceiveChannel[T]]:
        if max_buffer_size != inf and not isinstance(max_buffer_size, int):
            raise TypeError("max_buffer_size must be an integer or math.inf")
        if max_buffer_size < 0:
            raise ValueError("max_buffer_size must be >= 0")
        state: _ChannelState[T] = _ChannelState(max_buffer_size)
        return (
            MemorySendChannel[T]._create(state),
            MemoryReceiveChannel[T]._create(state),
        )

    def __init__(self, max_buffer_size: int | float) -> None:
        ...


@attrs.frozen
class MemoryChannelStatistics:
    """Debugging information about a memory channel (shared by all its
    endpoints).

    Attributes:
      current_buffer_used: values currently in the buffer.
      max_buffer_size: as passed to :func:`open_memory_channel`.
      open_send_channels: open send endpoints (clones included).
      open_receive_channels: open receive endpoints (clones included).
      tasks_waiting_send: tasks blocked in ``send`` (all endpoints).
      tasks_waiting_receive: tasks blocked in ``receive`` (all endpoints).
      peak_buffer_used: the most values the buffer ever held at once.
    """

    current_buffer_used: int
    max_buffer_size: int | float
    open_send_channels: int
    open_receive_channels: int
    tasks_waiting_send: int
    tasks_waiting_receive: int
    peak_buffer_used: int


class _ChannelState(Generic[T]):
    """What all endpoints of one channel share."""

    __slots__ = (
        "data",
        "max_buffer_size",
        "open_receive_channels",
        "open_send_channels",
        "peak_buffer_used",
        "receive_tasks",
        "send_tasks",
    )

    def __init__(self, max_buffer_size: int | float) -> None:
        self.max_buffer_size = max_buffer_size
        self.data: deque[T] = deque()
        self.open_send_channels = 0
        self.open_receive_channels = 0
        # Parked tasks in arrival order (dicts keep insertion order, and a
        # cancelled waiter leaves in O(1)). Each entry also records which
        # endpoint the task waits on, so closing one endpoint wakes only its
        # own waiters.
        self.send_tasks: dict[Task, tuple[MemorySendChannel[T], T]] = {}
        # Each parked receiver's slot is [its endpoint, the value handed to
        # it]; the sender fills slot[1] before waking it.
        self.receive_tasks: dict[Task, list[Any]] = {}
        self.peak_buffer_used = 0

    def statistics(self) -> MemoryChannelStatistics:
        return MemoryChannelStatistics(
            current_buffer_used=len(self.data),
            max_buffer_size=self.max_buffer_size,
            open_send_channels=self.open_send_channels,
            open_receive_channels=self.open_receive_channels,
            tasks_waiting_send=len(self.send_tasks),
            tasks_waiting_receive=len(self.receive_tasks),
            peak_buffer_used=self.peak_buffer_used,
        )


@final
class MemorySendChannel(SendChannel[T], metaclass=_NoPublicConstructor):
    """The sending endpoint of a memory channel. Created by
    :func:`open_memory_channel` and :meth:`clone`; not constructible."""

    __slots__ = ("__weakref__", "_closed", "_state")

    def __init__(self, state: _ChannelState[T]) -> None:
        self._state = state
        self._closed = False
        state.open_send_channels += 1

    def __repr__(self) -> str:
        return f"<send channel at {id(self):#x}, using buffer at {id(self._state):#x}>"

    def statistics(self) -> MemoryChannelStatistics:
        """Return the :class:`MemoryChannelStatistics` of the channel."""
        return self._state.statistics()

    @enable_ki_protection
    def send_nowait(self, value: T) -> None:
        """Send ``value`` if that can be done without blocking.

        Raises:
          WouldBlock: if the buffer is full (or other senders are queued).
          ClosedResourceError: if this endpoint is closed.
          BrokenResourceError: if every receive endpoint is closed.
        """
        if self._closed:
            raise ClosedResourceError
        state = self._state
        if not state.open_receive_channels:
            raise BrokenResourceError
        receive_tasks = state.receive_tasks
        if receive_tasks:
            task = next(iter(receive_tasks))
            receive_tasks.pop(task)[1] = value
            reschedule(task)
        elif len(state.data) < state.max_buffer_size:
            state.data.append(value)
            if len(state.data) > state.peak_buffer_used:
                state.peak_buffer_used = len(state.data)
        else:
            raise WouldBlock

    @enable_ki_protection
    async def send(self, value: T) -> None:
        """Send ``value``, waiting while the buffer is full.

        Several tasks may send at once; they are served in arrival order.

        Raises:
          ClosedResourceError: if this endpoint is (or gets) closed.
          BrokenResourceError: if every receive endpoint is (or gets) closed.
          Cancelled: if cancelled before the value was delivered (the
            channel is then unchanged).
        """
        state = self._state
        data = state.data
        if (
            self._closed
            or state.receive_tasks
            or len(data) < state.max_buffer_size
            or not state.open_receive_channels
        ):
            # Completes (or fails) without blocking: cancel point first, so
            # that a cancelled send delivers nothing, then act, then the
            # schedule point. (No yield happens in between when not
            # cancelled, so the state tested above still holds.)
            await checkpoint_if_cancelled()
            if self._closed:
                raise ClosedResourceError
            if not state.open_receive_channels:
                raise BrokenResourceError
            receive_tasks = state.receive_tasks
            if receive_tasks:
                task = next(iter(receive_tasks))
                receive_tasks.pop(task)[1] = value
                reschedule(task)
            else:
                data.append(value)
                if len(data) > state.peak_buffer_used:
                    state.peak_buffer_used = len(data)
            await cancel_shielded_checkpoint()
            return

        # Must wait. wait_task_rescheduled is itself the cancel point (a
        # cancelled caller is aborted at once), so no separate check.
        me = current_task()
        send_tasks = state.send_tasks
        send_tasks[me] = (self, value)

        def abort(_: Callable[[], NoReturn]) -> Abort:
            del send_tasks[me]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    @enable_ki_protection
    def clone(self) -> MemorySendChannel[T]:
        """Return a new send endpoint for the same channel.

        Sending on it does the same as sending on this one, but each
        endpoint is closed separately, and receivers see
        :exc:`corral.EndOfChannel` only once all of them are closed. Give
        each producer its own clone and let it close it when done.

        Raises:
          ClosedResourceError: if this endpoint is closed.
        """
        if self._closed:
            raise ClosedResourceError
        return MemorySendChannel._create(self._state)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @enable_ki_protection
    def close(self) -> None:
        """Close this endpoint now (not a checkpoint; idempotent).

        Tasks blocked in :meth:`send` on *this* endpoint get
        :exc:`corral.ClosedResourceError`. When the last send endpoint
        closes, blocked receivers get :exc:`corral.EndOfChannel` (values
        still buffered can be received first). ``with send_channel:``
        closes on exit.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        mine = [task for task, (endpoint, _) in state.send_tasks.items() if endpoint is self]
        for task in mine:
            del state.send_tasks[task]
            reschedule(task, Error(ClosedResourceError()))
        state.open_send_channels -= 1
        if state.open_send_channels == 0:
            assert not state.send_tasks
            receivers = list(state.receive_tasks)
            state.receive_tasks.clear()
            for task in receivers:
                reschedule(task, Error(EndOfChannel()))

    @enable_ki_protection
    async def aclose(self) -> None:
        """Close this endpoint as :meth:`close` does, then checkpoint."""
        self.close()
        await checkpoint()


@final
class MemoryReceiveChannel(ReceiveChannel[T], metaclass=_NoPublicConstructor):
    """The receiving endpoint of a memory channel. Created by
    :func:`open_memory_channel` and :meth:`clone`; not constructible.
    Async-iterating it yields values until :exc:`corral.EndOfChannel`."""

    __slots__ = ("__weakref__", "_closed", "_state")

    def __init__(self, state: _ChannelState[T]) -> None:
        self._state = state
        self._closed = False
        state.open_receive_channels += 1

    def __repr__(self) -> str:
        return f"<receive channel at {id(self):#x}, using buffer at {id(self._state):#x}>"

    def statistics(self) -> MemoryChannelStatistics:
        """Return the :class:`MemoryChannelStatistics` of the channel."""
        return self._state.statistics()

    def _take(self, state: _ChannelState[T]) -> T:
        # Called when something is available: a buffered value, or a parked
        # sender whose value joins the end of the buffer (FIFO order).
        send_tasks = state.send_tasks
        if send_tasks:
            task = next(iter(send_tasks))
            _, sent = send_tasks.pop(task)
            reschedule(task)
            state.data.append(sent)
        return state.data.popleft()

    @enable_ki_protection
    def receive_nowait(self) -> T:
        """Take the next value if one is available without blocking.

        Raises:
          WouldBlock: if no value is available.
          EndOfChannel: if every send endpoint is closed and the buffer is
            empty.
          ClosedResourceError: if this endpoint is closed.
        """
        if self._closed:
            raise ClosedResourceError
        state = self._state
        if state.send_tasks or state.data:
            return self._take(state)
        if not state.open_send_channels:
            raise EndOfChannel
        raise WouldBlock

    @enable_ki_protection
    async def receive(self) -> T:
        """Wait for and return the next value.

        Several tasks may receive at once: each value goes to exactly one of
        them, in arrival order.

        Raises:
          EndOfChannel: if every send endpoint is closed and the buffer is
            empty.
          ClosedResourceError: if this endpoint is (or gets) closed.
          Cancelled: if cancelled before a value was taken (the channel is
            then unchanged).
        """
        state = self._state
        if self._closed or state.data or state.send_tasks or not state.open_send_channels:
            # Completes (or fails) without blocking; see send().
            await checkpoint_if_cancelled()
            if self._closed:
                raise ClosedResourceError
            if state.data or state.send_tasks:
                value = self._take(state)
                await cancel_shielded_checkpoint()
                return value
            raise EndOfChannel

        # Must wait; wait_task_rescheduled is the cancel point.
        me = current_task()
        receive_tasks = state.receive_tasks
        slot: list[Any] = [self, None]
        receive_tasks[me] = slot

        def abort(_: Callable[[], NoReturn]) -> Abort:
            del receive_tasks[me]
            return Abort.SUCCEEDED

        # A sender fills slot[1] and wakes us plainly; close() wakes us with
        # an Error instead, which wait_task_rescheduled raises.
        await wait_task_rescheduled(abort)
        handed: T = slot[1]
        return handed

    # ReceiveChannel.__anext__ would add a coroutine layer around receive()
    # on every iteration; ``async for`` over a channel is the common way to
    # consume one, so this is receive() again with end-of-channel turned
    # into StopAsyncIteration.
    @enable_ki_protection
    async def __anext__(self) -> T:
        state = self._state
        if self._closed or state.data or state.send_tasks or not state.open_send_channels:
            await checkpoint_if_cancelled()
            if self._closed:
                raise ClosedResourceError
            if state.data or state.send_tasks:
                value = self._take(state)
                await cancel_shielded_checkpoint()
                return value
            raise StopAsyncIteration

        me = current_task()
        receive_tasks = state.receive_tasks
        slot: list[Any] = [self, None]
        receive_tasks[me] = slot

        def abort(_: Callable[[], NoReturn]) -> Abort:
            del receive_tasks[me]
            return Abort.SUCCEEDED

        try:
            await wait_task_rescheduled(abort)
        except EndOfChannel:
            raise StopAsyncIteration from None
        handed: T = slot[1]
        return handed

    @enable_ki_protection
    def clone(self) -> MemoryReceiveChannel[T]:
        """Return a new receive endpoint for the same channel.

        Receiving on it takes values from the same queue (each value goes to
        one endpoint only: this is not a broadcast). Each endpoint is closed
        separately; senders see :exc:`corral.BrokenResourceError` only once
        all of them are closed.

        Raises:
          ClosedResourceError: if this endpoint is closed.
        """
        if self._closed:
            raise ClosedResourceError
        return MemoryReceiveChannel._create(self._state)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @enable_ki_protection
    def close(self) -> None:
        """Close this endpoint now (not a checkpoint; idempotent).

        Tasks blocked in :meth:`receive` on *this* endpoint get
        :exc:`corral.ClosedResourceError`. When the last receive endpoint
        closes, blocked senders get :exc:`corral.BrokenResourceError` and
        buffered values are dropped. ``with receive_channel:`` closes on
        exit.
        """
        if self._closed:
            return
        self._closed = True
        state = self._state
        mine = [task for task, slot in state.receive_tasks.items() if slot[0] is self]
        for task in mine:
            del state.receive_tasks[task]
            reschedule(task, Error(ClosedResourceError()))
        state.open_receive_channels -= 1
        if state.open_receive_channels == 0:
            assert not state.receive_tasks
            senders = list(state.send_tasks)
            state.send_tasks.clear()
            for task in senders:
                reschedule(task, Error(BrokenResourceError()))
            state.data.clear()

    @enable_ki_protection
    async def aclose(self) -> None:
        """Close this endpoint as :meth:`close` does, then checkpoint."""
        self.close()
        await checkpoint()


# --------------------------------------------------------------------------
# as_safe_channel


class _MultipleExceptionError(Exception):
    """A group held more than one non-Cancelled exception."""


def _raise_keeping_context(exc: BaseException) -> NoReturn:
    # ``raise exc`` inside an except block would overwrite exc.__context__
    # with the group being handled; put the original back.
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


def _raise_single_exception_from_group(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one meaningful exception of a nursery's group.

    KeyboardInterrupt/SystemExit win at once (re-created, with the group as
    cause). Otherwise the only non-Cancelled exception is raised as it is;
    if there are only Cancelled ones the first is raised; more than one
    non-Cancelled exception raises _MultipleExceptionError.
    """
    for exc in group.exceptions:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise type(exc)(*exc.args) from group
    first_cancelled: BaseException | None = None
    other: BaseException | None = None
    for exc in group.exceptions:
        if isinstance(exc, Cancelled):
            if first_cancelled is None:
                first_cancelled = exc
        elif other is None:
            other = exc
        else:
            raise _MultipleExceptionError(
                "Attempted to unwrap exceptiongroup with multiple non-cancelled "
                "exceptions. This is often caused by a bug in the caller."
            ) from group
    if other is not None:
        _raise_keeping_context(other)
    assert first_cancelled is not None, "group can't be empty"
    _raise_keeping_context(first_cancelled)


class _SafeReceiveChannel(ReceiveChannel[T]):
    """What ``as_safe_channel`` hands out: each ``receive`` first allows the
    generator to produce exactly one more value."""

    def __init__(self, receive_channel: MemoryReceiveChannel[T], demand: Semaphore) -> None:
        self._receive_channel = receive_channel
        self._demand = demand

    async def receive(self) -> T:
        """Ask the generator for its next value and wait for it.

        Raises:
          EndOfChannel: when the generator is exhausted.
          ClosedResourceError: if this channel was closed.
        """
        self._demand.release()
        return await self._receive_channel.receive()

    async def aclose(self) -> None:
        """Close the channel; the generator is then closed at the next
        value it would produce (or when the ``async with`` block exits)."""
        await self._receive_channel.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._receive_channel.close()


def _count_generator_exits(group: BaseException | None) -> int:
    if group is None:
        return 0
    if isinstance(group, BaseExceptionGroup):
        return sum(_count_generator_exits(e) for e in group.exceptions)
    return 1


async def _pump(
    agen: AsyncGenerator[T, None],
    send_channel: MemorySendChannel[T],
    demand: Semaphore,
    task_status: TaskStatus[None],
) -> None:
    # Runs the generator in its own task, one value per receive(): the
    # generator's cancel scopes and nurseries never straddle a yield to the
    # consumer. A plain ``with`` (not ``async with``) closes the channel, so
    # a cancelled close cannot replace the real exception.
    with send_channel:
        try:
            task_status.started()
            while True:
                await demand.acquire()
                if not send_channel._state.open_receive_channels:
                    # Nobody can receive the value: do not compute it.
                    break
                try:
                    value = await agen.__anext__()
                except StopAsyncIteration:
                    return
                try:
                    await send_channel.send(value)
                except BrokenResourceError:
                    break  # the consumer closed since we checked
        finally:
            try:
                await agen.aclose()
            except BaseExceptionGroup as group:
                # A nursery inside the generator wraps the GeneratorExit that
                # aclose() throws in; aclose() only recognises a bare one.
                # Drop exactly that one GeneratorExit; keep everything else.
                genexits, rest = group.split(GeneratorExit)
                if _count_generator_exits(genexits) > 1:
                    extra = AssertionError("More than one GeneratorExit found.")
                    rest = group.derive([extra]) if rest is None else rest.derive(
                        [*rest.exceptions, extra]
                    )
                if rest is not None:
                    raise rest from None


def as_safe_channel(
    fn: Callable[P, AsyncGenerator[T, None]],
) -> Callable[P, AbstractAsyncContextManager[ReceiveChannel[T]]]:
    """Turn an async generator function into one that returns an async
    context manager yielding a :class:`corral.abc.ReceiveChannel`.

    Iterating an async generator directly lets its cancel scopes and
    nurseries be suspended at a ``yield`` while the consumer runs, which
    breaks structured concurrency (:pep:`789`), and leaves its cleanup to
    the garbage collector unless the caller remembers ``aclosing``
    (:pep:`533`). Decorated, the generator runs in a background task of a
    nursery owned by the context manager and produces one value per
    ``receive()`` (no read-ahead); leaving the ``async with`` block cancels
    and closes it::

        @as_safe_channel
        async def numbers(limit):
            for i in range(limit):
                await corral.sleep(0.1)
                yield i

        async with numbers(10) as channel:
            async for value in channel:
                ...

    Errors: an exception from the generator or the block propagates alone
    (not wrapped in a group) when it is the only one; when both the
    generator's cleanup and the block raise, the group is raised with a
    note saying so.
    """

    @asynccontextmanager
    @wraps(fn)
    async def context_manager(
        *args: P.args, **kwargs: P.kwargs
    ) -> AsyncGenerator[_SafeReceiveChannel[T], None]:
        send_channel, receive_channel = open_memory_channel[T](0)
        try:
            async with open_nursery() as nursery:
                agen = fn(*args, **kwargs)
                demand = Semaphore(0)
                # start(), so that the pump owns send_channel and agen (and
                # closes them) before the caller sees anything.
                await nursery.start(_pump, agen, send_channel, demand)
                # A sync ``with``: an ``async with`` could swallow exceptions.
                with _SafeReceiveChannel(receive_channel, demand) as wrapped:
                    yield wrapped
                # The block is done: stop the generator now if it is alive.
                nursery.cancel_scope.cancel("exited corral.as_safe_channel context manager")
        except BaseExceptionGroup as group:
            try:
                _raise_single_exception_from_group(group)
            except _MultipleExceptionError:
                # Keep the group, so that ``except*`` can handle each part.
                group.add_note(
                    "Encountered exception during cleanup of generator object, as "
                    "well as exception in the contextmanager body - unable to unwrap."
                )
                raise group from None

    return context_manager


