"""Tests for memory channels and as_safe_channel (corral/_channel.py)."""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import AsyncGenerator

import pytest

import corral
from corral import (
    BrokenResourceError,
    ClosedResourceError,
    EndOfChannel,
    MemoryReceiveChannel,
    MemorySendChannel,
    WouldBlock,
    as_safe_channel,
    open_memory_channel,
)
from corral.testing import assert_checkpoints, wait_all_tasks_blocked


async def test_open_memory_channel_arguments() -> None:
    with pytest.raises(TypeError, match=r"^max_buffer_size must be an integer or math\.inf$"):
        open_memory_channel(1.0)
    with pytest.raises(TypeError, match=r"^max_buffer_size must be an integer or math\.inf$"):
        open_memory_channel("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_buffer_size must be >= 0$"):
        open_memory_channel(-1)
    s, r = open_memory_channel[int](0)
    assert isinstance(s, MemorySendChannel)
    assert isinstance(r, MemoryReceiveChannel)
    assert isinstance(s, corral.abc.SendChannel)
    assert isinstance(r, corral.abc.ReceiveChannel)
    s2, _r2 = open_memory_channel(math.inf)
    assert s2.statistics().max_buffer_size == math.inf


async def test_no_public_constructor() -> None:
    s, _ = open_memory_channel[int](0)
    with pytest.raises(
        TypeError, match=r"^corral\.MemorySendChannel has no public constructor$"
    ):
        MemorySendChannel(s._state)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"^corral\.MemoryReceiveChannel has no public constructor$"
    ):
        MemoryReceiveChannel(s._state)  # type: ignore[call-arg]


async def test_channel_basics() -> None:
    s, r = open_memory_channel[int | str | None](2)
    assert re.match(r"^<send channel at 0x[0-9a-f]+, using buffer at 0x[0-9a-f]+>$", repr(s))
    assert re.match(
        r"^<receive channel at 0x[0-9a-f]+, using buffer at 0x[0-9a-f]+>$", repr(r)
    )
    s.send_nowait(1)
    with assert_checkpoints():
        await s.send(2)
    with pytest.raises(WouldBlock):
        s.send_nowait(None)
    with assert_checkpoints():
        assert await r.receive() == 1
    assert r.receive_nowait() == 2
    with pytest.raises(WouldBlock):
        r.receive_nowait()

    s.send_nowait("last")
    with assert_checkpoints():
        await s.aclose()
    with pytest.raises(ClosedResourceError):
        await s.send("too late")
    with pytest.raises(ClosedResourceError):
        s.send_nowait("too late")
    with pytest.raises(ClosedResourceError):
        s.clone()
    await s.aclose()  # idempotent

    # Buffered values survive the senders' close; then EndOfChannel.
    assert r.receive_nowait() == "last"
    with pytest.raises(EndOfChannel):
        await r.receive()
    with pytest.raises(EndOfChannel):
        r.receive_nowait()
    with assert_checkpoints():
        await r.aclose()
    with pytest.raises(ClosedResourceError):
        await r.receive()
    with pytest.raises(ClosedResourceError):
        r.receive_nowait()
    with pytest.raises(ClosedResourceError):
        r.clone()
    await r.aclose()


async def test_receive_after_cancelled_receive() -> None:
    # A cancelled receive leaves nothing behind: the next send works.
    s, r = open_memory_channel[str](1)
    with corral.CancelScope() as scope:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(r.receive)
            await wait_all_tasks_blocked()
            scope.cancel()
    assert s.statistics().tasks_waiting_receive == 0
    await s.send("x")
    assert r.receive_nowait() == "x"


async def test_cancelled_operations_change_nothing() -> None:
    s, r = open_memory_channel[int](0)
    with corral.CancelScope() as scope:
        scope.cancel()
        with assert_checkpoints():
            await s.send(1)
    assert scope.cancelled_caught
    with corral.CancelScope() as scope:
        scope.cancel()
        with assert_checkpoints():
            await r.receive()
    assert scope.cancelled_caught
    # Even when the operation could complete at once, a cancelled call is
    # refused before touching the channel.
    s2, r2 = open_memory_channel[int](1)
    with corral.CancelScope() as scope:
        scope.cancel()
        await s2.send(1)
    assert s2.statistics().current_buffer_used == 0
    s2.send_nowait(5)
    with corral.CancelScope() as scope:
        scope.cancel()
        await r2.receive()
    assert r2.receive_nowait() == 5


async def test_multiple_producers() -> None:
    async def producer(send_channel: MemorySendChannel[int], i: int) -> None:
        async with send_channel:
            for j in range(3 * i, 3 * (i + 1)):
                await send_channel.send(j)

    send_channel, receive_channel = open_memory_channel[int](0)
    async with corral.open_nursery() as nursery:
        async with send_channel:
            for i in range(10):
                nursery.start_soon(producer, send_channel.clone(), i)
        got = [value async for value in receive_channel]
    assert sorted(got) == list(range(30))


async def test_multiple_consumers() -> None:
    receivers: set[int] = set()
    received: list[int] = []

    async def consumer(receive_channel: MemoryReceiveChannel[int], i: int) -> None:
        async for value in receive_channel:
            receivers.add(i)
            received.append(value)

    async with corral.open_nursery() as nursery:
        send_channel, receive_channel = open_memory_channel[int](1)
        async with send_channel:
            for i in range(5):
                nursery.start_soon(consumer, receive_channel, i)
            await wait_all_tasks_blocked()
            for i in range(10):
                await send_channel.send(i)
    assert receivers == set(range(5))
    assert sorted(received) == list(range(10))


@pytest.mark.parametrize("sync_close", [False, True], ids=["aclose", "close"])
async def test_close_wakes_waiters(sync_close: bool) -> None:
    async def close(ch: MemorySendChannel[None] | MemoryReceiveChannel[None]) -> None:
        if sync_close:
            ch.close()
        else:
            await ch.aclose()

    async def send_expecting(s: MemorySendChannel[None], exc: type[Exception]) -> None:
        with pytest.raises(exc):
            await s.send(None)

    async def receive_expecting(r: MemoryReceiveChannel[None], exc: type[Exception]) -> None:
        with pytest.raises(exc):
            await r.receive()

    # Closing the send end: its blocked sender gets ClosedResourceError,
    # blocked receivers get EndOfChannel.
    s, r = open_memory_channel[None](0)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(send_expecting, s, ClosedResourceError)
        await wait_all_tasks_blocked()
        await close(s)
    with pytest.raises(ClosedResourceError):
        s.send_nowait(None)
    with pytest.raises(EndOfChannel):
        r.receive_nowait()

    s, r = open_memory_channel[None](0)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(receive_expecting, r, EndOfChannel)
        nursery.start_soon(receive_expecting, r, EndOfChannel)
        await wait_all_tasks_blocked()
        await close(s)

    # Closing the receive end: blocked senders get BrokenResourceError,
    # blocked receivers on it get ClosedResourceError.
    s, r = open_memory_channel[None](0)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(send_expecting, s, BrokenResourceError)
        await wait_all_tasks_blocked()
        await close(r)
    with pytest.raises(BrokenResourceError):
        s.send_nowait(None)
    with pytest.raises(BrokenResourceError):
        await s.send(None)

    s, r = open_memory_channel[None](0)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(receive_expecting, r, ClosedResourceError)
        await wait_all_tasks_blocked()
        await close(r)
    with pytest.raises(ClosedResourceError):
        r.receive_nowait()


async def test_context_managers_close() -> None:
    s, r = open_memory_channel[int](1)
    with s:
        s.send_nowait(1)
    assert s.statistics().open_send_channels == 0
    async with r:
        assert r.receive_nowait() == 1
    assert r.statistics().open_receive_channels == 0


async def test_closing_last_receiver_drops_buffer() -> None:
    s, r = open_memory_channel[int](5)
    s.send_nowait(1)
    s.send_nowait(2)
    r.close()
    assert s.statistics().current_buffer_used == 0


async def test_receive_clone_and_close() -> None:
    s, r = open_memory_channel[None](10)
    r2 = r.clone()
    r3 = r.clone()
    s.send_nowait(None)
    await r.aclose()
    with r2:
        pass
    with pytest.raises(ClosedResourceError):
        r.clone()
    with pytest.raises(ClosedResourceError):
        r2.clone()
    s.send_nowait(None)  # r3 is still open
    await r3.aclose()
    with pytest.raises(BrokenResourceError):
        s.send_nowait(None)


async def test_close_one_of_several_send_clones() -> None:
    s1, r = open_memory_channel[str](0)
    s2 = s1.clone()

    async def send_will_close() -> None:
        with pytest.raises(ClosedResourceError):
            await s1.send("nope")

    async def send_will_succeed() -> None:
        await s2.send("ok")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(send_will_close)
        nursery.start_soon(send_will_succeed)
        await wait_all_tasks_blocked()
        await s1.aclose()
        assert s2.statistics().tasks_waiting_send == 1
        assert await r.receive() == "ok"


async def test_close_one_of_several_receive_clones() -> None:
    s, r1 = open_memory_channel[str](0)
    r2 = r1.clone()

    async def receive_will_close() -> None:
        with pytest.raises(ClosedResourceError):
            await r1.receive()

    async def receive_will_succeed() -> None:
        assert await r2.receive() == "ok"

    async with corral.open_nursery() as nursery:
        nursery.start_soon(receive_will_close)
        nursery.start_soon(receive_will_succeed)
        await wait_all_tasks_blocked()
        await r1.aclose()
        assert s.statistics().tasks_waiting_receive == 1
        await s.send("ok")


async def test_inf_capacity() -> None:
    send, receive = open_memory_channel[int](float("inf"))
    with send:
        for i in range(1000):
            send.send_nowait(i)
    assert [i async for i in receive] == list(range(1000))


async def test_statistics() -> None:
    s, r = open_memory_channel[None](2)
    assert s.statistics() == r.statistics()
    assert s.statistics() == corral.MemoryChannelStatistics(
        current_buffer_used=0,
        max_buffer_size=2,
        open_send_channels=1,
        open_receive_channels=1,
        tasks_waiting_send=0,
        tasks_waiting_receive=0,
        peak_buffer_used=0,
    )
    s.send_nowait(None)
    assert s.statistics().current_buffer_used == 1
    assert s.statistics().peak_buffer_used == 1
    s2 = s.clone()
    assert s.statistics().open_send_channels == 2
    await s.aclose()
    assert s2.statistics().open_send_channels == 1
    r2 = r.clone()
    assert s2.statistics().open_receive_channels == 2
    await r2.aclose()
    assert s2.statistics().open_receive_channels == 1

    async with corral.open_nursery() as nursery:
        s2.send_nowait(None)
        assert s.statistics().current_buffer_used == 2
        assert s.statistics().peak_buffer_used == 2
        nursery.start_soon(s2.send, None)
        nursery.start_soon(s2.send, None)
        await wait_all_tasks_blocked()
        assert s.statistics().tasks_waiting_send == 2
        nursery.cancel_scope.cancel()
    assert s.statistics().tasks_waiting_send == 0

    while True:
        try:
            r.receive_nowait()
        except WouldBlock:
            break
    assert s.statistics().current_buffer_used == 0
    assert s.statistics().peak_buffer_used == 2  # a high-water mark

    async with corral.open_nursery() as nursery:
        nursery.start_soon(r.receive)
        await wait_all_tasks_blocked()
        assert s.statistics().tasks_waiting_receive == 1
        nursery.cancel_scope.cancel()
    assert s.statistics().tasks_waiting_receive == 0


async def test_fairness() -> None:
    # With nobody waiting, we can take back what we just sent.
    s, r = open_memory_channel[int | None](1)
    s.send_nowait(1)
    assert r.receive_nowait() == 1

    # A waiting receiver owns the next value sent, even though we run first.
    result: list[int | None] = []

    async def do_receive() -> None:
        result.append(await r.receive())

    async with corral.open_nursery() as nursery:
        nursery.start_soon(do_receive)
        await wait_all_tasks_blocked()
        s.send_nowait(2)
        assert s.statistics().current_buffer_used == 0
        with pytest.raises(WouldBlock):
            r.receive_nowait()
    assert result == [2]

    # A waiting sender owns the space freed by a receive.
    s, r = open_memory_channel[int | None](1)
    s.send_nowait(1)
    with pytest.raises(WouldBlock):
        s.send_nowait(None)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(s.send, 2)
        await wait_all_tasks_blocked()
        assert r.receive_nowait() == 1
        with pytest.raises(WouldBlock):
            s.send_nowait(3)
        assert await r.receive() == 2


async def test_fifo_among_waiters() -> None:
    s, r = open_memory_channel[int](0)
    got: list[tuple[int, int]] = []

    async def receiver(i: int) -> None:
        got.append((i, await r.receive()))

    async with corral.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(receiver, i)
            await wait_all_tasks_blocked()
        for v in range(4):
            s.send_nowait(v * 10)
    assert sorted(got) == [(0, 0), (1, 10), (2, 20), (3, 30)]

    s, r = open_memory_channel[int](0)
    async with corral.open_nursery() as nursery:
        for v in range(4):
            nursery.start_soon(s.send, v)
            await wait_all_tasks_blocked()
        assert [r.receive_nowait() for _ in range(4)] == [0, 1, 2, 3]


async def test_unbuffered() -> None:
    s, r = open_memory_channel[int](0)
    with pytest.raises(WouldBlock):
        r.receive_nowait()
    with pytest.raises(WouldBlock):
        s.send_nowait(1)

    async def do_send(v: int) -> None:
        with assert_checkpoints():
            await s.send(v)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(do_send, 1)
        with assert_checkpoints():
            assert await r.receive() == 1
    with pytest.raises(WouldBlock):
        r.receive_nowait()


async def test_ping_pong_in_order() -> None:
    s1, r1 = open_memory_channel[int](0)
    s2, r2 = open_memory_channel[int](0)

    async def echo() -> None:
        async for v in r1:
            await s2.send(v + 1)
        await s2.aclose()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(echo)
        for i in range(100):
            await s1.send(i)
            assert await r2.receive() == i + 1
        await s1.aclose()
        with pytest.raises(EndOfChannel):
            await r2.receive()


# ---------------------------------------------------------------- as_safe_channel


async def test_as_safe_channel_exhaust() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        yield 1
        yield 2

    async with agen() as recv_chan:
        assert [x async for x in recv_chan] == [1, 2]


async def test_as_safe_channel_produces_on_demand() -> None:
    produced: list[int] = []

    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        for i in range(10):
            produced.append(i)
            yield i

    async with agen() as recv_chan:
        assert await recv_chan.receive() == 0
        await wait_all_tasks_blocked()
        assert produced == [0]
        assert await recv_chan.receive() == 1
        await wait_all_tasks_blocked()
        assert produced == [0, 1]


async def test_as_safe_channel_close_then_receive() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        yield 1
        yield 2  # pragma: no cover

    async with agen() as recv_chan:
        assert await recv_chan.receive() == 1
        await recv_chan.aclose()
        with pytest.raises(ClosedResourceError):
            await recv_chan.receive()


async def test_as_safe_channel_cancelled_before_use() -> None:
    with corral.CancelScope() as cs:

        @as_safe_channel
        async def agen() -> AsyncGenerator[None]:  # pragma: no cover
            raise AssertionError("must not run")
            yield

        async with agen():
            cs.cancel()


async def test_as_safe_channel_generator_error_is_unwrapped() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        yield 1
        raise ValueError("oae")

    with pytest.raises(ValueError, match=r"^oae$"):
        async with agen() as recv_chan:
            async for x in recv_chan:
                assert x == 1


async def test_as_safe_channel_body_error_is_unwrapped() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        yield 1

    with pytest.raises(KeyError):
        async with agen() as recv_chan:
            await recv_chan.receive()
            raise KeyError("body")


async def test_as_safe_channel_both_fail() -> None:
    events: list[str] = []

    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        try:
            yield 1
        except BaseException as e:
            events.append(repr(e))
            raise
        finally:
            events.append("finally")
            raise ValueError("agen")

    with pytest.RaisesGroup(
        pytest.RaisesExc(ValueError, match="^agen$"),
        pytest.RaisesExc(TypeError, match="^iterator$"),
    ) as info:
        async with agen() as recv_chan:
            async for i in recv_chan:  # pragma: no branch
                assert i == 1
                raise TypeError("iterator")
    assert info.value.__notes__ == [
        "Encountered exception during cleanup of generator object, as "
        "well as exception in the contextmanager body - unable to unwrap."
    ]
    assert events == ["GeneratorExit()", "finally"]


async def test_as_safe_channel_user_group_not_unwrapped() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[None]:
        raise NotImplementedError("not entered")
        yield  # pragma: no cover

    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="bar"), match="foo"):
        async with agen():
            raise ExceptionGroup("foo", [ValueError("bar")])


async def test_as_safe_channel_nursery_in_generator() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[None]:
        try:
            async with corral.open_nursery():
                yield
        except BaseException as e:
            assert pytest.RaisesGroup(GeneratorExit).matches(e)
            raise

    async with agen() as g:
        async for _ in g:
            break


async def test_as_safe_channel_extra_generator_exit() -> None:
    async def wait_then_raise(ex: type[BaseException]) -> None:
        try:
            await corral.sleep_forever()
        except corral.Cancelled:
            raise ex from None

    @as_safe_channel
    async def agen(ex: type[BaseException]) -> AsyncGenerator[None]:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(wait_then_raise, ex)
            nursery.start_soon(wait_then_raise, GeneratorExit)
            yield

    with pytest.RaisesGroup(AssertionError):
        async with agen(GeneratorExit) as g:
            async for _ in g:
                break
    with pytest.RaisesGroup(ValueError, AssertionError):
        async with agen(ValueError) as g:
            async for _ in g:
                break


async def test_as_safe_channel_multiple_receivers() -> None:
    event = corral.Event()

    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        await event.wait()
        yield 0
        yield 1

    async def handle(
        recv_chan: corral.abc.ReceiveChannel[int],
        value: int,
        task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        assert await recv_chan.receive() == value

    async with agen() as recv_chan, corral.open_nursery() as nursery:
        await nursery.start(handle, recv_chan, 0)
        await nursery.start(handle, recv_chan, 1)
        event.set()


async def test_as_safe_channel_nested() -> None:
    @as_safe_channel
    async def agen() -> AsyncGenerator[int]:
        for i in range(2):
            yield i

    pairs = []
    async with agen() as outer:
        async for i in outer:
            async with agen() as inner:
                async for j in inner:
                    pairs.append((i, j))
    assert pairs == [(0, 0), (0, 1), (1, 0), (1, 1)]


async def test_as_safe_channel_keeps_name() -> None:
    @as_safe_channel
    async def my_generator() -> AsyncGenerator[int]:
        yield 1  # pragma: no cover

    assert my_generator.__name__ == "my_generator"


async def test_endpoints_are_weak_referenceable() -> None:
    s, r = open_memory_channel[int](0)
    assert weakref.ref(s)() is s
    assert weakref.ref(r)() is r
