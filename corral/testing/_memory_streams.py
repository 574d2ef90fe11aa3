"""In-memory streams for tests: no kernel, fully scriptable.

Two families, Trio's:

- *Memory streams* buffer without limit. Their send side and receive side
  are separate objects joined by a pump function called from hooks, so a
  test can stall, trickle or reorder the flow by swapping the hooks.
- *Lockstep streams* buffer nothing: ``send_all`` returns only once the
  receiver has taken every byte. Useful to test flow control, and as the
  "clogged" stream the conformance suites want.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar, final

from .._abc import ReceiveStream, SendStream
from .._core import (
    BrokenResourceError,
    ClosedResourceError,
    ParkingLot,
    WouldBlock,
    checkpoint,
)
from .._highlevel_generic import StapledStream
from .._util import ConflictDetector

__all__ = [
    "MemoryReceiveStream",
    "MemorySendStream",
    "lockstep_stream_one_way_pair",
    "lockstep_stream_pair",
    "memory_stream_one_way_pair",
    "memory_stream_pair",
    "memory_stream_pump",
]

AsyncHook: TypeAlias = Callable[[], Awaitable[object]]
SyncHook: TypeAlias = Callable[[], object]
SendStreamT = TypeVar("SendStreamT", bound=SendStream)
ReceiveStreamT = TypeVar("ReceiveStreamT", bound=ReceiveStream)


def _check_max_bytes(max_bytes: int | None) -> int | None:
    if max_bytes is None:
        return None
    max_bytes = operator.index(max_bytes)
    if max_bytes < 1:
        raise ValueError("max_bytes must be >= 1")
    return max_bytes


# --------------------------------------------------------------------------
# Memory streams: unbounded buffering


class _ByteQueue:
    """An unbounded byte buffer with one reader at a time.

    ``close`` works like closing the write end of a pipe: later ``put``
    raises ClosedResourceError, and readers drain what is left and then get
    an empty bytearray (end-of-file) forever.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._closed = False
        self._lot = ParkingLot()
        self._reading = ConflictDetector("another task is already fetching data")

    def close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def close_and_wipe(self) -> None:
        self._data = bytearray()
        self.close()

    def put(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ClosedResourceError("virtual connection closed")
        self._data += data
        self._lot.unpark_all()

    def _take(self, max_bytes: int | None) -> bytearray:
        # Called only when there is data or the queue is closed (EOF).
        if max_bytes is None:
            max_bytes = len(self._data)
        chunk = self._data[:max_bytes]
        del self._data[:max_bytes]
        return chunk

    def get_nowait(self, max_bytes: int | None = None) -> bytearray:
        with self._reading:
            max_bytes = _check_max_bytes(max_bytes)
            if not self._data and not self._closed:
                raise WouldBlock
            return self._take(max_bytes)

    async def get(self, max_bytes: int | None = None) -> bytearray:
        with self._reading:
            max_bytes = _check_max_bytes(max_bytes)
            if not self._data and not self._closed:
                # Parking is the checkpoint: a wake-up means data or close.
                await self._lot.park()
            else:
                await checkpoint()
            return self._take(max_bytes)


@final
class MemorySendStream(SendStream):
    """The send side of an in-memory stream: ``send_all`` appends to an
    internal buffer that the test (or a pump) drains with :meth:`get_data`.

    Args:
      send_all_hook: an async function (or None) awaited at the end of
          every :meth:`send_all`, after the data is buffered.
      wait_send_all_might_not_block_hook: an async function (or None)
          awaited by :meth:`wait_send_all_might_not_block`.
      close_hook: a sync function (or None) called by :meth:`close` and
          :meth:`aclose`.

    The hooks are also public attributes of the same names, and may be
    replaced at any time. :func:`memory_stream_one_way_pair` uses them to
    pump data to a :class:`MemoryReceiveStream`.
    """

    def __init__(
        self,
        send_all_hook: AsyncHook | None = None,
        wait_send_all_might_not_block_hook: AsyncHook | None = None,
        close_hook: SyncHook | None = None,
    ) -> None:
        self._conflict_detector = ConflictDetector("another task is using this stream")
        self._outgoing = _ByteQueue()
        self.send_all_hook = send_all_hook
        self.wait_send_all_might_not_block_hook = wait_send_all_might_not_block_hook
        self.close_hook = close_hook

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the internal buffer, then await
        :attr:`send_all_hook` if set.

        Raises ClosedResourceError if this stream is closed and
        BusyResourceError if another task is in ``send_all`` or
        ``wait_send_all_might_not_block``.
        """
        # Two checkpoints before touching the buffer widen the window in
        # which a second, concurrent caller is caught by the detector.
        with self._conflict_detector:
            await checkpoint()
            await checkpoint()
            self._outgoing.put(data)
            if self.send_all_hook is not None:
                await self.send_all_hook()

    async def wait_send_all_might_not_block(self) -> None:
        """Await :attr:`wait_send_all_might_not_block_hook` if set, then
        return. Raises ClosedResourceError if this stream is closed."""
        with self._conflict_detector:
            await checkpoint()
            await checkpoint()
            # An empty put changes nothing but raises if we are closed.
            self._outgoing.put(b"")
            if self.wait_send_all_might_not_block_hook is not None:
                await self.wait_send_all_might_not_block_hook()

    def close(self) -> None:
        """Mark the stream closed (buffered data stays readable, then
        :meth:`get_data` reports end-of-file) and call :attr:`close_hook`."""
        # A send_all blocked inside its hook is not interrupted: with the
        # standard pump hook nothing ever blocks there.
        self._outgoing.close()
        if self.close_hook is not None:
            self.close_hook()

    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()

    async def get_data(self, max_bytes: int | None = None) -> bytearray:
        """Take data out of the internal buffer, waiting until there is some.

        Args:
          max_bytes: take at most this many bytes; None (the default) takes
              everything buffered.

        Returns:
          The data, or an empty bytearray once the stream is closed and the
          buffer drained.

        Raises BusyResourceError if another task is already in
        ``get_data``.
        """
        return await self._outgoing.get(max_bytes)

    def get_data_nowait(self, max_bytes: int | None = None) -> bytearray:
        """Like :meth:`get_data`, without waiting.

        Raises:
          corral.WouldBlock: nothing is buffered and the stream is open.
        """
        return self._outgoing.get_nowait(max_bytes)


@final
class MemoryReceiveStream(ReceiveStream):
    """The receive side of an in-memory stream: the test (or a pump) feeds it
    with :meth:`put_data` / :meth:`put_eof` and ``receive_some`` reads.

    Args:
      receive_some_hook: an async function (or None) awaited at the start
          of every :meth:`receive_some`, before it reads the buffer.
      close_hook: a sync function (or None) called by :meth:`close` and
          :meth:`aclose`.

    Both hooks are also public attributes and may be replaced at any time.
    """

    def __init__(
        self,
        receive_some_hook: AsyncHook | None = None,
        close_hook: SyncHook | None = None,
    ) -> None:
        self._conflict_detector = ConflictDetector("another task is using this stream")
        self._incoming = _ByteQueue()
        self._closed = False
        self.receive_some_hook = receive_some_hook
        self.close_hook = close_hook

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        """Await :attr:`receive_some_hook` if set, then return buffered data,
        waiting until some arrives; an empty bytearray after :meth:`put_eof`.

        Raises ClosedResourceError if this stream is closed (also when it is
        closed while waiting), BusyResourceError if another task is already
        receiving, ValueError/TypeError for a bad ``max_bytes``.
        """
        with self._conflict_detector:
            await checkpoint()
            await checkpoint()
            if self._closed:
                raise ClosedResourceError
            if self.receive_some_hook is not None:
                await self.receive_some_hook()
            # The queue's closed flag means "peer sent EOF"; ours means "we
            # were closed". close() also closes the queue to wake a waiting
            # reader, so check ours again after waking.
            data = await self._incoming.get(max_bytes)
            if self._closed:
                raise ClosedResourceError
            return data

    def close(self) -> None:
        """Mark the stream closed, discard buffered data and call
        :attr:`close_hook`. A task blocked in receive_some wakes up with
        ClosedResourceError."""
        self._closed = True
        self._incoming.close_and_wipe()
        if self.close_hook is not None:
            self.close_hook()

    async def aclose(self) -> None:
        """:meth:`close`, then a checkpoint."""
        self.close()
        await checkpoint()

    def put_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the buffer. Raises ClosedResourceError after
        :meth:`put_eof` or :meth:`close`."""
        self._incoming.put(data)

    def put_eof(self) -> None:
        """Mark end-of-file: once the buffer is drained, receive_some
        returns an empty bytearray."""
        self._incoming.close()


def memory_stream_pump(
    memory_send_stream: MemorySendStream,
    memory_receive_stream: MemoryReceiveStream,
    *,
    max_bytes: int | None = None,
) -> bool:
    """Move data from a :class:`MemorySendStream`'s buffer into a
    :class:`MemoryReceiveStream`'s buffer, without blocking.

    Args:
      memory_send_stream: where data is taken from.
      memory_receive_stream: where it is put.
      max_bytes: move at most this many bytes; None moves all there is.

    Returns:
      True if something moved (data, or the end-of-file of a closed send
      stream), False if there was nothing to move.

    Raises:
      corral.BrokenResourceError: the receive stream is closed.
    """
    try:
        data = memory_send_stream.get_data_nowait(max_bytes)
    except WouldBlock:
        return False
    try:
        if data:
            memory_receive_stream.put_data(data)
        else:
            memory_receive_stream.put_eof()
    except ClosedResourceError:
        raise BrokenResourceError("MemoryReceiveStream was closed") from None
    return True


def memory_stream_one_way_pair() -> tuple[MemorySendStream, MemoryReceiveStream]:
    """Return a connected (:class:`MemorySendStream`,
    :class:`MemoryReceiveStream`) pair with unlimited buffering: a pipe
    without a kernel, data flowing from left to right.

    The send stream's :attr:`~MemorySendStream.send_all_hook` and
    :attr:`~MemorySendStream.close_hook` call :func:`memory_stream_pump`, so
    data (and end-of-file) reach the receive stream as soon as they are
    sent. Replace the hooks to change that: set ``send_all_hook`` to None to
    simulate a stalled network, or pump a few bytes at a time from a task.
    """
    send_stream = MemorySendStream()
    receive_stream = MemoryReceiveStream()

    def pump() -> None:
        memory_stream_pump(send_stream, receive_stream)

    async def async_pump() -> None:  # a hook must be async; the pump is not
        pump()

    send_stream.send_all_hook = async_pump
    send_stream.close_hook = pump
    return send_stream, receive_stream


def _stapled_pair(
    one_way_pair: Callable[[], tuple[SendStreamT, ReceiveStreamT]],
) -> tuple[
    StapledStream[SendStreamT, ReceiveStreamT],
    StapledStream[SendStreamT, ReceiveStreamT],
]:
    left_send, right_receive = one_way_pair()
    right_send, left_receive = one_way_pair()
    return StapledStream(left_send, left_receive), StapledStream(right_send, right_receive)


def memory_stream_pair() -> tuple[
    StapledStream[MemorySendStream, MemoryReceiveStream],
    StapledStream[MemorySendStream, MemoryReceiveStream],
]:
    """Return two connected two-way in-memory streams (a kernel-free
    :func:`socket.socketpair`) with unlimited buffering.

    Each is a :class:`corral.StapledStream` of two
    :func:`memory_stream_one_way_pair` halves, so every knob of those is
    reachable: for example, to make data from left to right arrive one byte
    per second::

        left, right = memory_stream_pair()

        async def trickle():
            while memory_stream_pump(left.send_stream, right.receive_stream, max_bytes=1):
                await corral.sleep(1)

        left.send_stream.send_all_hook = trickle

    With :class:`MockClock` and ``autojump_threshold=0`` such sleeps cost no
    real time. A seeded :mod:`random` deciding how many bytes to pump and
    how long to sleep makes a cheap stress test of a protocol.
    """
    return _stapled_pair(memory_stream_one_way_pair)


# --------------------------------------------------------------------------
# Lockstep streams: no buffering at all


class _LockstepQueue:
    """The shared state of a lockstep one-way stream. Every state change
    wakes every waiter, and each waiter re-checks its own condition."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._sender_closed = False
        self._receiver_closed = False
        self._receiver_waiting = False
        self._waiters = ParkingLot()
        self._sending = ConflictDetector("another task is already sending")
        self._receiving = ConflictDetector("another task is already receiving")

    def _changed(self) -> None:
        self._waiters.unpark_all()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        # Either side closing also ends the wait: every caller reacts to it.
        while not (condition() or self._sender_closed or self._receiver_closed):
            await self._waiters.park()
        await checkpoint()

    def close_sender(self) -> None:
        self._sender_closed = True
        self._changed()

    def close_receiver(self) -> None:
        self._receiver_closed = True
        self._changed()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._sending:
            if self._sender_closed:
                raise ClosedResourceError
            if self._receiver_closed:
                raise BrokenResourceError
            self._data += data
            self._changed()
            await self._wait_until(lambda: not self._data)
            if self._sender_closed:
                raise ClosedResourceError
            if self._data and self._receiver_closed:
                raise BrokenResourceError

    async def wait_send_all_might_not_block(self) -> None:
        with self._sending:
            if self._sender_closed:
                raise ClosedResourceError
            if self._receiver_closed:
                await checkpoint()
                return
            await self._wait_until(lambda: self._receiver_waiting)
            if self._sender_closed:
                raise ClosedResourceError

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        with self._receiving:
            max_bytes = _check_max_bytes(max_bytes)
            if self._receiver_closed:
                raise ClosedResourceError
            # Announce that a receiver waits: this is what
            # wait_send_all_might_not_block waits for.
            self._receiver_waiting = True
            self._changed()
            try:
                await self._wait_until(lambda: bool(self._data))
            finally:
                self._receiver_waiting = False
            if self._receiver_closed:
                raise ClosedResourceError
            if not self._data:
                # Woken without data: the sender closed, so this is EOF.
                return b""
            # A slice with None as its end takes everything.
            chunk = self._data[:max_bytes]
            del self._data[:max_bytes]
            self._changed()
            return chunk


class _LockstepSendStream(SendStream):
    def __init__(self, queue: _LockstepQueue) -> None:
        self._queue = queue

    def close(self) -> None:
        self._queue.close_sender()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._queue.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._queue.wait_send_all_might_not_block()


class _LockstepReceiveStream(ReceiveStream):
    def __init__(self, queue: _LockstepQueue) -> None:
        self._queue = queue

    def close(self) -> None:
        self._queue.close_receiver()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._queue.receive_some(max_bytes)


def lockstep_stream_one_way_pair() -> tuple[SendStream, ReceiveStream]:
    """Return a connected (:class:`corral.abc.SendStream`,
    :class:`corral.abc.ReceiveStream`) pair with no buffering at all.

    ``send_all`` returns only when ``receive_some`` calls have taken all of
    its data; ``wait_send_all_might_not_block`` returns when a task is
    waiting in ``receive_some``. Good for testing flow control in the
    extreme case, and as the "clogged" stream for
    :func:`check_one_way_stream` and friends.

    Both objects also have a synchronous ``close`` method.
    """
    queue = _LockstepQueue()
    return _LockstepSendStream(queue), _LockstepReceiveStream(queue)


def lockstep_stream_pair() -> tuple[
    StapledStream[SendStream, ReceiveStream],
    StapledStream[SendStream, ReceiveStream],
]:
    """Return two connected two-way lockstep streams: each a
    :class:`corral.StapledStream` of two :func:`lockstep_stream_one_way_pair`
    halves."""
    return _stapled_pair(lockstep_stream_one_way_pair)
