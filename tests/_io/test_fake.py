"""Scripted races on the fake kernel: the cases a real kernel only produces
by luck, made deterministic (DESIGN.md "Awaiting an operation")."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from iohelpers import run_on

from corral._core import (
    CancelScope,
    EndOfChannel,
    checkpoint,
    open_nursery,
    wait_all_tasks_blocked,
)
from corral._io.fake import FakeKernel
from corral._io.ops import RecvMultishotOp, RecvOp, RecvPoolOp
from corral._io.perform import current_backend, perform


def kernel() -> FakeKernel:
    backend = current_backend()
    assert isinstance(backend, FakeKernel)
    return backend


async def start_recv(nursery: Any, op: Any, cs: CancelScope, out: list[Any]) -> None:
    async def task() -> None:
        with cs:
            out.append(await perform(op))
            out.append("returned")
            await checkpoint()
            out.append("after checkpoint")

    nursery.start_soon(task)
    await wait_all_tasks_blocked()
    assert op in kernel().pending


def test_cancel_wins() -> None:
    async def main() -> None:
        op = RecvOp(3, bytearray(8))
        cs = CancelScope()
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, cs, out)
            cs.cancel()
            await wait_all_tasks_blocked()
            # Cancel only *requested*: the task is still parked.
            assert kernel().cancel_requests == [op]
            assert out == []
            kernel().complete_cancelled(op)
        assert cs.cancelled_caught
        assert out == []

    run_on("fake", main, auto_cancel=False)


def test_completion_wins_after_cancel_request() -> None:
    async def main() -> None:
        buf = bytearray(8)
        op = RecvOp(3, buf)
        cs = CancelScope()
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, cs, out)
            cs.cancel()
            await wait_all_tasks_blocked()
            assert out == []
            kernel().complete(op, data=b"late")
        # The bytes are delivered; the scope raises at the next checkpoint.
        assert out == [4, "returned"]
        assert buf[:4] == b"late"
        assert cs.cancelled_caught

    run_on("fake", main, auto_cancel=False)


def test_cancel_and_completion_in_one_turn() -> None:
    async def main() -> None:
        buf = bytearray(8)
        op = RecvOp(3, buf)
        cs = CancelScope()
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, cs, out)
            # Same step, no loop turn in between: the kernel finished the op
            # as the cancel request was made.
            kernel().complete(op, data=b"both")
            cs.cancel()
        assert out == [4, "returned"]
        assert buf[:4] == b"both"
        assert kernel().cancel_requests == [op]

    run_on("fake", main, auto_cancel=False)


def test_partial_result_and_errors() -> None:
    async def main() -> None:
        k = kernel()
        buf = bytearray(10)
        op = RecvOp(3, buf)
        async with open_nursery() as nursery:
            out: list[Any] = []
            await start_recv(nursery, op, CancelScope(), out)
            k.complete(op, data=b"abc")
        assert out[0] == 3
        op2 = RecvOp(3, buf)
        async with open_nursery() as nursery:

            async def fails() -> None:
                with pytest.raises(OSError) as info:
                    await perform(op2)
                assert info.value.errno == errno.ECONNRESET

            nursery.start_soon(fails)
            await wait_all_tasks_blocked()
            k.fail(op2, errno.ECONNRESET)

    run_on("fake", main, auto_cancel=False)


def test_ecanceled_without_a_cancel_request_is_an_oserror() -> None:
    async def main() -> None:
        op = RecvOp(3, bytearray(1))
        async with open_nursery() as nursery:

            async def waits() -> None:
                with pytest.raises(OSError) as info:
                    await perform(op)
                assert info.value.errno == errno.ECANCELED

            nursery.start_soon(waits)
            await wait_all_tasks_blocked()
            kernel().complete_cancelled(op)

    run_on("fake", main, auto_cancel=False)


def test_enobufs_parks_until_a_lease_is_released() -> None:
    async def main() -> None:
        k = kernel()
        leases = [k.pool.try_lease("filler") for _ in range(k.pool.count)]
        op = RecvPoolOp(3)
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, CancelScope(), out)
            first_token = op._token
            k.complete(op, data=b"no room")  # pool empty: becomes ENOBUFS
            await wait_all_tasks_blocked()
            assert out == []
            assert op.in_flight and op not in k.pending
            assert k.pool.statistics().waiting == 1
            leases.pop().release()  # type: ignore[union-attr]
            await wait_all_tasks_blocked()
            # Re-submitted with a fresh token.
            assert op in k.pending
            assert op._token != first_token
            k.complete(op, data=b"room")
        assert bytes(out[0]) == b"room"
        out[0].release()
        for lease in leases:
            lease.release()  # type: ignore[union-attr]

    run_on("fake", main, auto_cancel=False)


def test_cancel_while_parked_for_a_buffer() -> None:
    async def main() -> None:
        k = kernel()
        leases = [k.pool.try_lease("filler") for _ in range(k.pool.count)]
        op = RecvPoolOp(3)
        with CancelScope() as cs:
            async with open_nursery() as nursery:
                nursery.start_soon(perform, op)
                await wait_all_tasks_blocked()
                k.enobufs(op)
                await wait_all_tasks_blocked()
                cs.cancel()
        assert cs.cancelled_caught
        assert op.res == -errno.ECANCELED
        assert k.pool.statistics().waiting == 0
        for lease in leases:
            lease.release()  # type: ignore[union-attr]

    run_on("fake", main, auto_cancel=False)


def test_stale_token_is_never_delivered() -> None:
    async def main() -> None:
        k = kernel()
        op = RecvOp(3, bytearray(4))
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, CancelScope(), out)
            old = op._token
            k.complete(op, data=b"1")
        async with open_nursery() as nursery:
            await start_recv(nursery, op, CancelScope(), out)  # same record, resubmitted
            assert op._token != old
            k.deliver_raw(old, 99)
            await wait_all_tasks_blocked()
            assert k.stale_completions == 1
            assert op.in_flight
            k.complete(op, data=b"22")
        assert out == [1, "returned", "after checkpoint", 2, "returned", "after checkpoint"]

    run_on("fake", main, auto_cancel=False)


def test_multishot_stream_queues_while_nobody_waits() -> None:
    async def main() -> None:
        k = kernel()
        op = RecvMultishotOp(3)
        async with open_nursery() as nursery:
            nursery.start_soon(perform, op)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        # The waiter left; the multishot op keeps running.
        assert op.in_flight
        k.complete(op, data=b"a", more=True)
        k.complete(op, data=b"b", more=True)
        k.complete(op, 0)  # EOF ends the stream
        first = await perform(op)
        second = await perform(op)
        assert (bytes(first), bytes(second)) == (b"a", b"b")
        first.release()
        second.release()
        with pytest.raises(EndOfChannel):
            await perform(op)

    run_on("fake", main, auto_cancel=False)


def test_pending_cancel_does_not_leave_before_completion() -> None:
    # Abort.FAILED: a cancelled task stays parked as long as the kernel
    # holds its op; the run cannot finish around it.
    async def main() -> None:
        op = RecvOp(3, bytearray(1))
        cs = CancelScope()
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, cs, out)
            cs.cancel()
            for _ in range(5):
                await wait_all_tasks_blocked()
            assert op.in_flight
            assert out == []
            kernel().complete_cancelled(op)
        assert cs.cancelled_caught
        assert out == []

    run_on("fake", main, auto_cancel=False)


def test_enobufs_after_a_cancel_request_completes_as_cancelled() -> None:
    # The kernel failed the receive for want of a buffer after our cancel
    # request reached it: the op had no effect, so the waiter gets
    # Cancelled, not OSError(ENOBUFS), and nothing is re-submitted.
    async def main() -> None:
        k = kernel()
        op = RecvPoolOp(3)
        cs = CancelScope()
        out: list[Any] = []
        async with open_nursery() as nursery:
            await start_recv(nursery, op, cs, out)
            cs.cancel()
            await wait_all_tasks_blocked()
            assert k.cancel_requests == [op]
            submissions = len(k.submissions)
            k.enobufs(op)
        assert cs.cancelled_caught
        assert out == []
        assert op.res == -errno.ECANCELED
        assert len(k.submissions) == submissions
        assert k.pool.statistics().waiting == 0

    run_on("fake", main, auto_cancel=False)


def test_multishot_enobufs_after_a_cancel_request_ends_the_stream_quietly() -> None:
    async def main() -> None:
        k = kernel()
        op = RecvMultishotOp(3)
        async with open_nursery() as nursery:
            nursery.start_soon(perform, op)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        k.cancel(op)
        k.enobufs(op)
        # Cancelled by request: the stream ends, no OSError(ENOBUFS).
        with pytest.raises(EndOfChannel):
            await perform(op)
        assert not op.in_flight

    run_on("fake", main, auto_cancel=False)
