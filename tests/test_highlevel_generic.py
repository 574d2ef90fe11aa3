"""StapledStream, aclose_forcefully and serve_listeners over in-memory
streams and listeners (no kernel involved)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NoReturn

import attrs
import pytest

import corral
from corral import Nursery, StapledStream, TaskStatus
from corral.abc import AsyncResource, Listener, ReceiveStream, SendStream, Stream
from corral.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    MockClock,
    assert_checkpoints,
    memory_stream_pair,
    wait_all_tasks_blocked,
)

# --------------------------------------------------------------------------
# StapledStream


@attrs.define(slots=False)
class RecordSendStream(SendStream):
    record: list[object] = attrs.Factory(list)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.record.append(("send_all", data))

    async def wait_send_all_might_not_block(self) -> None:
        self.record.append("wait_send_all_might_not_block")

    async def aclose(self) -> None:
        self.record.append("aclose")


@attrs.define(slots=False)
class RecordReceiveStream(ReceiveStream):
    record: list[object] = attrs.Factory(list)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.record.append(("receive_some", max_bytes))
        return b""

    async def aclose(self) -> None:
        self.record.append("aclose")


async def test_stapled_stream_delegates() -> None:
    send_stream = RecordSendStream()
    receive_stream = RecordReceiveStream()
    stapled = StapledStream(send_stream, receive_stream)
    assert isinstance(stapled, corral.abc.HalfCloseableStream)
    assert stapled.send_stream is send_stream
    assert stapled.receive_stream is receive_stream

    await stapled.send_all(b"foo")
    await stapled.wait_send_all_might_not_block()
    assert send_stream.record == [("send_all", b"foo"), "wait_send_all_might_not_block"]
    send_stream.record.clear()

    # Without send_eof on the send stream, send_eof closes it...
    await stapled.send_eof()
    assert send_stream.record == ["aclose"]
    send_stream.record.clear()

    # ...with one, send_eof uses it.
    async def fake_send_eof() -> None:
        send_stream.record.append("send_eof")

    send_stream.send_eof = fake_send_eof  # type: ignore[attr-defined]
    await stapled.send_eof()
    assert send_stream.record == ["send_eof"]
    send_stream.record.clear()

    assert receive_stream.record == []
    assert await stapled.receive_some(1234) == b""
    await stapled.receive_some()
    assert receive_stream.record == [("receive_some", 1234), ("receive_some", None)]
    assert send_stream.record == []
    receive_stream.record.clear()

    await stapled.aclose()
    assert send_stream.record == ["aclose"]
    assert receive_stream.record == ["aclose"]


async def test_stapled_stream_closes_both_even_if_one_close_fails() -> None:
    class FailingSend(RecordSendStream):
        async def aclose(self) -> NoReturn:
            await super().aclose()
            raise ValueError("send error")

    class FailingReceive(RecordReceiveStream):
        async def aclose(self) -> NoReturn:
            await super().aclose()
            raise ValueError("recv error")

    stapled = StapledStream(FailingSend(), FailingReceive())
    with pytest.raises(ValueError, match=r"^recv error$") as excinfo:
        await stapled.aclose()
    assert isinstance(excinfo.value.__context__, ValueError)
    assert str(excinfo.value.__context__) == "send error"
    assert stapled.send_stream.record == ["aclose"]
    assert stapled.receive_stream.record == ["aclose"]


async def test_stapled_stream_async_iteration() -> None:
    left, right = memory_stream_pair()
    await left.send_all(b"ab")
    await left.send_eof()
    assert [bytes(chunk) async for chunk in right] == [b"ab"]


# --------------------------------------------------------------------------
# aclose_forcefully


async def test_aclose_forcefully_closes_in_a_cancelled_scope() -> None:
    seen: list[tuple[float, bool]] = []

    class Resource(AsyncResource):
        async def aclose(self) -> None:
            seen.append((corral.current_effective_deadline(), False))
            try:
                await corral.sleep_forever()
            except corral.Cancelled:
                seen[-1] = (seen[-1][0], True)
                raise

    with assert_checkpoints():
        await corral.aclose_forcefully(Resource())
    assert seen == [(float("-inf"), True)]


async def test_aclose_forcefully_on_memory_stream() -> None:
    send, receive = corral.testing.memory_stream_one_way_pair()
    await send.send_all(b"x")
    await corral.aclose_forcefully(receive)
    with pytest.raises(corral.ClosedResourceError):
        await receive.receive_some()
    with pytest.raises(corral.BrokenResourceError, match=r"^MemoryReceiveStream was closed$"):
        await send.send_all(b"y")


async def test_aclose_forcefully_propagates_other_errors() -> None:
    class Resource(AsyncResource):
        async def aclose(self) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match=r"^boom$"):
        await corral.aclose_forcefully(Resource())


# --------------------------------------------------------------------------
# serve_listeners

StapledMemoryStream = StapledStream[MemorySendStream, MemoryReceiveStream]


@attrs.define(eq=False, slots=False)
class MemoryListener(Listener[StapledMemoryStream]):
    closed: bool = False
    accepted: int = 0
    queue: tuple[
        corral.MemorySendChannel[StapledMemoryStream],
        corral.MemoryReceiveChannel[StapledMemoryStream],
    ] = attrs.Factory(lambda: corral.open_memory_channel[StapledMemoryStream](1000))
    accept_hook: Callable[[], Awaitable[object]] | None = None

    async def connect(self) -> StapledMemoryStream:
        assert not self.closed
        client, server = memory_stream_pair()
        await self.queue[0].send(server)
        return client

    async def accept(self) -> StapledMemoryStream:
        await corral.lowlevel.checkpoint()
        assert not self.closed
        if self.accept_hook is not None:
            await self.accept_hook()
        stream = await self.queue[1].receive()
        self.accepted += 1
        return stream

    async def aclose(self) -> None:
        self.closed = True
        await corral.lowlevel.checkpoint()


async def test_serve_listeners_basic() -> None:
    listeners = [MemoryListener(), MemoryListener()]
    record: list[str] = []

    def close_hook() -> None:
        # The leftover stream is closed forcefully.
        assert corral.current_effective_deadline() == float("-inf")
        record.append("closed")

    async def handler(stream: StapledMemoryStream) -> None:
        await stream.send_all(b"123")
        assert await stream.receive_some(10) == b"456"
        stream.send_stream.close_hook = close_hook
        stream.receive_stream.close_hook = close_hook

    async def client(listener: MemoryListener) -> None:
        s = await listener.connect()
        assert await s.receive_some(10) == b"123"
        await s.send_all(b"456")

    async with corral.open_nursery() as nursery:
        started = await nursery.start(corral.serve_listeners, handler, listeners)
        assert started is listeners
        async with corral.open_nursery() as clients:
            for listener in listeners:
                for _ in range(3):
                    clients.start_soon(client, listener)
        await wait_all_tasks_blocked()
        # 6 connections, each with two closed directions.
        assert record == ["closed"] * 12
        nursery.cancel_scope.cancel()

    for listener in listeners:
        assert listener.closed


@pytest.mark.parametrize(
    "error", [KeyError(), OSError(errno.ECONNABORTED, "ECONNABORTED")], ids=repr
)
async def test_serve_listeners_other_accept_errors_propagate(error: BaseException) -> None:
    listener = MemoryListener()

    async def raise_error() -> NoReturn:
        raise error

    listener.accept_hook = raise_error
    with pytest.raises(BaseExceptionGroup) as excinfo:
        await corral.serve_listeners(None, [listener])  # type: ignore[arg-type]
    assert excinfo.value.exceptions == (error,)
    assert listener.closed


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS])
async def test_serve_listeners_backs_off_on_capacity_errors(
    code: int, autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = MemoryListener()
    failures = 0

    async def fail_four_times() -> None:
        nonlocal failures
        if failures < 4:
            failures += 1
            raise OSError(code, "out of something")

    served: list[float] = []

    async def handler(stream: Stream) -> None:
        served.append(corral.current_time())

    listener.accept_hook = fail_four_times
    await listener.connect()
    start = corral.current_time()
    with corral.move_on_after(10):
        await corral.serve_listeners(handler, [listener])
    # Four failures, 100 ms of back-off after each, then the connection.
    assert served == [pytest.approx(start + 0.4)]
    records = [r for r in caplog.records if r.name == "corral.serve_listeners"]
    assert len(records) == 4
    for record in records:
        assert record.levelno == logging.ERROR
        assert record.getMessage() == (
            f"accept returned {errno.errorcode[code]} ({__import__('os').strerror(code)});"
            " retrying in 0.1 seconds"
        )
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], OSError)
        assert record.exc_info[1].errno == code


async def test_serve_listeners_retries_every_100ms(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = MemoryListener()

    async def raise_emfile() -> NoReturn:
        raise OSError(errno.EMFILE, "out of file descriptors")

    listener.accept_hook = raise_emfile
    # Attempts at 0, 100, ..., 900 ms: ten in 950 ms.
    with corral.move_on_after(0.950):
        await corral.serve_listeners(None, [listener])  # type: ignore[arg-type]
    assert len(caplog.records) == 10
    assert listener.closed


async def test_serve_listeners_handler_nursery(autojump_clock: MockClock) -> None:
    listener = MemoryListener()

    async def handler(stream: Stream) -> None:
        await corral.sleep(1)

    class Done(Exception):
        pass

    async def connection_watcher(*, task_status: TaskStatus[Nursery]) -> NoReturn:
        async with corral.open_nursery() as nursery:
            task_status.started(nursery)
            await wait_all_tasks_blocked()
            assert len(nursery.child_tasks) == 10
            raise Done

    with pytest.raises(BaseExceptionGroup) as excinfo:
        async with corral.open_nursery() as nursery:
            handler_nursery = await nursery.start(connection_watcher)
            await nursery.start(
                partial(corral.serve_listeners, handler, [listener], handler_nursery=handler_nursery)
            )
            for _ in range(10):
                nursery.start_soon(listener.connect)
    # Wrapped twice: two nested nurseries.
    inner = excinfo.value.exceptions
    assert len(inner) == 1 and isinstance(inner[0], BaseExceptionGroup)
    assert len(inner[0].exceptions) == 1 and isinstance(inner[0].exceptions[0], Done)


async def test_serve_listeners_max_connections_is_backpressure(
    autojump_clock: MockClock,
) -> None:
    listeners = [MemoryListener(), MemoryListener()]
    running = 0
    peak = 0
    finished = 0

    async def handler(stream: Stream) -> None:
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        await corral.sleep(1)
        running -= 1
        finished += 1

    async with corral.open_nursery() as nursery:
        await nursery.start(
            partial(corral.serve_listeners, handler, listeners, max_connections=3)
        )
        for listener in listeners:
            for _ in range(4):
                await listener.connect()
        await wait_all_tasks_blocked()
        # Three handlers run; the other connections are still queued, not
        # accepted and not dropped.
        assert running == 3
        assert sum(listener.accepted for listener in listeners) == 3
        await corral.sleep(10)
        assert finished == 8
        assert peak == 3
        assert sum(listener.accepted for listener in listeners) == 8
        nursery.cancel_scope.cancel()


async def test_serve_listeners_max_connections_released_on_handler_error() -> None:
    listener = MemoryListener()
    calls = 0

    async def handler(stream: Stream) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("handler failed")

    results: list[BaseException] = []

    async def handler_nursery_owner(*, task_status: TaskStatus[object]) -> None:
        class Catching:
            def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
                async def run() -> None:
                    try:
                        await fn(*args)
                    except ValueError as exc:
                        results.append(exc)

                nursery.start_soon(run)

        async with corral.open_nursery() as nursery:
            task_status.started(Catching())
            await corral.sleep_forever()

    async with corral.open_nursery() as nursery:
        catching = await nursery.start(handler_nursery_owner)
        await nursery.start(
            partial(
                corral.serve_listeners,
                handler,
                [listener],
                handler_nursery=catching,
                max_connections=1,
            )
        )
        for _ in range(3):
            await listener.connect()
        await wait_all_tasks_blocked()
        # Each failure gave its slot back, so all three were served.
        assert calls == 3
        assert len(results) == 3
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("value", "exc", "message"),
    [(0, ValueError, r"^max_connections must be >= 1$"), (1.5, TypeError, None)],
)
async def test_serve_listeners_max_connections_validation(
    value: object, exc: type[Exception], message: str | None
) -> None:
    listener = MemoryListener()
    with pytest.raises(exc, match=message):
        await corral.serve_listeners(None, [listener], max_connections=value)  # type: ignore[arg-type]
