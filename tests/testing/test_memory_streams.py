"""Memory streams and lockstep streams (corral.testing)."""

from __future__ import annotations

import pytest

import corral
from corral import BrokenResourceError, BusyResourceError, ClosedResourceError, StapledStream
from corral.abc import ReceiveStream, SendStream
from corral.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    assert_checkpoints,
    check_half_closeable_stream,
    check_one_way_stream,
    check_two_way_stream,
    lockstep_stream_one_way_pair,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
    wait_all_tasks_blocked,
)


def _single(group: pytest.ExceptionInfo[BaseExceptionGroup]) -> BaseException:
    assert len(group.value.exceptions) == 1
    return group.value.exceptions[0]


# --------------------------------------------------------------------------
# MemorySendStream


async def test_memory_send_stream_buffers_and_get_data() -> None:
    mss = MemorySendStream()

    with assert_checkpoints():
        await mss.send_all(b"123")
    assert mss.get_data_nowait(1) == b"1"
    assert mss.get_data_nowait() == b"23"
    with assert_checkpoints():
        await mss.wait_send_all_might_not_block()
    with pytest.raises(corral.WouldBlock):
        mss.get_data_nowait()
    with pytest.raises(corral.WouldBlock):
        mss.get_data_nowait(10)

    await mss.send_all(b"456")
    with assert_checkpoints():
        assert await mss.get_data() == b"456"

    # get_data waits for data.
    async def late_sender() -> None:
        await wait_all_tasks_blocked()
        await mss.send_all(b"late")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(late_sender)
        with assert_checkpoints():
            assert await mss.get_data() == b"late"

    # bad max_bytes
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 1$"):
        mss.get_data_nowait(0)
    with pytest.raises(TypeError):
        await mss.get_data(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await mss.send_all("text")  # type: ignore[arg-type]


async def test_memory_send_stream_detects_concurrent_senders() -> None:
    mss = MemorySendStream()
    busy = 0

    async def send() -> None:
        nonlocal busy
        try:
            await mss.send_all(b"xxx")
        except BusyResourceError as exc:
            assert str(exc) == "another task is using this stream"
            busy += 1

    async with corral.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(send)
    assert busy == 1
    assert mss.get_data_nowait() == b"xxx"

    # send_all and wait_send_all_might_not_block conflict too.
    with pytest.raises(BaseExceptionGroup) as excinfo:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(mss.send_all, b"x")
            nursery.start_soon(mss.wait_send_all_might_not_block)
    assert isinstance(_single(excinfo), BusyResourceError)


async def test_memory_send_stream_close() -> None:
    mss = MemorySendStream()
    await mss.send_all(b"xxx")
    with assert_checkpoints():
        await mss.aclose()
    # Buffered data stays readable, then EOF forever.
    assert await mss.get_data() == b"xxx"
    assert await mss.get_data() == b""
    assert mss.get_data_nowait() == b""
    with pytest.raises(ClosedResourceError, match=r"^virtual connection closed$"):
        await mss.send_all(b"---")
    with pytest.raises(ClosedResourceError):
        await mss.send_all(b"")
    with pytest.raises(ClosedResourceError):
        await mss.wait_send_all_might_not_block()
    mss.close()  # idempotent

    # close wakes a blocked get_data with EOF.
    mss2 = MemorySendStream()

    async def closer() -> None:
        await wait_all_tasks_blocked()
        mss2.close()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(closer)
        assert await mss2.get_data() == b""


async def test_memory_send_stream_two_readers_conflict() -> None:
    mss = MemorySendStream()

    async def reader() -> None:
        await mss.get_data()

    with pytest.raises(BaseExceptionGroup) as excinfo:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(reader)
    exc = _single(excinfo)
    assert isinstance(exc, BusyResourceError)
    assert str(exc) == "another task is already fetching data"


async def test_memory_send_stream_hooks() -> None:
    mss = MemorySendStream()
    assert mss.send_all_hook is None
    assert mss.wait_send_all_might_not_block_hook is None
    assert mss.close_hook is None

    record: list[str] = []

    async def send_all_hook() -> None:
        # Runs after the data is buffered.
        assert mss2.get_data_nowait() == b"abc"
        record.append("send_all_hook")

    async def wait_hook() -> None:
        record.append("wait_send_all_might_not_block_hook")

    def close_hook() -> None:
        record.append("close_hook")

    mss2 = MemorySendStream(send_all_hook, wait_hook, close_hook)
    assert mss2.send_all_hook is send_all_hook
    assert mss2.wait_send_all_might_not_block_hook is wait_hook
    assert mss2.close_hook is close_hook

    await mss2.send_all(b"abc")
    await mss2.wait_send_all_might_not_block()
    await corral.aclose_forcefully(mss2)
    mss2.close()
    assert record == [
        "send_all_hook",
        "wait_send_all_might_not_block_hook",
        "close_hook",
        "close_hook",
    ]


# --------------------------------------------------------------------------
# MemoryReceiveStream


async def test_memory_receive_stream() -> None:
    mrs = MemoryReceiveStream()

    async def do_receive_some(max_bytes: int | None) -> bytes | bytearray:
        with assert_checkpoints():
            return await mrs.receive_some(max_bytes)

    mrs.put_data(b"abc")
    assert await do_receive_some(1) == b"a"
    assert await do_receive_some(10) == b"bc"
    mrs.put_data(b"abc")
    assert await do_receive_some(None) == b"abc"

    with pytest.raises(BaseExceptionGroup) as excinfo:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(do_receive_some, 10)
            nursery.start_soon(do_receive_some, 10)
    exc = _single(excinfo)
    assert isinstance(exc, BusyResourceError)
    assert str(exc) == "another task is using this stream"

    assert mrs.receive_some_hook is None
    mrs.put_data(b"def")
    mrs.put_eof()
    mrs.put_eof()
    assert await do_receive_some(10) == b"def"
    assert await do_receive_some(10) == b""
    assert await do_receive_some(10) == b""
    with pytest.raises(ClosedResourceError):
        mrs.put_data(b"---")


async def test_memory_receive_stream_hooks() -> None:
    async def receive_some_hook() -> None:
        mrs.put_data(b"xxx")

    record: list[str] = []

    def close_hook() -> None:
        record.append("closed")

    mrs = MemoryReceiveStream(receive_some_hook, close_hook)
    assert mrs.receive_some_hook is receive_some_hook
    assert mrs.close_hook is close_hook

    mrs.put_data(b"yyy")
    assert await mrs.receive_some(10) == b"yyyxxx"
    assert await mrs.receive_some(10) == b"xxx"
    mrs.put_data(b"zzz")
    mrs.receive_some_hook = None
    assert await mrs.receive_some(10) == b"zzz"

    mrs.put_data(b"lost on close")
    with assert_checkpoints():
        await mrs.aclose()
    assert record == ["closed"]
    with pytest.raises(ClosedResourceError):
        await mrs.receive_some(10)


async def test_memory_receive_stream_closing() -> None:
    mrs = MemoryReceiveStream()
    mrs.close()
    with pytest.raises(ClosedResourceError):
        await mrs.receive_some(10)
    mrs.close()
    with pytest.raises(ClosedResourceError):
        mrs.put_data(b"123")

    # Pending data is discarded on close.
    mrs2 = MemoryReceiveStream()
    mrs2.put_data(b"xyz")
    mrs2.close()
    with pytest.raises(ClosedResourceError):
        await mrs2.receive_some(10)

    # A blocked receiver wakes with ClosedResourceError.
    mrs3 = MemoryReceiveStream()

    async def closer() -> None:
        await wait_all_tasks_blocked()
        mrs3.close()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(closer)
        with pytest.raises(ClosedResourceError):
            await mrs3.receive_some(10)


async def test_memory_receive_stream_bad_max_bytes() -> None:
    mrs = MemoryReceiveStream()
    mrs.put_data(b"x")
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 1$"):
        await mrs.receive_some(0)
    with pytest.raises(TypeError):
        await mrs.receive_some(1.5)  # type: ignore[arg-type]
    assert await mrs.receive_some(1) == b"x"


# --------------------------------------------------------------------------
# pump and pairs


async def test_memory_stream_pump() -> None:
    mss = MemorySendStream()
    mrs = MemoryReceiveStream()
    assert not memory_stream_pump(mss, mrs)

    await mss.send_all(b"123")
    assert memory_stream_pump(mss, mrs)
    assert await mrs.receive_some(10) == b"123"

    await mss.send_all(b"456")
    assert memory_stream_pump(mss, mrs, max_bytes=1)
    assert await mrs.receive_some(10) == b"4"
    assert memory_stream_pump(mss, mrs, max_bytes=1)
    assert memory_stream_pump(mss, mrs, max_bytes=1)
    assert not memory_stream_pump(mss, mrs, max_bytes=1)
    assert await mrs.receive_some(10) == b"56"

    mss.close()
    assert memory_stream_pump(mss, mrs)
    assert await mrs.receive_some(10) == b""

    # Pumping into a closed receive stream is a broken connection.
    mss2 = MemorySendStream()
    mrs2 = MemoryReceiveStream()
    await mss2.send_all(b"x")
    mrs2.close()
    with pytest.raises(BrokenResourceError, match=r"^MemoryReceiveStream was closed$") as info:
        memory_stream_pump(mss2, mrs2)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_memory_stream_one_way_pair() -> None:
    s, r = memory_stream_one_way_pair()
    assert s.send_all_hook is not None
    assert s.wait_send_all_might_not_block_hook is None
    assert s.close_hook is not None
    assert r.receive_some_hook is None
    await s.send_all(b"123")
    assert await r.receive_some(10) == b"123"

    async def receiver(expected: bytes) -> None:
        assert await r.receive_some(10) == expected

    # Data is pumped by the send side's hook...
    async with corral.open_nursery() as nursery:
        nursery.start_soon(receiver, b"abc")
        await wait_all_tasks_blocked()
        await s.send_all(b"abc")

    # ...and EOF by its close hook (aclose and close).
    async with corral.open_nursery() as nursery:
        nursery.start_soon(receiver, b"")
        await wait_all_tasks_blocked()
        await s.aclose()

    s, r = memory_stream_one_way_pair()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(receiver, b"")
        await wait_all_tasks_blocked()
        s.close()

    # Without the send hook, data stays on the send side.
    s, r = memory_stream_one_way_pair()
    old = s.send_all_hook
    s.send_all_hook = None
    await s.send_all(b"456")
    with corral.move_on_after(0) as scope:
        # Cancelled at its first checkpoint; it must not return the data.
        await r.receive_some(10)
    assert scope.cancelled_caught

    async def cancel_when_idle(nursery: corral.Nursery) -> None:
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    async def expect_blocked_until_cancelled() -> None:
        with pytest.raises(corral.Cancelled):
            await r.receive_some(10)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(cancel_when_idle, nursery)
        nursery.start_soon(expect_blocked_until_cancelled)

    s.send_all_hook = old
    await s.send_all(b"789")
    assert await r.receive_some(10) == b"456789"


async def test_memory_stream_pair() -> None:
    a, b = memory_stream_pair()
    assert isinstance(a, StapledStream)
    assert isinstance(a.send_stream, MemorySendStream)
    assert isinstance(a.receive_stream, MemoryReceiveStream)
    await a.send_all(b"123")
    await b.send_all(b"abc")
    assert await b.receive_some(10) == b"123"
    assert await a.receive_some(10) == b"abc"

    await a.send_eof()
    assert await b.receive_some(10) == b""
    with pytest.raises(ClosedResourceError):
        await a.send_all(b"after eof")

    async def sender() -> None:
        await wait_all_tasks_blocked()
        await b.send_all(b"xyz")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(sender)
        assert await a.receive_some(10) == b"xyz"


async def test_memory_stream_pair_trickle(autojump_clock: corral.testing.MockClock) -> None:
    left, right = memory_stream_pair()

    async def trickle() -> None:
        while memory_stream_pump(left.send_stream, right.receive_stream, max_bytes=1):
            await corral.sleep(1)

    left.send_stream.send_all_hook = trickle
    start = corral.current_time()

    async def sender() -> None:
        await left.send_all(b"12345")
        await left.send_eof()

    got: list[tuple[bytes, float]] = []
    async with corral.open_nursery() as nursery:
        nursery.start_soon(sender)
        async for chunk in right:
            got.append((bytes(chunk), corral.current_time() - start))
    assert [data for data, _ in got] == [b"1", b"2", b"3", b"4", b"5"]
    assert [t for _, t in got] == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------
# lockstep streams


async def test_lockstep_send_waits_for_receiver() -> None:
    s, r = lockstep_stream_one_way_pair()
    record: list[str] = []

    async def sender() -> None:
        await s.send_all(b"abcdef")
        record.append("sent")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(sender)
        await wait_all_tasks_blocked()
        assert record == []  # no buffer: still waiting
        assert await r.receive_some(2) == b"ab"
        await wait_all_tasks_blocked()
        assert record == []
        assert await r.receive_some() == b"cdef"
        await wait_all_tasks_blocked()
        assert record == ["sent"]


async def test_lockstep_wait_send_all_might_not_block_waits_for_a_receiver() -> None:
    s, r = lockstep_stream_one_way_pair()
    record: list[str] = []

    async def waiter() -> None:
        await s.wait_send_all_might_not_block()
        record.append("woke")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert record == []
        nursery.start_soon(r.receive_some)
        await wait_all_tasks_blocked()
        assert record == ["woke"]
        nursery.cancel_scope.cancel()


async def test_lockstep_close_and_errors() -> None:
    s, r = lockstep_stream_one_way_pair()
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 1$"):
        await r.receive_some(0)

    async def busy(detector_msg: str, *afns: object) -> None:
        with pytest.raises(BaseExceptionGroup) as excinfo:
            async with corral.open_nursery() as nursery:
                for afn in afns:
                    nursery.start_soon(afn)  # type: ignore[arg-type]
        exc = _single(excinfo)
        assert isinstance(exc, BusyResourceError)
        assert str(exc) == detector_msg

    await busy("another task is already receiving", r.receive_some, r.receive_some)
    await busy(
        "another task is already sending",
        s.wait_send_all_might_not_block,
        s.wait_send_all_might_not_block,
    )

    # Sender closes: the receiver gets EOF.
    s.close()  # the objects have a sync close
    assert await r.receive_some() == b""
    with pytest.raises(ClosedResourceError):
        await s.send_all(b"x")

    # Receiver closes: the sender breaks, a blocked sender too.
    s, r = lockstep_stream_one_way_pair()

    async def close_receiver_soon() -> None:
        await wait_all_tasks_blocked()
        await r.aclose()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(close_receiver_soon)
        with pytest.raises(BrokenResourceError):
            await s.send_all(b"never read")
    with pytest.raises(BrokenResourceError):
        await s.send_all(b"x")
    with pytest.raises(ClosedResourceError):
        await r.receive_some()
    # wait_send_all_might_not_block returns at once when nobody will read.
    with assert_checkpoints():
        await s.wait_send_all_might_not_block()


async def test_lockstep_stream_pair() -> None:
    a, b = lockstep_stream_pair()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"ping")
        assert await b.receive_some() == b"ping"
    async with corral.open_nursery() as nursery:
        nursery.start_soon(b.send_all, b"pong")
        assert await a.receive_some() == b"pong"


# --------------------------------------------------------------------------
# the conformance suites pass on both families


async def test_memory_streams_pass_the_conformance_suites() -> None:
    async def one_way() -> tuple[MemorySendStream, MemoryReceiveStream]:
        return memory_stream_one_way_pair()

    await check_one_way_stream(one_way, None)

    async def two_way() -> tuple[
        StapledStream[MemorySendStream, MemoryReceiveStream],
        StapledStream[MemorySendStream, MemoryReceiveStream],
    ]:
        return memory_stream_pair()

    await check_half_closeable_stream(two_way, None)


async def test_lockstep_streams_pass_the_conformance_suites() -> None:
    async def one_way() -> tuple[SendStream, ReceiveStream]:
        return lockstep_stream_one_way_pair()

    await check_one_way_stream(one_way, one_way)

    async def two_way() -> tuple[
        StapledStream[SendStream, ReceiveStream], StapledStream[SendStream, ReceiveStream]
    ]:
        return lockstep_stream_pair()

    await check_two_way_stream(two_way, two_way)


def test_public_module() -> None:
    assert MemorySendStream.__module__ == "corral.testing"
    assert MemoryReceiveStream.__module__ == "corral.testing"
    assert memory_stream_pair.__module__ == "corral.testing"
