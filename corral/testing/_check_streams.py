"""Conformance suites for stream implementations: run them against your own
:class:`corral.abc.SendStream` / :class:`~corral.abc.ReceiveStream` /
:class:`~corral.abc.Stream` / :class:`~corral.abc.HalfCloseableStream` to
check it keeps the interface's promises (checkpoints, error types, close
semantics, concurrent-misuse detection, cancellation).

They use plain ``assert`` and no pytest, because they are public API that
any test framework can call.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, Generic, TypeAlias, TypeVar

from .._abc import AsyncResource, HalfCloseableStream, ReceiveStream, SendStream, Stream
from .._core import (
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    CancelScope,
    ClosedResourceError,
    open_nursery,
    wait_all_tasks_blocked,
)
from .._highlevel_generic import aclose_forcefully
from ._checkpoints import assert_checkpoints

__all__ = ["check_half_closeable_stream", "check_one_way_stream", "check_two_way_stream"]

Res1 = TypeVar("Res1", bound=AsyncResource)
Res2 = TypeVar("Res2", bound=AsyncResource)
StreamMaker: TypeAlias = Callable[[], Awaitable[tuple[Res1, Res2]]]


class _ForceCloseBoth(Generic[Res1, Res2]):
    """``async with`` a freshly made pair; both are force-closed on exit, so
    a failing check never leaks the streams it was testing."""

    def __init__(self, both: tuple[Res1, Res2]) -> None:
        self._first, self._second = both

    async def __aenter__(self) -> tuple[Res1, Res2]:
        return self._first, self._second

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await aclose_forcefully(self._first)
        finally:
            await aclose_forcefully(self._second)


@contextmanager
def _assert_raises(
    expected: type[BaseException], wrapped: bool = False
) -> Generator[None, None, None]:
    # pytest.raises without pytest. ``wrapped`` means the error must come
    # out of a nursery, alone in an exception group.
    __tracebackhide__ = True
    try:
        yield
    except BaseExceptionGroup as group:
        assert wrapped, "caught exceptiongroup, but expected an unwrapped exception"
        assert len(group.exceptions) == 1, f"expected one exception in {group!r}"
        assert isinstance(group.exceptions[0], expected), f"wrong exception in {group!r}"
    except expected:
        assert not wrapped, "caught exception, but expected an exceptiongroup"
    else:
        raise AssertionError(f"expected exception: {expected}")


async def check_one_way_stream(
    stream_maker: StreamMaker[SendStream, ReceiveStream],
    clogged_stream_maker: StreamMaker[SendStream, ReceiveStream] | None,
) -> None:
    """Check a one-way stream implementation against the interface.

    Args:
      stream_maker: an *async* function returning a fresh connected
          (:class:`~corral.abc.SendStream`, :class:`~corral.abc.ReceiveStream`)
          pair. It is called several times.
      clogged_stream_maker: None, or an async function like
          ``stream_maker`` whose pair is *clogged*: ``send_all`` and
          ``wait_send_all_might_not_block`` block until ``receive_some`` is
          called. Enables the checks of blocking send-side behaviour
          (``wait_send_all_might_not_block`` wake-ups, concurrent-send
          detection, close while blocked).

    Raises:
      AssertionError: the stream broke a rule.
    """
    async with _ForceCloseBoth(await stream_maker()) as (s, r):
        assert isinstance(s, SendStream)
        assert isinstance(r, ReceiveStream)

        async def do_send_all(data: bytes | bytearray | memoryview) -> None:
            with assert_checkpoints():
                # The interface says send_all returns nothing; check it.
                result: Any = await s.send_all(data)  # type: ignore[func-returns-value]
                assert result is None

        async def do_receive_some(max_bytes: int | None = None) -> bytes | bytearray:
            with assert_checkpoints():
                return await r.receive_some(max_bytes)

        async def checked_receive_1(expected: bytes) -> None:
            assert await do_receive_some(1) == expected

        async def do_aclose(resource: AsyncResource) -> None:
            with assert_checkpoints():
                await resource.aclose()

        # Basic transfer.
        async with open_nursery() as nursery:
            nursery.start_soon(do_send_all, b"x")
            nursery.start_soon(checked_receive_1, b"x")

        # Sending b"" is allowed and means nothing (in particular not EOF).
        async def send_empty_then_y() -> None:
            await do_send_all(b"")
            await do_send_all(b"y")

        async with open_nursery() as nursery:
            nursery.start_soon(send_empty_then_y)
            nursery.start_soon(checked_receive_1, b"y")

        # send_all takes any bytes-like object.
        async with open_nursery() as nursery:
            nursery.start_soon(do_send_all, bytearray(b"1"))
            nursery.start_soon(checked_receive_1, b"1")
        async with open_nursery() as nursery:
            nursery.start_soon(do_send_all, memoryview(b"2"))
            nursery.start_soon(checked_receive_1, b"2")

        # max_bytes: a positive integer, or omitted / None.
        with _assert_raises(ValueError):
            await r.receive_some(-1)
        with _assert_raises(ValueError):
            await r.receive_some(0)
        with _assert_raises(TypeError):
            await r.receive_some(1.5)  # type: ignore[arg-type]  # the bad type is the test
        async with open_nursery() as nursery:
            nursery.start_soon(do_send_all, b"x")
            assert await do_receive_some() == b"x"
        async with open_nursery() as nursery:
            nursery.start_soon(do_send_all, b"x")
            assert await do_receive_some(None) == b"x"

        # Two concurrent receivers: the second one is a caller bug.
        with _assert_raises(BusyResourceError, wrapped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(do_receive_some, 1)
                nursery.start_soon(do_receive_some, 1)

        # With a receiver waiting on an empty stream, a send must be
        # possible, so wait_send_all_might_not_block has to return. (A stream
        # without any buffer may need that receiver, hence the concurrent
        # receive_some, cancelled once we are done.)
        async def wait_then_cancel(scope: CancelScope) -> None:
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
            scope.cancel()

        async with open_nursery() as nursery:
            nursery.start_soon(wait_then_cancel, nursery.cancel_scope)
            nursery.start_soon(do_receive_some, 1)

        # Closing the receiver breaks the sender, sooner or later.
        async def send_until_broken() -> None:
            with _assert_raises(BrokenResourceError):
                while True:
                    await do_send_all(b"x" * 100)

        async with open_nursery() as nursery:
            nursery.start_soon(send_until_broken)
            nursery.start_soon(do_aclose, r)

        # ...and it stays broken.
        with _assert_raises(BrokenResourceError):
            await do_send_all(b"x" * 100)

        # A closed receiver refuses to receive.
        with _assert_raises(ClosedResourceError):
            await do_receive_some(4096)

        # Closing is idempotent.
        await do_aclose(r)
        await do_aclose(r)

        # A closed sender refuses every send-side call, even an empty send.
        await do_aclose(s)
        with _assert_raises(ClosedResourceError):
            await do_send_all(b"x" * 100)
        with _assert_raises(ClosedResourceError):
            await do_send_all(b"")
        with _assert_raises(ClosedResourceError):
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
        await do_aclose(s)
        await do_aclose(s)

    # Data sent before a graceful close arrives, then EOF.
    async with _ForceCloseBoth(await stream_maker()) as (s, r):

        async def send_then_close() -> None:
            await do_send_all(b"y")
            await do_aclose(s)

        async def receive_after_close() -> None:
            # Let the sender get as far as it can first (a stream may block
            # in send_all), so the close usually precedes our receive.
            await wait_all_tasks_blocked()
            await checked_receive_1(b"y")
            await checked_receive_1(b"")
            await do_aclose(r)

        async with open_nursery() as nursery:
            nursery.start_soon(send_then_close)
            nursery.start_soon(receive_after_close)

    # A forcefully closed receiver: the sender breaks, receiving is closed.
    async with _ForceCloseBoth(await stream_maker()) as (s, r):
        await aclose_forcefully(r)
        with _assert_raises(BrokenResourceError):
            while True:
                await do_send_all(b"x" * 100)
        with _assert_raises(ClosedResourceError):
            await do_receive_some(4096)

    # A forcefully closed sender: sending is closed; the receiver sees EOF or
    # BrokenResourceError, but neither hangs nor gets data.
    async with _ForceCloseBoth(await stream_maker()) as (s, r):
        await aclose_forcefully(s)
        with _assert_raises(ClosedResourceError):
            await do_send_all(b"123")
        with suppress(BrokenResourceError):
            await checked_receive_1(b"")

    # A cancelled aclose still closes.
    async with _ForceCloseBoth(await stream_maker()) as (s, r):
        with CancelScope() as scope:
            scope.cancel()
            await r.aclose()
        with CancelScope() as scope:
            scope.cancel()
            await s.aclose()
        with _assert_raises(ClosedResourceError):
            await do_send_all(b"123")
        with _assert_raises(ClosedResourceError):
            await do_receive_some(4096)

    # After operations were cancelled, a graceful close still works. (This
    # only covers cancellation *before* any I/O started; cancelling an
    # SSLStream in the middle of sending is a different story that needs a
    # stream-specific test.)
    async with _ForceCloseBoth(await stream_maker()) as (s, r):

        async def expect_cancelled(
            afn: Callable[..., Awaitable[object]], *args: object
        ) -> None:
            with _assert_raises(Cancelled):
                await afn(*args)

        with CancelScope() as scope:
            scope.cancel()
            async with open_nursery() as nursery:
                nursery.start_soon(expect_cancelled, do_send_all, b"x")
                nursery.start_soon(expect_cancelled, do_receive_some, 1)

        async with open_nursery() as nursery:
            nursery.start_soon(do_aclose, s)
            nursery.start_soon(do_aclose, r)

    # Closing the receive stream wakes a task blocked in receive_some.
    async with _ForceCloseBoth(await stream_maker()) as (s, r):

        async def receive_expecting_closed() -> None:
            with _assert_raises(ClosedResourceError):
                await r.receive_some(10)

        async with open_nursery() as nursery:
            nursery.start_soon(receive_expecting_closed)
            await wait_all_tasks_blocked()
            await aclose_forcefully(r)

    if clogged_stream_maker is not None:
        await _check_clogged_one_way(clogged_stream_maker)


async def _check_clogged_one_way(
    clogged_stream_maker: StreamMaker[SendStream, ReceiveStream],
) -> None:
    # wait_send_all_might_not_block blocks on a clogged stream until a
    # receiver shows up, and no earlier.
    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):
        record: list[str] = []

        async def waiter(scope: CancelScope) -> None:
            record.append("waiter sleeping")
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
            record.append("waiter wokeup")
            scope.cancel()

        async def receiver() -> None:
            await wait_all_tasks_blocked()
            record.append("receiver starting")
            while True:
                await r.receive_some(16834)

        async with open_nursery() as nursery:
            nursery.start_soon(waiter, nursery.cancel_scope)
            await wait_all_tasks_blocked()
            nursery.start_soon(receiver)

        assert record == ["waiter sleeping", "receiver starting", "waiter wokeup"]

    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):
        # Two waiters at once: a caller bug.
        with _assert_raises(BusyResourceError, wrapped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(s.wait_send_all_might_not_block)
                nursery.start_soon(s.wait_send_all_might_not_block)

        # A waiter and a sender at once: also a bug. (The cancelled send_all
        # may have wrecked the stream, hence fresh streams below.)
        with _assert_raises(BusyResourceError, wrapped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(s.wait_send_all_might_not_block)
                nursery.start_soon(s.send_all, b"123")

    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):
        # Two blocked senders at once.
        with _assert_raises(BusyResourceError, wrapped=True):
            async with open_nursery() as nursery:
                nursery.start_soon(s.send_all, b"123")
                nursery.start_soon(s.send_all, b"123")

    # Closing the receiver releases a blocked wait_send_all_might_not_block
    # (returning or raising BrokenResourceError are both fine)...
    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):

        async def sender() -> None:
            try:
                with assert_checkpoints():
                    await s.wait_send_all_might_not_block()
            except BrokenResourceError:  # pragma: no cover - either is allowed
                pass

        async def closer() -> None:
            await wait_all_tasks_blocked()
            await aclose_forcefully(r)

        async with open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(closer)

    # ...and so does calling it after the receiver closed.
    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):
        await aclose_forcefully(r)
        try:
            with assert_checkpoints():
                await s.wait_send_all_might_not_block()
        except BrokenResourceError:  # pragma: no cover - either is allowed
            pass

    # Closing the send stream wakes a task blocked on its send side with
    # ClosedResourceError.
    async def close_soon(s: SendStream) -> None:
        await wait_all_tasks_blocked()
        await aclose_forcefully(s)

    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):
        async with open_nursery() as nursery:
            nursery.start_soon(close_soon, s)
            with _assert_raises(ClosedResourceError):
                await s.send_all(b"xyzzy")

    async with _ForceCloseBoth(await clogged_stream_maker()) as (s, r):
        async with open_nursery() as nursery:
            nursery.start_soon(close_soon, s)
            with _assert_raises(ClosedResourceError):
                await s.wait_send_all_might_not_block()


async def check_two_way_stream(
    stream_maker: StreamMaker[Stream, Stream],
    clogged_stream_maker: StreamMaker[Stream, Stream] | None,
) -> None:
    """Check a two-way stream implementation against the interface.

    The makers return pairs of connected :class:`corral.abc.Stream`
    objects. Runs :func:`check_one_way_stream` in both directions, then
    checks full-duplex transfer (1 MiB each way at once, in random chunk
    sizes) and that closing one end gives the other end-of-file. A superset
    of :func:`check_one_way_stream`.

    Raises:
      AssertionError: the stream broke a rule.
    """
    await check_one_way_stream(stream_maker, clogged_stream_maker)

    async def flipped_stream_maker() -> tuple[Stream, Stream]:
        first, second = await stream_maker()
        return second, first

    flipped_clogged: StreamMaker[Stream, Stream] | None = None
    if clogged_stream_maker is not None:
        clogged = clogged_stream_maker

        async def flipped_clogged_stream_maker() -> tuple[Stream, Stream]:
            first, second = await clogged()
            return second, first

        flipped_clogged = flipped_clogged_stream_maker
    await check_one_way_stream(flipped_stream_maker, flipped_clogged)

    async with _ForceCloseBoth(await stream_maker()) as (s1, s2):
        assert isinstance(s1, Stream)
        assert isinstance(s2, Stream)

        # Full duplex: both directions at once, random chunk sizes on both
        # ends, with fixed seeds so a failure reproduces.
        duplex_test_size = 2**20
        chunk_size_max = 2**14
        rng = random.Random(0)
        test_data = rng.getrandbits(8 * duplex_test_size).to_bytes(duplex_test_size, "little")

        async def sender(stream: Stream, data: bytes, seed: int) -> None:
            chunk_rng = random.Random(seed)
            view = memoryview(data)
            while view:
                size = chunk_rng.randint(1, chunk_size_max)
                await stream.send_all(view[:size])
                view = view[size:]

        async def receiver(stream: Stream, expected: bytes, seed: int) -> None:
            chunk_rng = random.Random(seed)
            got = bytearray()
            while len(got) < len(expected):
                chunk = await stream.receive_some(chunk_rng.randint(1, chunk_size_max))
                assert chunk
                got += chunk
            if got != expected:
                # Say where, not what: a plain ``assert got == expected`` on
                # 1 MiB makes pytest's assertion rewriting (which applies to
                # this module, shipped in a pytest plugin package) build a
                # diff of both megabytes, which takes minutes.
                at = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
                raise AssertionError(
                    f"full-duplex transfer corrupted the data: first difference "
                    f"at byte {at} of {len(expected)}"
                )

        async with open_nursery() as nursery:
            nursery.start_soon(sender, s1, test_data, 0)
            nursery.start_soon(sender, s2, test_data[::-1], 1)
            nursery.start_soon(receiver, s1, test_data[::-1], 2)
            nursery.start_soon(receiver, s2, test_data, 3)

        # Closing one end is end-of-file for the other.
        async def expect_receive_some_empty() -> None:
            assert await s2.receive_some(10) == b""
            await s2.aclose()

        async with open_nursery() as nursery:
            nursery.start_soon(expect_receive_some_empty)
            nursery.start_soon(s1.aclose)


async def check_half_closeable_stream(
    stream_maker: StreamMaker[HalfCloseableStream, HalfCloseableStream],
    clogged_stream_maker: StreamMaker[HalfCloseableStream, HalfCloseableStream] | None,
) -> None:
    """Check a half-closeable stream implementation against the interface.

    The makers return pairs of connected
    :class:`corral.abc.HalfCloseableStream` objects. Runs
    :func:`check_two_way_stream`, then checks ``send_eof``: the peer reads
    the data then end-of-file, sending afterwards is closed, ``send_eof`` is
    idempotent, the other direction keeps working, and (with a clogged
    maker) ``send_eof`` during a blocked send is a BusyResourceError.

    Raises:
      AssertionError: the stream broke a rule.
    """
    await check_two_way_stream(stream_maker, clogged_stream_maker)

    async with _ForceCloseBoth(await stream_maker()) as (s1, s2):
        assert isinstance(s1, HalfCloseableStream)
        assert isinstance(s2, HalfCloseableStream)

        async def send_x_then_eof(s: HalfCloseableStream) -> None:
            await s.send_all(b"x")
            with assert_checkpoints():
                await s.send_eof()

        async def expect_x_then_eof(r: HalfCloseableStream) -> None:
            await wait_all_tasks_blocked()
            assert await r.receive_some(10) == b"x"
            assert await r.receive_some(10) == b""

        async with open_nursery() as nursery:
            nursery.start_soon(send_x_then_eof, s1)
            nursery.start_soon(expect_x_then_eof, s2)

        # No sending after EOF...
        with _assert_raises(ClosedResourceError):
            await s1.send_all(b"y")

        # ...but send_eof again is fine...
        with assert_checkpoints():
            await s1.send_eof()

        # ...and the other direction still works.
        async with open_nursery() as nursery:
            nursery.start_soon(send_x_then_eof, s2)
            nursery.start_soon(expect_x_then_eof, s1)

    if clogged_stream_maker is not None:
        async with _ForceCloseBoth(await clogged_stream_maker()) as (s1, s2):
            # send_eof while a send_all is blocked: a caller bug.
            with _assert_raises(BusyResourceError, wrapped=True):
                async with open_nursery() as nursery:
                    nursery.start_soon(s1.send_all, b"x")
                    await wait_all_tasks_blocked()
                    nursery.start_soon(s1.send_eof)

        async with _ForceCloseBoth(await clogged_stream_maker()) as (s1, s2):
            # send_eof while wait_send_all_might_not_block is blocked: too.
            with _assert_raises(BusyResourceError, wrapped=True):
                async with open_nursery() as nursery:
                    nursery.start_soon(s1.wait_send_all_might_not_block)
                    await wait_all_tasks_blocked()
                    nursery.start_soon(s1.send_eof)
