"""The IOCP backend's own promises: which Windows path each op takes (the
statistics prove it), AcceptEx/ConnectEx set-up, error mapping, the AFD
poller's socket groups, and handles that outlive a run.

The completion contract itself is checked by ``test_contract.py``, which
runs on ``iocp`` on Windows. These tests run on Windows only (under Wine in
CI: ``scripts/test-windows.sh``), except the error-table tests.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

import pytest
from iohelpers import close_fd, run_on

from corral._core import (
    CancelScope,
    cancel_shielded_checkpoint,
    open_nursery,
    wait_all_tasks_blocked,
)
from corral._io._winerrors import errno_from_winerror
from corral._io.ops import (
    AcceptMultishotOp,
    AcceptOp,
    ConnectOp,
    RecvmsgOp,
    RecvOp,
    RecvPoolOp,
    SendmsgOp,
    SendOp,
)
from corral._io.perform import cancel_operation, current_backend, perform
from corral._io.readiness import wait_readable, wait_writable

windows_only = pytest.mark.skipif(
    sys.platform != "win32", reason="the IOCP backend is Windows-only"
)


# -- the error table (runs everywhere) -------------------------------------------


def test_winerror_table_speaks_posix() -> None:
    assert errno_from_winerror(10054) == errno.ECONNRESET  # WSAECONNRESET
    assert errno_from_winerror(64) == errno.ECONNRESET  # ERROR_NETNAME_DELETED
    assert errno_from_winerror(995) == errno.ECANCELED  # ERROR_OPERATION_ABORTED
    assert errno_from_winerror(1225) == errno.ECONNREFUSED  # ERROR_CONNECTION_REFUSED
    assert errno_from_winerror(10035) == errno.EAGAIN  # WSAEWOULDBLOCK
    assert errno_from_winerror(6) == errno.EBADF  # ERROR_INVALID_HANDLE
    # Winsock's "no buffer space" must not look like an empty pool.
    assert errno_from_winerror(10055) != errno.ENOBUFS


# -- Windows ------------------------------------------------------------------------


def _stats() -> Any:
    backend: Any = current_backend()
    return backend.iocp_statistics()


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


@windows_only
def test_iocp_is_the_default_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral._io._select import default_order, make_io_manager_factory

    monkeypatch.delenv("CORRAL_BACKEND", raising=False)
    assert default_order() == ("iocp",)
    manager = make_io_manager_factory(None)(guest=False)
    try:
        stats = manager.statistics()
        assert stats.backend == "iocp"
        assert stats.fallback_reason is None
        assert "iocp" in stats.features
    finally:
        manager.close()


@windows_only
def test_idle_pool_receive_pins_nothing_then_uses_zero_byte_recv() -> None:
    async def main() -> Any:
        a, b = _pair()
        with a, b:
            got: list[Any] = []
            async with open_nursery() as nursery:

                async def receiver() -> None:
                    got.append(await perform(RecvPoolOp(b.fileno())))

                nursery.start_soon(receiver)
                await wait_all_tasks_blocked()
                # Waiting for data holds no pool buffer.
                assert current_backend().pool.statistics().in_use == 0
                assert _stats().zero_byte_receives == 1
                a.send(b"hello")
            lease = got[0]
            assert bytes(lease) == b"hello"
            lease.release()
            # EOF: a zero-byte receive completes, the pool receive reads 0.
            a.close()
            assert await perform(RecvPoolOp(b.fileno())) is None
            return _stats()

    stats = run_on("iocp", main)
    assert stats.zero_byte_receives == 2
    assert stats.pool_receives == 2
    assert stats.stale == 0


@windows_only
def test_user_buffer_receive_and_send_are_overlapped() -> None:
    async def main() -> Any:
        a, b = _pair()
        with a, b:
            assert await perform(SendOp(a.fileno(), b"ping")) == 4
            buf = bytearray(8)
            assert await perform(RecvOp(b.fileno(), buf)) == 4
            assert buf[:4] == b"ping"
            return _stats()

    stats = run_on("iocp", main)
    assert stats.overlapped_calls == 2
    assert stats.zero_byte_receives == 0


@windows_only
def test_cancel_after_completion_is_too_late_and_delivers() -> None:
    async def main() -> Any:
        a, b = _pair()
        with a, b:
            a.send(b"data")
            buf = bytearray(8)
            op = RecvOp(b.fileno(), buf)
            backend: Any = current_backend()
            seen: list[Any] = []
            op._callback = seen.append
            backend.submit(op)
            # Issue it now (the data is there: it completes in the kernel at
            # once, its packet queued), then request a cancel that finds
            # nothing left to cancel.
            backend._flush()
            backend.cancel(op)
            while not seen:
                await cancel_shielded_checkpoint()
            assert seen == [op]
            assert op.res == 4
            assert buf[:4] == b"data"
            return _stats()

    stats = run_on("iocp", main)
    assert stats.cancel_calls == 1
    assert stats.cancel_too_late == 1


@windows_only
def test_acceptex_and_connectex_make_usable_sockets() -> None:
    async def main() -> Any:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setblocking(False)
        with listener, client:
            async with open_nursery() as nursery:
                accepted: list[int] = []

                async def accept() -> None:
                    accepted.append(await perform(AcceptOp(listener.fileno())))

                nursery.start_soon(accept)
                # ConnectEx needs a bound socket: the backend binds it.
                await perform(ConnectOp(client.fileno(), socket.AF_INET, listener.getsockname()))
            server = socket.socket(fileno=accepted[0])
            with server:
                # SO_UPDATE_CONNECT_CONTEXT / SO_UPDATE_ACCEPT_CONTEXT make the
                # ordinary calls work on both ends.
                assert client.getpeername() == listener.getsockname()
                assert server.getpeername() == client.getsockname()
                server.shutdown(socket.SHUT_WR)
                assert await perform(SendOp(client.fileno(), b"x")) == 1
            return _stats()

    run_on("iocp", main)


@windows_only
def test_connect_refused_is_connection_refused() -> None:
    async def main() -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
        probe.close()  # nothing listens there now
        client = socket.socket()
        with client:
            with pytest.raises(ConnectionRefusedError) as info:
                await perform(ConnectOp(client.fileno(), socket.AF_INET, address))
            assert info.value.errno == errno.ECONNREFUSED

    run_on("iocp", main)


@windows_only
def test_multishot_accept_is_emulated_with_acceptex_rounds() -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with listener:
            op = AcceptMultishotOp(listener.fileno())
            clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
            fds = [await perform(op) for _ in range(2)]
            cancel_operation(op)
            for fd in fds:
                close_fd(fd)
            for c in clients:
                c.close()
            assert not current_backend().capabilities.multishot

    run_on("iocp", main)


@windows_only
def test_datagrams_with_addresses() -> None:
    async def main() -> None:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with a, b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            sent = await perform(
                SendmsgOp(a.fileno(), [b"dgram"], family=socket.AF_INET, address=b.getsockname())
            )
            assert sent == 5
            buf = bytearray(16)
            n, ancdata, _flags, raw = await perform(RecvmsgOp(b.fileno(), [buf]))
            assert (n, bytes(buf[:n]), ancdata) == (5, b"dgram", [])
            port = a.getsockname()[1]
            assert raw[2:4] == port.to_bytes(2, "big")
            assert raw[4:8] == socket.inet_aton("127.0.0.1")

    run_on("iocp", main)


@windows_only
def test_readiness_waits_use_afd_polls_merged_per_socket() -> None:
    async def main() -> Any:
        a, b = _pair()
        with a, b:
            async with open_nursery() as nursery:
                woke: list[str] = []

                async def reader() -> None:
                    await wait_readable(b)
                    woke.append("r")

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                # A second waiter on the same socket: still one poll at a time.
                await wait_writable(b)
                assert woke == []
                a.send(b"!")
            assert woke == ["r"]
            return _stats()

    stats = run_on("iocp", main)
    assert stats.afd_polls >= 2
    assert stats.afd_handles == 1


@windows_only
def test_sockets_spread_over_several_afd_handles() -> None:
    async def main() -> Any:
        pairs = [_pair() for _ in range(5)]
        try:
            with CancelScope() as cs:
                async with open_nursery() as nursery:
                    for _, b in pairs:
                        nursery.start_soon(wait_readable, b)
                    await wait_all_tasks_blocked()
                    cs.cancel()
            return _stats()
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    stats = run_on("iocp", main, afd_group_size=2)
    assert stats.afd_handles == 3


def _under_wine() -> bool:
    import ctypes

    # Wine's ntdll exports wine_get_version; Windows' does not.
    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")  # type: ignore[attr-defined, unused-ignore]  # Windows-only ctypes name


@windows_only
def test_socket_used_by_an_earlier_run_still_completes() -> None:
    if _under_wine():
        pytest.skip("Wine lacks FileReplaceCompletionInformation (STATUS_NOT_IMPLEMENTED)")
    # A handle stays associated with the completion port of the run that
    # first used it; the next run must take it over, not wait forever.
    a, b = _pair()

    async def exchange() -> bytes:
        a.send(b"again")
        buf = bytearray(8)
        n = await perform(RecvOp(b.fileno(), buf))
        return bytes(buf[:n])

    with a, b:
        assert run_on("iocp", exchange) == b"again"
        assert run_on("iocp", exchange) == b"again"


@windows_only
def test_socket_of_an_earlier_run_fails_cleanly_where_it_cannot_move() -> None:
    # Where the handle cannot be moved to the new port (Wine), the op fails
    # with EINVAL at once instead of waiting on a port nobody reads.
    if not _under_wine():
        pytest.skip("Windows 8.1+ moves the handle (previous test)")
    a, b = _pair()

    async def first() -> None:
        a.send(b"1")
        assert await perform(RecvOp(b.fileno(), bytearray(1))) == 1

    async def second() -> None:
        with pytest.raises(OSError) as info:
            await perform(RecvOp(b.fileno(), bytearray(1)))
        assert info.value.errno == errno.EINVAL

    with a, b:
        run_on("iocp", first)
        run_on("iocp", second)


@windows_only
@pytest.mark.parametrize("backend", ["iocp", "afd"])
def test_truncated_datagram_is_delivered_truncated(backend: str) -> None:
    # WSARecv "fails" at once with WSAEMSGSIZE, yet the packet comes
    # (STATUS_BUFFER_OVERFLOW is a warning): the op waits for it and reports
    # the truncated length, as recv(2) does on Linux.
    async def main() -> Any:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with a, b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            a.sendto(b"0123456789" * 10, b.getsockname())
            a.sendto(b"abcdefghij" * 10, b.getsockname())
            buf = bytearray(10)
            assert await perform(RecvOp(b.fileno(), buf)) == 10
            assert buf == b"0123456789"
            n, _, flags, _ = await perform(RecvmsgOp(b.fileno(), [buf]))
            assert (n, bytes(buf)) == (10, b"abcdefghij")
            assert flags & getattr(socket, "MSG_TRUNC", 0x100)
            stats = _stats()
            assert stats.stale == 0
            return stats

    run_on(backend, main)


@windows_only
@pytest.mark.parametrize("backend", ["iocp", "afd"])
def test_echo_through_corral_sockets(backend: str) -> None:
    import corral
    import corral.socket as csocket

    async def main() -> None:
        listener = csocket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()

        async def echo() -> None:
            conn, _ = await listener.accept()
            with conn:
                while data := await conn.recv(4096):
                    view = memoryview(data)
                    while view:
                        view = view[await conn.send(view) :]

        with listener:
            async with open_nursery() as nursery:
                nursery.start_soon(echo)
                with csocket.socket() as client:
                    await client.connect(listener.getsockname())
                    for msg in (b"hello", b"x" * 200_000):
                        view, got = memoryview(msg), b""
                        while view:
                            view = view[await client.send(view) :]
                            got += await client.recv(65536)
                        while len(got) < len(msg):
                            got += await client.recv(65536)
                        assert got == msg

    corral.run(main, backend=backend, debug=True)


@windows_only
@pytest.mark.parametrize("backend", ["iocp", "afd"])
def test_a_send_cancelled_part_way_reports_what_it_sent(backend: str) -> None:
    # Small buffers, then a 64 KiB send that cannot finish: cancelling it
    # leaves part of it sent. IOCP reports STATUS_CANCELLED with the partial
    # count in InternalHigh; the op must report that count (the peer has
    # those bytes), not "cancelled, no effect".
    import corral
    import corral.socket as csocket
    from corral.testing import wait_all_tasks_blocked

    async def main() -> None:
        listener = csocket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = csocket.socket()
        with listener, client:
            async with open_nursery() as nursery:
                nursery.start_soon(client.connect, listener.getsockname())
                server, _ = await listener.accept()
            with server:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                reported = 0

                async def fill() -> None:
                    nonlocal reported
                    while True:
                        reported += await client.send(b"x" * 65536)

                async with open_nursery() as nursery:
                    nursery.start_soon(fill)
                    await wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()
                client.shutdown(socket.SHUT_WR)
                received = 0
                while data := await server.recv(65536):
                    received += len(data)
                assert received == reported > 0

    corral.run(main, backend=backend, debug=True)
