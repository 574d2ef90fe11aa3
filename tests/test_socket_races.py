"""Cancel races of corral.socket.

Two kinds of test:

* on the fake kernel, the race is scripted: the test decides whether the
  cancel or the completion wins, and checks what the socket method does;
* on the real backends, cancels are fired at many different moments
  relative to data arrival, and a checksum over a long random stream shows
  that no byte was lost or duplicated (and /proc/self/fd that no accepted
  connection leaked).
"""

from __future__ import annotations

import errno
import os
import random
import socket as stdlib_socket
from typing import Any

import pytest
from test_socket import BACKENDS, WINDOWS, fd_count, is_socket, on

import corral
import corral.socket as csocket
from corral import testing
from corral._core import cancel_shielded_checkpoint
from corral._io.perform import current_backend


async def turns(n: int) -> None:
    for _ in range(n):
        await cancel_shielded_checkpoint()


async def until(predicate: Any, limit: int = 1000) -> None:
    for _ in range(limit):
        if predicate():
            return
        await cancel_shielded_checkpoint()
    raise AssertionError("condition never became true")


def assert_fd_open(fd: int) -> None:
    if WINDOWS:  # a SOCKET handle: os.fstat sees only C runtime fds
        assert is_socket(fd)
    else:
        os.fstat(fd)


def assert_fd_closed(fd: int) -> None:
    if WINDOWS:
        assert not is_socket(fd)
        return
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


def fake_run(fn: Any) -> Any:
    return corral.run(fn, backend="fake", debug=True, pool_buffer_size=64, pool_buffers=8)


# -- scripted races on the fake kernel -------------------------------------


def test_recv_completion_wins_over_cancel() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        a, b = csocket.socketpair()
        with a, b:
            got: list[bytes] = []
            with corral.CancelScope() as scope:
                async with corral.open_nursery() as nursery:

                    async def receiver() -> None:
                        got.append(await b.recv(100))
                        # The scope is cancelled: the next checkpoint raises.
                        await corral.lowlevel.checkpoint()
                        got.append(b"unreachable")

                    nursery.start_soon(receiver)
                    await until(lambda: kernel.pending)
                    op = kernel.pending[0]
                    scope.cancel()
                    await until(lambda: op in kernel.cancel_requests)
                    kernel.complete(op, data=b"delivered anyway")
            assert got == [b"delivered anyway"]
            assert scope.cancelled_caught

    fake_run(main)


def test_recv_cancel_wins_consumes_nothing() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        a, b = csocket.socketpair()
        with a, b:
            with corral.CancelScope() as scope:
                async with corral.open_nursery() as nursery:
                    nursery.start_soon(b.recv, 100)
                    await until(lambda: kernel.pending)
                    op = kernel.pending[0]
                    scope.cancel()
                    await until(lambda: op in kernel.cancel_requests)
                    # The task waits for the kernel's verdict.
                    await turns(5)
                    assert op.in_flight
                    kernel.complete_cancelled(op)
            assert scope.cancelled_caught
            # The socket is usable: the same op record is submitted again.
            async with corral.open_nursery() as nursery:

                async def receive() -> None:
                    assert await b.recv(100) == b"next"

                nursery.start_soon(receive)
                await until(lambda: kernel.pending)
                kernel.complete(kernel.pending[0], data=b"next")

    fake_run(main)


def test_recv_excess_goes_to_the_stash_and_back() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        a, b = csocket.socketpair()
        with a, b:
            async with corral.open_nursery() as nursery:

                async def receive() -> None:
                    assert await b.recv(4) == b"0123"

                nursery.start_soon(receive)
                await until(lambda: kernel.pending)
                kernel.complete(kernel.pending[0], data=b"0123456789")
            submissions = len(kernel.submissions)
            assert b.is_readable()
            assert current_backend().pool.statistics().in_use == 0  # small: copied
            assert await b.recv(3) == b"456"
            assert await b.recv(100) == b"789"
            assert len(kernel.submissions) == submissions  # served from the stash

    fake_run(main)


def test_recv_into_keeps_the_buffer_pinned_until_the_kernel_confirms() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        a, b = csocket.socketpair()
        buf = bytearray(8)
        with a, b:
            with corral.CancelScope() as scope:
                async with corral.open_nursery() as nursery:
                    nursery.start_soon(b.recv_into, buf)
                    await until(lambda: kernel.pending)
                    op = kernel.pending[0]
                    scope.cancel()
                    await turns(5)
                    # Cancel requested, but the kernel may still write: the
                    # bytearray cannot be resized, the task is still parked.
                    with pytest.raises(BufferError):
                        buf.append(0)
                    kernel.complete_cancelled(op)
            assert scope.cancelled_caught
            buf.append(0)  # unpinned once recv_into raised

    fake_run(main)


def test_send_reports_a_partial_send_that_raced_a_cancel() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        a, b = csocket.socketpair()
        sent: list[int] = []
        with a, b:
            with corral.CancelScope() as scope:
                async with corral.open_nursery() as nursery:

                    async def sender() -> None:
                        sent.append(await a.send(b"x" * 1000))

                    nursery.start_soon(sender)
                    await until(lambda: kernel.pending)
                    op = kernel.pending[0]
                    scope.cancel()
                    await until(lambda: op in kernel.cancel_requests)
                    kernel.complete(op, 300)
            assert sent == [300]

    fake_run(main)


def test_accept_that_raced_a_cancel_returns_the_connection() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        listener = csocket.socket()
        peer_a, peer_b = stdlib_socket.socketpair()
        peer_b.close()
        accepted: list[Any] = []
        with listener:
            with corral.CancelScope() as scope:
                async with corral.open_nursery() as nursery:

                    async def acceptor() -> None:
                        accepted.append(await listener.accept())

                    nursery.start_soon(acceptor)
                    await until(lambda: kernel.pending)
                    op = kernel.pending[0]
                    scope.cancel()
                    await until(lambda: op in kernel.cancel_requests)
                    kernel.complete(op, peer_a.detach())
            ((sock, _address),) = accepted
            assert sock.fileno() >= 0
            sock.close()

    fake_run(main)


def test_close_during_accept_closes_a_raced_connection() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        listener = csocket.socket()
        peer_a, peer_b = stdlib_socket.socketpair()
        peer_b.close()
        fd = peer_a.detach()
        async with corral.open_nursery() as nursery:

            async def acceptor() -> None:
                with pytest.raises(corral.ClosedResourceError):
                    await listener.accept()

            nursery.start_soon(acceptor)
            await until(lambda: kernel.pending)
            op = kernel.pending[0]
            listener.close()
            await until(lambda: op in kernel.cancel_requests)
            kernel.complete(op, fd)
        assert_fd_closed(fd)

    fake_run(main)


def test_deferred_close_releases_the_fd_after_the_terminal_completion() -> None:
    async def main() -> None:
        kernel: Any = current_backend()
        a, b = csocket.socketpair()
        fd = b.fileno()
        async with corral.open_nursery() as nursery:

            async def receiver() -> None:
                with pytest.raises(corral.ClosedResourceError):
                    await b.recv(10)

            nursery.start_soon(receiver)
            await until(lambda: kernel.pending)
            op = kernel.pending[0]
            b.close()
            assert b.fileno() == -1
            await turns(3)
            assert_fd_open(fd)  # still open: the kernel may still use it
            kernel.complete_cancelled(op)
        assert_fd_closed(fd)
        a.close()

    fake_run(main)


def test_an_accept_nobody_waits_for_closes_its_connection() -> None:
    # What the run's shutdown does to an accept still in flight: the op
    # completes with no task waiting, and the accept op's callback closes
    # the connection instead of leaking it.
    from corral._io.ops import AcceptOp
    from corral._socket_base import _close_unclaimed_fd

    async def main() -> None:
        kernel: Any = current_backend()
        listener = csocket.socket()
        peer_a, peer_b = stdlib_socket.socketpair()
        peer_b.close()
        fd = peer_a.detach()
        op = AcceptOp(listener.fileno())
        op._callback = _close_unclaimed_fd
        kernel.submit(op)  # no task parks on it
        kernel.complete(op, fd)
        await until(lambda: op.done)
        assert_fd_closed(fd)
        listener.close()

    fake_run(main)


# -- cancels at many moments on the real backends ----------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("method", ["recv", "recv_into"])
def test_cancelled_receives_lose_and_duplicate_nothing(backend: str, method: str) -> None:
    rng = random.Random(f"{backend}-{method}")
    payload = rng.randbytes(300_000)

    async def main() -> None:
        a, b = csocket.socketpair()
        got = bytearray()
        cancelled = 0
        with a, b:
            async with corral.open_nursery() as nursery:

                async def sender() -> None:
                    view = memoryview(payload)
                    while view:
                        size = rng.choice([1, 10, 100, 1000, 5000, 20000])
                        view = view[await a.send(view[:size]) :]
                        await turns(rng.randrange(4))
                    a.shutdown(stdlib_socket.SHUT_WR)

                nursery.start_soon(sender)
                buf = bytearray(9000)
                while True:
                    size = rng.choice([1, 3, 100, 1000, 4096, 9000])
                    with corral.CancelScope() as scope:

                        async def cancel_later(scope: corral.CancelScope = scope) -> None:
                            await turns(rng.randrange(6))
                            scope.cancel()

                        nursery.start_soon(cancel_later)
                        if method == "recv":
                            data = await b.recv(size)
                        else:
                            n = await b.recv_into(buf, size)
                            data = bytes(buf[:n])
                        got += data
                        if not data:
                            break
                        await corral.lowlevel.checkpoint()
                    if scope.cancelled_caught:
                        cancelled += 1
        assert len(got) == len(payload)
        assert got == payload
        assert cancelled > 10  # the cancels really happened

    on(backend, main)


def test_accept_under_cancels_leaks_no_fd(backend: str) -> None:
    rng = random.Random(backend)
    count = 60

    async def main() -> None:
        before = -1 if WINDOWS else fd_count()
        listener = csocket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen(count)
        clients: list[stdlib_socket.socket] = []
        accepted: list[Any] = []
        cancelled = 0
        async with corral.open_nursery() as nursery:

            async def connector() -> None:
                for _ in range(count):
                    client = csocket.socket()
                    await client.connect(listener.getsockname())
                    clients.append(client)  # type: ignore[arg-type]
                    # Sometimes the accept waits (the cancel wins), sometimes
                    # a connection is queued (the accept wins the race).
                    await turns(rng.choice([0, 1, 20, 40]))

            nursery.start_soon(connector)
            while len(accepted) < count:
                with corral.CancelScope() as scope:

                    async def cancel_later(scope: corral.CancelScope = scope) -> None:
                        await turns(rng.randrange(4))
                        scope.cancel()

                    nursery.start_soon(cancel_later)
                    accepted.append(await listener.accept())
                if scope.cancelled_caught:
                    cancelled += 1
        assert cancelled > 5
        # Every connection was accepted exactly once: each client's address
        # appears once among the accepted peers.
        assert sorted(addr for _, addr in accepted) == sorted(c.getsockname() for c in clients)
        fds = [s.fileno() for s in [listener, *clients]] + [s.fileno() for s, _ in accepted]
        for sock, _ in accepted:
            sock.close()
        for client in clients:
            client.close()
        listener.close()
        await testing.wait_all_tasks_blocked()
        if WINDOWS:  # no /proc: every socket of the test is closed
            assert not [fd for fd in fds if is_socket(fd)]
        else:
            assert fd_count() == before

    on(backend, main)


def test_cancelled_sends_are_never_silently_retried(backend: str) -> None:
    # Each send either returns what the kernel took or raises Cancelled
    # having sent nothing: the receiver sees exactly the reported bytes.
    rng = random.Random(backend)

    async def main() -> None:
        a, b = csocket.socketpair()
        a.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
        expected = bytearray()
        got = bytearray()
        with a, b:
            async with corral.open_nursery() as nursery:

                async def receiver() -> None:
                    while True:
                        data = await b.recv(rng.choice([100, 4096]))
                        if not data:
                            return
                        got.extend(data)
                        await turns(rng.randrange(3))

                nursery.start_soon(receiver)
                for i in range(300):
                    chunk = bytes([i % 256]) * rng.choice([10, 1000, 30000])
                    with corral.CancelScope() as scope:

                        async def cancel_later(scope: corral.CancelScope = scope) -> None:
                            await turns(rng.randrange(4))
                            scope.cancel()

                        nursery.start_soon(cancel_later)
                        n = await a.send(chunk)
                        expected.extend(chunk[:n])
                a.shutdown(stdlib_socket.SHUT_WR)
        assert got == expected

    on(backend, main)
