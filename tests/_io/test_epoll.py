"""The epoll adapter's own behaviour (corral/_io/epoll.py, _epoll_ops.py).

The shared contract suite (test_contract.py) also runs on epoll; these tests
cover what is specific to emulating completions over readiness: merged
interest per fd, FIFO lines, one-shot re-arming, cancel at each stage, fds
closed or hung up while ops wait, the pool taken only when data is there,
emulated multishot, and the synchronous file ops.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from epoll_helpers import drain, epoll, fill, run, socketpair, turns_until

from corral._core import (
    Cancelled,
    CancelScope,
    ClosedResourceError,
    EndOfChannel,
    cancel_shielded_checkpoint,
    open_nursery,
    wait_all_tasks_blocked,
)
from corral._io.epoll import EpollBackend
from corral._io.ops import (
    CancelFdOp,
    CloseOp,
    NopOp,
    Operation,
    PollOp,
    RecvMultishotOp,
    RecvOp,
    RecvPoolOp,
    SendOp,
    TimeoutOp,
)
from corral._io.perform import cancel_operation, perform
from corral._io.pool import BufferPool
from corral._io.readiness import notify_closing, wait_readable


@pytest.fixture
def tmp_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789")
    yield path


# -- the first subset: nop, timeout, poll, recv, send ----------------------------


def test_nop_timeout_and_immediate_send_without_epoll_ctl() -> None:
    async def main() -> None:
        assert await perform(NopOp()) is None
        assert await perform(TimeoutOp(0)) is None
        a, b = socketpair()
        with a, b:
            before = epoll().epoll_statistics().ctl_calls
            # A send that fits and a receive of data already there complete
            # at their first attempt: no readiness wait, no epoll_ctl.
            assert await perform(SendOp(a.fileno(), b"hello")) == 5
            buf = bytearray(8)
            assert await perform(RecvOp(b.fileno(), buf)) == 5
            assert buf[:5] == b"hello"
            stats = epoll().epoll_statistics()
            assert stats.ctl_calls == before
            assert stats.immediate >= 2

    run(main)


def test_recv_waits_for_readiness() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            buf = bytearray(16)
            got: list[int] = []
            async with open_nursery() as nursery:

                async def reader() -> None:
                    got.append(await perform(RecvOp(b.fileno(), buf)))

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                assert got == []
                assert b.fileno() in epoll()._fds
                a.send(b"late")
            assert got == [4]
            assert buf[:4] == b"late"
            # Nothing in the backend still pins the caller's buffer.
            del buf[4:]

    run(main)


def test_blocking_socket_never_blocks_the_loop() -> None:
    # MSG_DONTWAIT on every socket call: a blocking socket behaves.
    async def main() -> None:
        a, b = socketpair(blocking=True)
        with a, b:
            async with open_nursery() as nursery:

                async def reader() -> None:
                    buf = bytearray(4)
                    assert await perform(RecvOp(b.fileno(), buf)) == 2

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                assert await perform(SendOp(a.fileno(), b"ok")) == 2
            assert b.getblocking()  # untouched

    run(main)


def test_poll_op_reports_mask_and_hangup() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            assert await perform(PollOp(a.fileno(), select.POLLOUT)) == select.POLLOUT
            a.close()
            mask = await perform(PollOp(b.fileno(), select.POLLIN))
            assert mask & select.POLLIN
            assert mask & select.POLLHUP

    run(main)


def test_poll_op_on_regular_file_is_always_ready(tmp_file: Path) -> None:
    # epoll_ctl refuses regular files (EPERM); poll(2) calls them ready.
    async def main() -> None:
        with open(tmp_file, "rb") as f:
            events = select.POLLIN | select.POLLOUT
            assert await perform(PollOp(f.fileno(), events)) == events

    run(main)


def test_timeout_op_expires_and_cancels() -> None:
    async def main() -> None:
        op = TimeoutOp(0.001)
        assert await perform(op) is None
        assert op.res == -errno.ETIME
        with CancelScope() as cs:
            async with open_nursery() as nursery:

                async def canceller() -> None:
                    await wait_all_tasks_blocked()
                    cs.cancel()

                nursery.start_soon(canceller)
                await perform(TimeoutOp(3600))
        assert cs.cancelled_caught
        assert epoll().epoll_statistics().timers == 0

    run(main)


# -- one registration per fd, merged interest, FIFO lines ----------------------


def test_merged_interest_and_fifo_lines() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            fill(b)
            order: list[str] = []
            backend = epoll()
            async with open_nursery() as nursery:

                async def recv(name: str) -> None:
                    buf = bytearray(3)
                    n = await perform(RecvOp(b.fileno(), buf))
                    order.append(f"{name}:{bytes(buf[:n]).decode()}")

                async def send() -> None:
                    await perform(SendOp(b.fileno(), b"y"))
                    order.append("send")

                async def poll() -> None:
                    mask = await perform(PollOp(b.fileno(), select.POLLIN | select.POLLPRI))
                    order.append(f"poll:{mask & select.POLLIN}")

                for name in ("r1", "r2", "r3"):
                    nursery.start_soon(recv, name)
                    await wait_all_tasks_blocked()
                nursery.start_soon(send)
                nursery.start_soon(poll)
                await wait_all_tasks_blocked()
                # One registration for the fd, carrying every interest.
                st = backend._fds[b.fileno()]
                assert [op.kind for op in st.readers] == ["recv"] * 3
                assert [op.kind for op in st.writers] == ["send"]
                assert len(st.pollers) == 1
                assert st.armed == select.EPOLLIN | select.EPOLLOUT | select.EPOLLPRI
                a.send(b"abcdefghi")
                await wait_all_tasks_blocked()
                # All three receivers, in the order they started waiting.
                assert [o for o in order if o.startswith("r")] == ["r1:abc", "r2:def", "r3:ghi"]
                assert "send" not in order
                drain(a)
            assert "send" in order
            assert f"poll:{select.POLLIN}" in order

    run(main)


def test_new_recv_does_not_jump_the_line() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            backend = epoll()
            first = RecvOp(b.fileno(), bytearray(2))
            second = RecvOp(b.fileno(), bytearray(2))
            async with open_nursery() as nursery:
                nursery.start_soon(perform, first)
                await wait_all_tasks_blocked()
                # Data arrives, and in the same turn a second recv is
                # submitted: it queues behind the first one.
                a.send(b"1122")
                backend.submit(second)
                seen: list[Operation] = []
                second._callback = seen.append
                await turns_until(lambda: bool(seen))
            assert bytes(first.buffer) == b"11"
            assert bytes(second.buffer) == b"22"

    run(main)


# -- cancellation at each stage -----------------------------------------------


def test_cancel_while_waiting_disarms_and_loses_nothing() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            backend = epoll()
            op = RecvOp(b.fileno(), bytearray(8))
            with CancelScope() as cs:
                async with open_nursery() as nursery:

                    async def canceller() -> None:
                        await wait_all_tasks_blocked()
                        cs.cancel()

                    nursery.start_soon(canceller)
                    await perform(op)
            assert cs.cancelled_caught
            assert op.res == -errno.ECANCELED
            await cancel_shielded_checkpoint()
            await cancel_shielded_checkpoint()
            assert b.fileno() not in backend._fds
            assert backend._fds.get(b.fileno()) is None
            a.send(b"kept")
            assert b.recv(8) == b"kept"

    run(main)


def test_cancel_after_the_syscall_succeeded_delivers_the_result() -> None:
    # The recv's syscall succeeds in the loop turn; the cancel request comes
    # after it (from the callback of an op delivered just before it in the
    # same batch): the data must be delivered, not dropped.
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            a.send(b"payload")
            backend = epoll()
            nop = NopOp()
            recv = RecvOp(b.fileno(), bytearray(16))
            seen: list[Operation] = []
            nop._callback = lambda op: backend.cancel(recv)
            recv._callback = seen.append
            backend.submit(nop)
            backend.submit(recv)
            await turns_until(lambda: bool(seen))
            assert recv._cancel_requested
            assert recv.res == 7
            assert bytes(recv.buffer[:7]) == b"payload"

    run(main)


def test_cancel_queued_op_that_would_wait() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            backend = epoll()
            op = RecvOp(b.fileno(), bytearray(4))
            seen: list[Operation] = []
            op._callback = seen.append
            backend.submit(op)
            backend.cancel(op)
            await turns_until(lambda: bool(seen))
            assert op.res == -errno.ECANCELED
            assert b.fileno() not in backend._fds
            assert backend.in_flight_count() == 0

    run(main)


def test_cancel_one_of_several_waiters_keeps_the_others() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            got: list[bytes] = []
            async with open_nursery() as nursery:

                async def recv(scope: CancelScope) -> None:
                    buf = bytearray(4)
                    with scope:
                        n = await perform(RecvOp(b.fileno(), buf))
                        got.append(bytes(buf[:n]))

                s1, s2 = CancelScope(), CancelScope()
                nursery.start_soon(recv, s1)
                await wait_all_tasks_blocked()
                nursery.start_soon(recv, s2)
                await wait_all_tasks_blocked()
                s1.cancel()
                await wait_all_tasks_blocked()
                a.send(b"two")
            assert got == [b"two"]
            assert s1.cancelled_caught

    run(main)


def test_cancel_fd_cancels_every_waiter() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            errors: list[int] = []
            async with open_nursery() as nursery:

                async def recv() -> None:
                    with pytest.raises(OSError) as info:
                        await perform(RecvOp(b.fileno(), bytearray(4)))
                    errors.append(info.value.errno or 0)

                nursery.start_soon(recv)
                nursery.start_soon(recv)
                await wait_all_tasks_blocked()
                assert await perform(CancelFdOp(b.fileno())) == 2
            assert errors == [errno.ECANCELED, errno.ECANCELED]

    run(main)


# -- fds closed or hung up while ops wait ----------------------------------------


def test_close_op_fails_waiters_with_ebadf() -> None:
    async def main() -> None:
        a, b = socketpair()
        fd = b.detach()
        with a:
            async with open_nursery() as nursery:

                async def recv() -> None:
                    with pytest.raises(OSError) as info:
                        await perform(RecvOp(fd, bytearray(4)))
                    assert info.value.errno == errno.EBADF

                nursery.start_soon(recv)
                await wait_all_tasks_blocked()
                assert await perform(CloseOp(fd)) is None
            assert fd not in epoll()._registered
            with pytest.raises(OSError) as info:
                await perform(RecvOp(fd, bytearray(4)))
            assert info.value.errno == errno.EBADF

    run(main)


def test_notify_closing_wakes_readiness_waits() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            async with open_nursery() as nursery:

                async def waiter() -> None:
                    with pytest.raises(ClosedResourceError, match=r"^another task closed this fd$"):
                        await wait_readable(b)

                nursery.start_soon(waiter)
                await wait_all_tasks_blocked()
                notify_closing(b)
            await cancel_shielded_checkpoint()
            assert epoll().in_flight_count() == 0

    run(main)


def test_peer_close_wakes_recv_with_eof_and_send_with_epipe() -> None:
    async def main() -> None:
        a, b = socketpair()
        with b:
            fill(b)
            results: dict[str, Any] = {}
            async with open_nursery() as nursery:

                async def recv() -> None:
                    try:
                        results["recv"] = await perform(RecvOp(b.fileno(), bytearray(4)))
                    except OSError as exc:
                        results["recv"] = exc.errno

                async def send() -> None:
                    try:
                        await perform(SendOp(b.fileno(), b"z" * 65536))
                    except OSError as exc:
                        results["send"] = exc.errno

                nursery.start_soon(recv)
                nursery.start_soon(send)
                await wait_all_tasks_blocked()
                assert results == {}
                a.close()  # EPOLLHUP (+ EPOLLIN) on b
            # a closed with unread data (what fill() sent): a reset, which
            # the receive reports (unix(7) stream sockets do this).
            assert results == {"recv": errno.ECONNRESET, "send": errno.EPIPE}

    run(main)


def test_fd_closed_behind_our_back_with_a_dup_does_not_spin() -> None:
    # Trio's "Some facts about epoll": the registration of an fd closed while
    # a dup keeps its file alive can be neither removed nor changed, and it
    # reports events under the dead fd number. One-shot interest lets it fire
    # once; level-triggered, every epoll_wait would return at once, forever.
    backend = EpollBackend(BufferPool(4096, 4), guest=True)
    a, b = socketpair()
    try:
        fd = os.dup(b.fileno())
        op = RecvOp(fd, bytearray(1))
        backend.submit(op)
        assert not backend.get_events(0)  # armed for EPOLLIN, nothing yet
        os.close(fd)  # closed behind the backend's back: stale registration
        a.send(b"x")  # the file (alive through b) becomes readable
        events = backend.get_events(5)
        backend.process_events(events)
        assert op.done and op.res == -errno.EBADF  # the attempt found fd gone
        # Disarmed: the loop can sleep again although the file stays readable.
        assert not backend.get_events(0.05)
        assert not backend.get_events(0.05)
        assert b.recv(1) == b"x"
    finally:
        backend.close()
        a.close()
        b.close()


# -- many fds -----------------------------------------------------------------------


def test_many_fds() -> None:
    async def main() -> None:
        pairs = [socketpair() for _ in range(300)]
        try:
            total = 0
            async with open_nursery() as nursery:

                async def echo(i: int, b: socket.socket) -> None:
                    nonlocal total
                    lease = await perform(RecvPoolOp(b.fileno()))
                    assert lease is not None
                    with lease:
                        assert bytes(lease.data) == str(i).encode()
                        total += 1

                for i, (_, b) in enumerate(pairs):
                    nursery.start_soon(echo, i, b)
                await wait_all_tasks_blocked()
                assert len(epoll()._fds) == 300
                for i, (a, _) in enumerate(pairs):
                    await perform(SendOp(a.fileno(), str(i).encode()))
            assert total == 300
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    run(main, buffers=64)


# -- the backend's own loop: wakeups, timeouts, close ------------------------------


def test_force_wakeup_from_another_thread_and_timeout() -> None:
    backend = EpollBackend(BufferPool(4096, 4), guest=True)
    try:
        assert not backend.get_events(0.01)
        timer = threading.Timer(0.05, backend.force_wakeup)
        timer.start()
        events = backend.get_events(30)
        timer.join()
        assert events
        backend.process_events(events)
    finally:
        backend.close()


def test_signal_wakes_get_events() -> None:
    received: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda *a: received.append(1))
    backend = EpollBackend(BufferPool(4096, 4))
    try:
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        events = backend.get_events(30)
        timer.join()
        assert events
    finally:
        backend.close()
        signal.signal(signal.SIGUSR1, old)
    assert signal.set_wakeup_fd(-1) == -1


def test_close_drains_everything_in_flight() -> None:
    pool = BufferPool(4096, 4, debug=True)
    backend = EpollBackend(pool, guest=True)
    a, b = socketpair()
    with a, b:
        a.send(b"ready")
        waiting = RecvOp(b.fileno(), bytearray(4))
        timer = TimeoutOp(3600)
        backend.submit(waiting)
        backend.submit(timer)
        backend.process_events(backend.get_events(0))
        assert waiting.done and waiting.res == 4  # data was there
        pool_recv = RecvPoolOp(b.fileno())
        idle = RecvOp(a.fileno(), bytearray(4))
        backend.submit(pool_recv)
        backend.submit(idle)
        events = backend.get_events(0)  # pool_recv's result is in the batch
        assert events
        backend.close()  # ... and delivered to nobody: its lease comes back
    assert pool_recv.done and pool_recv.res == 1
    assert idle.done and idle.res == -errno.ECANCELED
    assert timer.done and timer.res == -errno.ECANCELED
    assert pool.statistics().in_use == 0
    with pytest.raises(RuntimeError, match=r"^the I/O backend is closed \(the run has ended\)$"):
        backend.submit(NopOp())


def test_cancelled_exception_when_cancel_wins() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            with CancelScope() as cs:
                cs.cancel()
                with pytest.raises(Cancelled):
                    await perform(RecvOp(b.fileno(), bytearray(1)))

    run(main)


# -- flush order, fd reuse, unpollable fds -------------------------------------------


def test_receive_before_its_send_in_one_batch_needs_no_wait() -> None:
    # Receives are tried after the rest of the flush, so a receive whose data
    # comes from a send submitted after it in the same turn completes at once
    # (as on io_uring), without epoll_ctl or a readiness wait.
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            backend = epoll()
            recv = RecvOp(b.fileno(), bytearray(8))
            send = SendOp(a.fileno(), b"batched")
            seen: list[Operation] = []
            recv._callback = send._callback = seen.append
            before = backend.epoll_statistics()
            backend.submit(recv)
            backend.submit(send)
            await turns_until(lambda: len(seen) == 2)
            after = backend.epoll_statistics()
            assert recv.res == 7
            assert after.ctl_calls == before.ctl_calls
            assert after.readiness_waits == before.readiness_waits

    run(main)


def test_close_is_a_barrier_for_deferred_receives() -> None:
    # A receive submitted before a close of its fd is tried before the close
    # (it gets the data), one submitted after it fails with EBADF.
    async def main() -> None:
        a, b = socketpair()
        fd = b.detach()
        with a:
            a.send(b"x")
            backend = epoll()
            before = RecvOp(fd, bytearray(1))
            close = CloseOp(fd)
            after = RecvOp(fd, bytearray(1))
            seen: list[Operation] = []
            for op in (before, close, after):
                op._callback = seen.append
                backend.submit(op)
            await turns_until(lambda: len(seen) == 3)
            assert (before.res, close.res, after.res) == (1, 0, -errno.EBADF)

    run(main)


def test_guest_mode_waits_in_a_worker_thread() -> None:
    # In guest mode get_events (flush, epoll_wait, readiness attempts) runs in
    # a worker thread; results are still delivered in the host's thread.
    import queue

    from corral._core import start_guest_run
    from corral._io._select import make_io_manager_factory

    todo: queue.Queue[Any] = queue.Queue()
    outcomes: list[Any] = []

    async def main() -> bytes:
        a, b = socketpair()
        with a, b:
            buf = bytearray(8)
            async with open_nursery() as nursery:

                async def reader() -> None:
                    n = await perform(RecvOp(b.fileno(), buf))
                    assert threading.current_thread() is threading.main_thread()
                    del buf[n:]

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                threading.Timer(0.01, a.send, (b"guest",)).start()
            await perform(TimeoutOp(0.001))
            return bytes(buf)

    start_guest_run(
        main,
        run_sync_soon_threadsafe=todo.put,
        done_callback=outcomes.append,
        io_manager_factory=make_io_manager_factory("epoll", debug=True),
    )
    while not outcomes:
        todo.get(timeout=30)()
    assert outcomes[0].unwrap() == b"guest"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 1234])
def test_random_cancels_lose_no_byte_and_complete_once(seed: int) -> None:
    # Receivers (user buffers, pool buffers, multishot) on shared sockets,
    # senders, and cancels at random moments: every op completes exactly
    # once, and every byte sent is either received or still in the socket.
    import random

    rng = random.Random(seed)

    async def main() -> None:
        pairs = [socketpair() for _ in range(6)]
        sent = [0] * len(pairs)
        received = [0] * len(pairs)
        # Keyed by the op itself (which keeps it alive: ids would be reused).
        completions: dict[Operation, int] = {}
        backend = epoll()

        def count(op: Operation) -> None:
            completions[op] = completions.get(op, 0) + 1

        async def receiver(i: int) -> None:
            fd = pairs[i][1].fileno()
            eof = False
            while not eof:
                kind = rng.choice(["recv", "pool", "multi"])
                op: Any
                if kind == "recv":
                    op = RecvOp(fd, bytearray(rng.randrange(1, 64)))
                elif kind == "pool":
                    op = RecvPoolOp(fd)
                else:
                    op = RecvMultishotOp(fd)
                with CancelScope() as cs:
                    if rng.random() < 0.5:
                        cs.deadline = -1 if rng.random() < 0.2 else 0
                    if kind == "multi":
                        try:
                            for _ in range(rng.randrange(1, 4)):
                                lease = await perform(op)
                                received[i] += len(lease)
                                lease.release()
                        except EndOfChannel:
                            eof = True
                        finally:
                            # Stop the stream, then take what it stashed.
                            cancel_operation(op)
                            with CancelScope(shield=True):
                                while not eof:
                                    try:
                                        lease = await perform(op)
                                    except EndOfChannel:
                                        break
                                    received[i] += len(lease)
                                    lease.release()
                            if op.res == 0:
                                eof = True
                    elif rng.random() < 0.3:
                        # Cancel from outside at a random later turn.
                        op._callback = count
                        backend.submit(op)
                        for _ in range(rng.randrange(3)):
                            await cancel_shielded_checkpoint()
                        backend.cancel(op)
                        await turns_until(lambda op=op: op.done)
                        if op.res > 0:
                            received[i] += op.res
                        eof = op.res == 0
                        if op.lease is not None:
                            op.lease.release()
                    else:
                        res = await perform(op)
                        if kind == "recv":
                            received[i] += res
                            eof = res == 0
                        elif res is not None:
                            received[i] += len(res)
                            res.release()
                        else:
                            eof = True
                await cancel_shielded_checkpoint()

        async def sender(i: int) -> None:
            fd = pairs[i][0].fileno()
            for _ in range(60):
                data = bytes(rng.randrange(1, 200))
                with CancelScope() as cs:
                    if rng.random() < 0.2:
                        cs.cancel()
                    sent[i] += await perform(SendOp(fd, data))
                await cancel_shielded_checkpoint()
            pairs[i][0].shutdown(socket.SHUT_WR)

        async with open_nursery() as nursery:
            for i in range(len(pairs)):
                nursery.start_soon(receiver, i)
                nursery.start_soon(sender, i)
        assert backend.in_flight_count() == 0
        assert epoll().pool.statistics().in_use == 0
        assert completions and set(completions.values()) == {1}
        for i, (a, b) in enumerate(pairs):
            a.close()
            assert received[i] + drain(b) == sent[i]
            b.close()

    run(main, buffers=8, buffer_size=64)
