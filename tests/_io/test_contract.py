"""The completion contract, checked on every backend available here.

DESIGN.md "The completion contract" and ``corral/_io/_backend.py`` state the
rules; each test names the rule it checks. Tests that need a real kernel
(sockets) run on the real backends; the fake kernel's scripted races are in
``test_fake.py``.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

import pytest
from iohelpers import REAL_BACKENDS, close_fd, interrupt_main_soon, run_on

from corral._core import (
    Cancelled,
    CancelScope,
    cancel_shielded_checkpoint,
    checkpoint,
    open_nursery,
    wait_all_tasks_blocked,
)
from corral._io._select import BackendUnavailableError, make_io_manager_factory
from corral._io.fake import FakeKernel
from corral._io.ops import (
    AcceptMultishotOp,
    NopOp,
    Operation,
    ReadOp,
    RecvMultishotOp,
    RecvOp,
    RecvPoolOp,
    SendOp,
    SpliceOp,
    TimeoutOp,
)
from corral._io.perform import cancel_operation, current_backend, perform
from corral._io.pool import BufferCorruptionError, BufferLeakError, BufferPool

needs_uring = pytest.mark.skipif(
    "io_uring" not in REAL_BACKENDS, reason="io_uring unavailable here (a Linux kernel interface)"
)


async def turns_until(predicate: Any, limit: int = 10000) -> None:
    """Let loop turns pass (without being a cancel point) until
    ``predicate()`` holds."""
    for _ in range(limit):
        if predicate():
            return
        await cancel_shielded_checkpoint()
    raise AssertionError("condition never became true")


def socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


# -- rule 2: exactly one terminal completion per op -----------------------


def test_many_nops_complete_exactly_once(backend: str) -> None:
    completions: list[Operation] = []

    async def one(op: NopOp) -> None:
        assert await perform(op) is None
        completions.append(op)

    async def main() -> Any:
        ops = [NopOp() for _ in range(300)]
        async with open_nursery() as nursery:
            for op in ops:
                nursery.start_soon(one, op)
        assert sorted(map(id, completions)) == sorted(map(id, ops))
        assert all(op.done for op in ops)
        return current_backend().statistics()

    stats = run_on(backend, main)
    assert stats.submitted == stats.completed == 300
    assert stats.in_flight == 0


def test_cancel_before_submit_submits_nothing(backend: str) -> None:
    async def main() -> None:
        before = current_backend().statistics().submitted
        with CancelScope() as cs:
            cs.cancel()
            await perform(NopOp())
        assert cs.cancelled_caught
        assert current_backend().statistics().submitted == before

    run_on(backend, main)


# -- rule 3: cancel is a request; the terminal completion decides ------------


def test_cancel_idle_recv_then_no_byte_lost(real_backend: str) -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            buf = bytearray(16)
            op = RecvOp(b.fileno(), buf)
            with CancelScope() as cs:
                async with open_nursery() as nursery:

                    async def canceller() -> None:
                        await turns_until(lambda: op.in_flight)
                        await wait_all_tasks_blocked()
                        cs.cancel()

                    nursery.start_soon(canceller)
                    await perform(op)
            assert cs.cancelled_caught
            assert op.done and op.res == -errno.ECANCELED
            a.send(b"hello")
            assert await perform(RecvOp(b.fileno(), buf)) == 5
            assert buf[:5] == b"hello"

    run_on(real_backend, main)


def test_success_after_cancel_request_is_delivered(real_backend: str) -> None:
    # The data is there before the recv is submitted, and the cancel is
    # requested before the next loop turn: the recv completes at submission,
    # and its result must be delivered, not dropped.
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            a.send(b"payload")
            backend = current_backend()
            buf = bytearray(16)
            op = RecvOp(b.fileno(), buf)
            seen: list[Operation] = []
            op._callback = seen.append
            backend.submit(op)
            backend.cancel(op)
            await turns_until(lambda: bool(seen))
            assert seen == [op]
            assert op.res == 7, op.res
            assert buf[:7] == b"payload"

    run_on(real_backend, main)


def test_cancel_racing_data_loses_no_byte(real_backend: str) -> None:
    # Cancel and data arrive in the same step: either the kernel cancels the
    # recv (Cancelled, and the bytes are still in the socket) or the recv
    # wins (its bytes are returned). Never both lost.
    async def main() -> None:
        for _ in range(20):
            a, b = socketpair()
            with a, b:
                buf = bytearray(64)
                op = RecvOp(b.fileno(), buf)
                got = -1
                with CancelScope() as cs:
                    async with open_nursery() as nursery:

                        async def racer(op: RecvOp = op, a: socket.socket = a) -> None:
                            await turns_until(lambda: op.in_flight)
                            cs.cancel()
                            a.send(b"racing")

                        nursery.start_soon(racer)
                        got = await perform(op)
                if cs.cancelled_caught:
                    assert op.res == -errno.ECANCELED
                    assert await perform(RecvOp(b.fileno(), buf)) == 6
                else:
                    assert got == 6
                assert buf[:6] == b"racing"

    run_on(real_backend, main)


def test_completed_result_then_cancelled_at_next_checkpoint(backend: str) -> None:
    # Success after a cancel request: perform returns, and the still
    # cancelled scope raises at the next checkpoint.
    async def main() -> None:
        with CancelScope() as cs:
            op = NopOp()
            backend_ = current_backend()
            backend_.submit(op)
            backend_.cancel(op)
            await turns_until(lambda: op.done)
            assert op.res == 0 or op.res == -errno.ECANCELED
            cs.cancel()
            await checkpoint()
        assert cs.cancelled_caught

    run_on(backend, main)


def test_timeout_op_cancel_raises_cancelled(backend: str) -> None:
    async def main() -> None:
        op = TimeoutOp(3600)
        with CancelScope() as cs:
            async with open_nursery() as nursery:

                async def canceller() -> None:
                    await turns_until(lambda: op.in_flight)
                    cs.cancel()

                nursery.start_soon(canceller)
                await perform(op)
        assert cs.cancelled_caught
        assert op.res == -errno.ECANCELED

    run_on(backend, main)


# -- rule 4: memory is held until the terminal completion -----------------------


def test_user_buffer_pinned_until_terminal_completion(real_backend: str) -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            buf = bytearray(8)
            ops = [RecvOp(b.fileno(), buf)]
            async with open_nursery() as nursery:
                nursery.start_soon(perform, ops[0])
                await turns_until(lambda: ops[0].in_flight)
                with pytest.raises(BufferError):
                    buf.extend(b"resize")
                a.send(b"12345678")
            assert buf == b"12345678"
            ops.clear()
            buf.extend(b"!")  # the pin went with the op

    run_on(real_backend, main)


def test_pool_receives_never_trip_canaries(real_backend: str) -> None:
    async def main() -> Any:
        a, b = socketpair()
        with a, b:
            for i in range(64):
                a.send(b"x" * (i + 1))
                lease = await perform(RecvPoolOp(b.fileno()))
                assert lease is not None
                assert bytes(lease) == b"x" * (i + 1)
                lease.release()
        return current_backend().pool.statistics()

    stats = run_on(real_backend, main, buffers=4)
    assert stats.in_use == 0
    assert stats.debug


def test_write_after_release_trips_canary(backend: str) -> None:
    pool = BufferPool(64, 2, debug=True)
    lease = pool.try_lease("recv on fd 7")
    assert lease is not None
    stale = lease.buffer
    lease.release()
    stale[0:4] = b"oops"  # the deliberate misuse
    with pytest.raises(
        BufferCorruptionError,
        match=r"^corral pool buffer 0 was written after release; it was last held by 'recv on fd 7'$",
    ):
        pool.verify_free()
    pool.close()


def test_end_of_run_leak_check_names_the_lease() -> None:
    kernel = FakeKernel(BufferPool(64, 2, debug=True))
    lease = kernel.pool.try_lease("the test lease")
    assert lease is not None
    with pytest.raises(
        BufferLeakError,
        match=r"^corral: at the end of the run, buffer 0 still leased by 'the test lease'; "
        r"every lease must be released and every op completed$",
    ):
        kernel.close()


# -- rule 6: tokens are never reused while an op can complete -------------------


def test_tokens_unique_across_cancel_and_resubmit(backend: str) -> None:
    async def main() -> None:
        backend_ = current_backend()
        tokens = set()
        for _ in range(50):
            op = TimeoutOp(3600)
            seen: list[Operation] = []
            op._callback = seen.append
            backend_.submit(op)
            assert op._token not in tokens
            tokens.add(op._token)
            backend_.cancel(op)
            # Resubmit a *new* op at once, before the old one's completion.
            nop = NopOp()
            backend_.submit(nop)
            assert nop._token not in tokens
            tokens.add(nop._token)
            await turns_until(lambda op=op, nop=nop: op.done and nop.done)
            assert op.res == -errno.ECANCELED
            assert nop.res == 0

    run_on(backend, main)


# -- pool backpressure ----------------------------------------------------------------


def test_pool_exhaustion_blocks_and_resumes(real_backend: str) -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            leases = []
            for _ in range(2):
                a.send(b"held")
                lease = await perform(RecvPoolOp(b.fileno()))
                assert lease is not None
                leases.append(lease)
            a.send(b"third")
            op = RecvPoolOp(b.fileno())
            result: list[Any] = []

            async def receiver() -> None:
                result.append(await perform(op))

            async with open_nursery() as nursery:
                nursery.start_soon(receiver)
                await wait_all_tasks_blocked()
                stats = current_backend().pool.statistics()
                assert not result
                assert stats.in_use == 2
                assert stats.waiting == 1
                assert stats.backpressure_waits >= 1
                leases.pop().release()
            assert bytes(result[0]) == b"third"
            result[0].release()
            leases.pop().release()

    run_on(real_backend, main, buffers=2)


# -- io_uring specifics: tiny queues ---------------------------------------------------


@needs_uring
def test_tiny_cq_loses_nothing() -> None:
    async def main() -> Any:
        backend: Any = current_backend()
        ops = [NopOp() for _ in range(200)]
        seen: list[Operation] = []
        for op in ops:
            op._callback = seen.append
            backend.submit(op)  # SQ of 2: flushed every other op
        # 200 CQEs were posted into a CQ of 4: the rest wait in the kernel's
        # overflow list (IORING_FEAT_NODROP).
        assert backend._ring.cq_ready() == backend.ring_info.cq_entries == 4
        await turns_until(lambda: len(seen) == 200)
        assert sorted(map(id, seen)) == sorted(map(id, ops))
        assert all(op.res == 0 for op in ops)
        return backend.statistics(), backend.ring_statistics()

    stats, ring = run_on("io_uring", main, entries=2, cq_entries=4)
    assert stats.completed == stats.submitted == 200
    assert stats.in_flight == 0
    assert ring.dropped == 0


@needs_uring
def test_sq_full_submits_everything() -> None:
    async def main() -> Any:
        a, b = socketpair()
        with a, b:
            ops = [RecvPoolOp(b.fileno()) for _ in range(8)]
            got: list[Any] = []

            async def recv(op: RecvPoolOp) -> None:
                got.append(await perform(op))

            async with open_nursery() as nursery:
                for op in ops:
                    nursery.start_soon(recv, op)
                await wait_all_tasks_blocked()
                for i in range(8):
                    a.send(bytes([65 + i]))
                    await turns_until(lambda i=i: len(got) > i)
            assert sorted(bytes(lease) for lease in got) == [bytes([65 + i]) for i in range(8)]
            for lease in got:
                lease.release()

    run_on("io_uring", main, entries=2)


def test_enter_calls_per_op_with_256_in_flight() -> None:
    if "io_uring" not in REAL_BACKENDS:
        pytest.skip("io_uring unavailable here (a Linux kernel interface)")

    async def main() -> Any:
        async def worker() -> None:
            for _ in range(40):
                await perform(NopOp())

        async with open_nursery() as nursery:
            for _ in range(256):
                nursery.start_soon(worker)
        return current_backend().statistics()

    stats = run_on("io_uring", main, entries=512)
    assert stats.completed == 256 * 40
    assert stats.kernel_waits / stats.completed <= 0.1


# -- rule 7: shutdown with ops in flight -----------------------------------------------


def test_shutdown_with_orphaned_ops_leaks_nothing(backend: str) -> None:
    holder: dict[str, Any] = {}

    async def main() -> None:
        backend_ = current_backend()
        holder["backend"] = backend_
        a, b = socketpair()
        holder["socks"] = (a, b)
        # Submitted with nobody waiting: the run ends with them in flight.
        for _ in range(4):
            backend_.submit(RecvPoolOp(b.fileno()))
        backend_.submit(TimeoutOp(3600))

    run_on(backend, main)
    stats = holder["backend"].statistics()
    assert stats.in_flight == 0
    assert stats.pool.in_use == 0
    for s in holder["socks"]:
        s.close()


def test_shutdown_cancels_parked_system_tasks(real_backend: str) -> None:
    from corral._core import spawn_system_task

    done: list[str] = []

    async def main() -> None:
        a, b = socketpair()

        async def parked() -> None:
            try:
                await perform(RecvPoolOp(b.fileno()))
            except Cancelled:
                done.append("cancelled")
                raise
            finally:
                a.close()
                b.close()

        spawn_system_task(parked)
        await wait_all_tasks_blocked()

    run_on(real_backend, main)
    assert done == ["cancelled"]


# -- multishot ----------------------------------------------------------------------------


def test_multishot_accept_and_recv(real_backend: str) -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with listener:
            accept = AcceptMultishotOp(listener.fileno())
            clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
            fds = [await perform(accept) for _ in range(3)]
            assert len(set(fds)) == 3
            cancel_operation(accept)
            from corral._core import EndOfChannel

            with pytest.raises(EndOfChannel):
                while True:
                    close_fd(await perform(accept))
            server = socket.socket(fileno=fds[0])
            recv = RecvMultishotOp(server.fileno())
            clients[0].sendall(b"one")
            first = await perform(recv)
            assert bytes(first) == b"one"
            first.release()
            clients[0].sendall(b"two")
            second = await perform(recv)
            assert bytes(second) == b"two"
            second.release()
            clients[0].close()
            with pytest.raises(EndOfChannel):
                await perform(recv)
            server.close()
            for fd in fds[1:]:
                close_fd(fd)
            for c in clients[1:]:
                c.close()

    run_on(real_backend, main)


# -- errors users see ---------------------------------------------------------------------


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"^a writable bytes-like object is required"):
        RecvOp(0, b"immutable")
    with pytest.raises(TypeError, match=r"^a bytes-like object is required, not 'str'$"):
        SendOp(0, "text")
    with pytest.raises(ValueError, match=r"^fd must be a non-negative file descriptor, not -1$"):
        ReadOp(-1, bytearray(1))
    with pytest.raises(TypeError, match=r"^fd must be an int, not str$"):
        NopOp.__init__(NopOp()) or RecvOp("3", bytearray(1))  # type: ignore[arg-type, func-returns-value]
    with pytest.raises(ValueError, match=r"^negative nbytes: -1$"):
        SpliceOp(0, 1, -1)
    with pytest.raises(ValueError, match=r"^timeout must be non-negative, not -1$"):
        TimeoutOp(-1)


def test_closed_fd_raises_oserror_with_errno(real_backend: str) -> None:
    async def main() -> None:
        a, b = socketpair()
        fd = b.fileno()
        a.close()
        b.close()
        with pytest.raises(OSError) as info:
            await perform(RecvOp(fd, bytearray(4)))
        assert info.value.errno == errno.EBADF

    run_on(real_backend, main)


# -- selection --------------------------------------------------------------------------


def test_refused_io_uring_falls_back_to_epoll(monkeypatch: pytest.MonkeyPatch) -> None:
    if "epoll" not in REAL_BACKENDS:
        pytest.skip("no epoll adapter here (epoll is Linux's)")
    monkeypatch.setenv("CORRAL_IO_URING_REFUSE", "EPERM")
    monkeypatch.delenv("CORRAL_BACKEND", raising=False)
    manager = make_io_manager_factory(None)(guest=False)
    try:
        stats = manager.statistics()
        assert stats.backend == "epoll"
        assert stats.fallback_reason is not None
        assert "io_uring" in stats.fallback_reason
        assert "Operation not permitted" in stats.fallback_reason
    finally:
        manager.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="io_uring exists only on Linux")
def test_explicit_refused_io_uring_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_IO_URING_REFUSE", "EPERM")
    factory = make_io_manager_factory("io_uring")
    with pytest.raises(
        BackendUnavailableError,
        match=r"^\[Errno 1\] corral backend 'io_uring' was requested \(argument\) but cannot start: ",
    ) as info:
        factory(guest=False)
    assert info.value.errno == errno.EPERM


def test_unknown_backend_name() -> None:
    with pytest.raises(
        ValueError,
        match=r"^unknown corral backend 'kqueue'; expected one of io_uring, epoll, fake, iocp, afd$",
    ):
        make_io_manager_factory("kqueue")


def test_lease_released_after_the_run_is_harmless(real_backend: str) -> None:
    async def main() -> Any:
        a, b = socketpair()
        with a, b:
            a.send(b"kept")
            return await perform(RecvPoolOp(b.fileno()))

    lease = run_on(real_backend, main, debug=False)
    assert lease is not None and not lease.released
    lease.release()
    assert lease.released


def test_keyboard_interrupt_reaches_a_task_parked_in_perform(real_backend: str) -> None:
    # The signal wakes the blocked kernel wait (set_wakeup_fd), the abort
    # requests a kernel cancel, and the terminal ECANCELED raises the
    # KeyboardInterrupt in the parked task.

    async def main() -> None:
        interrupt_main_soon(0.05)
        await perform(TimeoutOp(30))

    with pytest.raises(KeyboardInterrupt):
        run_on(real_backend, main)
