"""The conformance suites can fail: streams with one deliberate bug each are
rejected, and the same wrapper without bugs passes.

Not every bug makes a suite *fail*: some make it hang (a receiver closed
with a cancelled ``aclose`` that did not close leaves the suite's "send
until BrokenResourceError" loop running forever, exactly as in Trio). The
bugs below are ones the suites report with an AssertionError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
import pytest

from corral import StapledStream
from corral.abc import HalfCloseableStream, ReceiveStream, SendStream
from corral.lowlevel import checkpoint
from corral.testing import (
    check_half_closeable_stream,
    check_one_way_stream,
    check_two_way_stream,
    lockstep_stream_one_way_pair,
    memory_stream_one_way_pair,
)


@attrs.frozen
class Faults:
    """Each flag plants one bug, the kind real stream code has."""

    empty_send_skips_checkpoint: bool = False  # send_all(b"") returns without yielding
    send_after_close_succeeds: bool = False  # a closed stream silently swallows data
    accepts_bad_max_bytes: bool = False  # receive_some(0) returns b"" instead of ValueError
    closed_receive_returns_eof: bool = False  # receiving on a closed stream says EOF
    wait_never_blocks: bool = False  # wait_send_all_might_not_block ignores backpressure
    corrupts_large_sends: bool = False  # big chunks are mangled in transit
    send_eof_skips_checkpoint: bool = False  # send_eof is not a checkpoint


class FaultySend(SendStream):
    def __init__(self, inner: SendStream, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._faults.send_after_close_succeeds and self._closed:
            await checkpoint()
            return
        if self._faults.empty_send_skips_checkpoint and not data and not self._closed:
            return
        if self._faults.corrupts_large_sends and len(data) > 1000:
            data = bytes(data)[::-1]
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        if self._faults.wait_never_blocks and not self._closed:
            await checkpoint()
            return
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if self._faults.send_eof_skips_checkpoint:
            self._closed = True
            self._inner.close()  # type: ignore[attr-defined]  # memory/lockstep streams have it
            return
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._inner.aclose()


class FaultyReceive(ReceiveStream):
    def __init__(self, inner: ReceiveStream, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._faults.closed_receive_returns_eof and self._closed:
            await checkpoint()
            return b""
        if self._faults.accepts_bad_max_bytes and isinstance(max_bytes, int) and max_bytes < 1:
            await checkpoint()
            return b""
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self._closed = True
        await self._inner.aclose()


OneWayMaker = Callable[[], Awaitable[tuple[SendStream, ReceiveStream]]]
TwoWayMaker = Callable[[], Awaitable[tuple[HalfCloseableStream, HalfCloseableStream]]]


def one_way_maker(
    faults: Faults, pair: Callable[[], tuple[SendStream, ReceiveStream]]
) -> OneWayMaker:
    async def make() -> tuple[SendStream, ReceiveStream]:
        send, receive = pair()
        return FaultySend(send, faults), FaultyReceive(receive, faults)

    return make


def two_way_maker(
    faults: Faults, pair: Callable[[], tuple[SendStream, ReceiveStream]]
) -> TwoWayMaker:
    one_way = one_way_maker(faults, pair)

    async def make() -> tuple[HalfCloseableStream, HalfCloseableStream]:
        left_send, right_receive = await one_way()
        right_send, left_receive = await one_way()
        return StapledStream(left_send, left_receive), StapledStream(right_send, right_receive)

    return make


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def assert_suite_fails(suite: Awaitable[None]) -> None:
    with pytest.raises((AssertionError, BaseExceptionGroup)) as excinfo:
        await suite
    # The suite reports a broken rule, not some unrelated crash.
    assert all(isinstance(leaf, AssertionError) for leaf in leaves(excinfo.value))


MEMORY = memory_stream_one_way_pair
LOCKSTEP = lockstep_stream_one_way_pair


async def test_the_wrapper_without_faults_passes_every_suite() -> None:
    ok = Faults()
    await check_one_way_stream(one_way_maker(ok, MEMORY), None)
    await check_one_way_stream(one_way_maker(ok, LOCKSTEP), one_way_maker(ok, LOCKSTEP))
    await check_half_closeable_stream(two_way_maker(ok, MEMORY), None)
    await check_two_way_stream(two_way_maker(ok, LOCKSTEP), two_way_maker(ok, LOCKSTEP))


@pytest.mark.parametrize(
    "fault",
    [
        "empty_send_skips_checkpoint",
        "send_after_close_succeeds",
        "accepts_bad_max_bytes",
        "closed_receive_returns_eof",
    ],
)
async def test_check_one_way_stream_rejects(fault: str) -> None:
    faults = Faults(**{fault: True})
    await assert_suite_fails(check_one_way_stream(one_way_maker(faults, MEMORY), None))


async def test_clogged_checks_catch_wait_send_all_might_not_block_ignoring_backpressure() -> None:
    faults = Faults(wait_never_blocks=True)
    # Without a clogged maker the bug is invisible...
    await check_one_way_stream(one_way_maker(faults, LOCKSTEP), None)
    # ...with one it is caught.
    await assert_suite_fails(
        check_one_way_stream(one_way_maker(faults, LOCKSTEP), one_way_maker(faults, LOCKSTEP))
    )


async def test_check_two_way_stream_rejects_corrupted_duplex_data() -> None:
    faults = Faults(corrupts_large_sends=True)
    # Small one-way checks do not notice; the 1 MiB duplex check does.
    await check_one_way_stream(one_way_maker(faults, MEMORY), None)
    await assert_suite_fails(check_two_way_stream(two_way_maker(faults, MEMORY), None))


async def test_check_half_closeable_stream_rejects_send_eof_without_checkpoint() -> None:
    faults = Faults(send_eof_skips_checkpoint=True)
    await check_two_way_stream(two_way_maker(faults, MEMORY), None)
    await assert_suite_fails(check_half_closeable_stream(two_way_maker(faults, MEMORY), None))


async def test_check_one_way_stream_rejects_wrong_types() -> None:
    async def not_streams() -> tuple[SendStream, ReceiveStream]:
        send, receive = memory_stream_one_way_pair()
        return receive, send  # type: ignore[return-value]  # the wrong order is the test

    await assert_suite_fails(check_one_way_stream(not_streams, None))
