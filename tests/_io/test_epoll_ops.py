"""The epoll adapter, per op kind (corral/_io/_epoll_ops.py): connect and
accept, messages, files, splice, pool receives (a buffer only when data is
there, backpressure, emulated multishot), fd numbers reused behind our back,
fds epoll refuses. The adapter's loop, lines and cancellation are in
test_epoll.py."""

from __future__ import annotations

import array
import errno
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from epoll_helpers import epoll, run, socketpair

from corral._core import (
    CancelScope,
    EndOfChannel,
    cancel_shielded_checkpoint,
    open_nursery,
    wait_all_tasks_blocked,
)
from corral._io.ops import (
    AcceptMultishotOp,
    AcceptOp,
    CloseOp,
    ConnectOp,
    FsyncOp,
    OpenatOp,
    PollOp,
    RawOp,
    ReadOp,
    ReadPoolOp,
    ReadvOp,
    RecvmsgOp,
    RecvMultishotOp,
    RecvOp,
    RecvPoolOp,
    SendmsgOp,
    SendOp,
    ShutdownOp,
    SpliceOp,
    StatxOp,
    WriteOp,
    WritevOp,
)
from corral._io.perform import cancel_operation, perform
from corral._io.pool import Lease


@pytest.fixture
def tmp_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789")
    yield path


# -- connect and accept -----------------------------------------------------------


def test_connect_accept_and_refused() -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        client = socket.socket()
        with listener, client:
            async with open_nursery() as nursery:
                accepted: list[int] = []

                async def accept() -> None:
                    accepted.append(await perform(AcceptOp(listener.fileno())))

                nursery.start_soon(accept)
                await wait_all_tasks_blocked()
                assert (
                    await perform(ConnectOp(client.fileno(), socket.AF_INET, ("127.0.0.1", port)))
                    is None
                )
            with socket.socket(fileno=accepted[0]) as server_side:
                assert not os.get_inheritable(server_side.fileno())
                assert server_side.getpeername() == client.getsockname()
            # connect set O_NONBLOCK on the fd (it has no per-call flag).
            assert not os.get_blocking(client.fileno())

        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        with socket.socket() as refused:
            with pytest.raises(OSError) as info:
                await perform(ConnectOp(refused.fileno(), socket.AF_INET, ("127.0.0.1", dead_port)))
            assert info.value.errno == errno.ECONNREFUSED

    run(main)


def test_multishot_accept_streams_connections() -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        addr = listener.getsockname()
        clients = [socket.create_connection(addr) for _ in range(3)]
        try:
            op = AcceptMultishotOp(listener.fileno())
            fds = [await perform(op) for _ in range(3)]
            assert len(set(fds)) == 3
            for fd in fds:
                os.close(fd)
            cancel_operation(op)
            with pytest.raises(EndOfChannel):
                await perform(op)
            assert op.done
        finally:
            for c in clients:
                c.close()
            listener.close()

    run(main)


# -- messages --------------------------------------------------------------------


def test_sendmsg_recvmsg_with_fds_and_addresses() -> None:
    async def main() -> None:
        a, b = socketpair()
        r, w = os.pipe()
        with a, b:
            fds = array.array("i", [r]).tobytes()
            sent = await perform(
                SendmsgOp(a.fileno(), [b"ab", b"cd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            )
            assert sent == 4
            buf = bytearray(8)
            n, anc, flags, address = await perform(
                RecvmsgOp(b.fileno(), [buf], socket.CMSG_SPACE(4))
            )
            assert (n, bytes(buf[:4]), flags, address) == (4, b"abcd", 0, b"")
            [(level, type_, data)] = anc
            assert (level, type_) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            os.close(int.from_bytes(data[:4], "little"))
        os.close(r)
        os.close(w)

        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u1,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u2,
        ):
            u1.bind(("127.0.0.1", 0))
            u2.bind(("127.0.0.1", 0))
            await perform(
                SendmsgOp(u1.fileno(), [b"dgram"], (), 0, socket.AF_INET, u2.getsockname())
            )
            buf = bytearray(16)
            n, _, _, address = await perform(RecvmsgOp(u2.fileno(), [buf]))
            assert bytes(buf[:n]) == b"dgram"
            host, port = u1.getsockname()
            assert address == (
                socket.AF_INET.to_bytes(2, "little")
                + port.to_bytes(2, "big")
                + socket.inet_aton(host)
                + b"\0" * 8
            )

    run(main)


# -- files: synchronous on epoll ------------------------------------------------------


def test_file_ops(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"

    async def main() -> None:
        fd = await perform(OpenatOp(path, os.O_RDWR | os.O_CREAT, 0o600))
        assert not os.get_inheritable(fd)
        assert await perform(WriteOp(fd, b"hello world")) == 11
        assert await perform(WritevOp(fd, [b"!", b"?"], 0)) == 2
        buf = bytearray(5)
        assert await perform(ReadOp(fd, buf, 6)) == 5
        assert buf == b"world"
        b1, b2 = bytearray(2), bytearray(3)
        assert await perform(ReadvOp(fd, [b1, b2], 0)) == 5
        assert (bytes(b1), bytes(b2)) == (b"!?", b"llo")
        lease = await perform(ReadPoolOp(fd, 0))
        assert lease is not None
        with lease:
            assert bytes(lease.data) == b"!?llo world"
        assert await perform(ReadPoolOp(fd, 100)) is None
        assert await perform(FsyncOp(fd, datasync=True)) is None
        st = await perform(StatxOp("", dir_fd=fd))
        ref = os.stat(path)
        assert (st.st_size, st.st_mode, st.st_ino, st.st_dev) == (
            11, ref.st_mode, ref.st_ino, ref.st_dev,
        )  # fmt: skip
        assert st.st_mtime_ns == ref.st_mtime_ns
        assert (await perform(StatxOp(path))).st_size == 11
        assert await perform(CloseOp(fd)) is None
        with pytest.raises(FileNotFoundError):
            await perform(StatxOp(tmp_path / "missing"))
        with pytest.raises(FileNotFoundError):
            await perform(OpenatOp(tmp_path / "missing", os.O_RDONLY))

    run(main)
    assert path.read_bytes() == b"!?llo world"


def test_pipe_read_waits_and_sets_nonblocking() -> None:
    async def main() -> None:
        r, w = os.pipe()
        try:
            buf = bytearray(8)
            async with open_nursery() as nursery:

                async def reader() -> None:
                    assert await perform(ReadOp(r, buf)) == 3

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                assert not os.get_blocking(r)
                os.write(w, b"abc")
            assert buf[:3] == b"abc"
        finally:
            os.close(r)
            os.close(w)

    run(main)


def test_splice_between_pipes() -> None:
    async def main() -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        try:
            async with open_nursery() as nursery:
                moved: list[int] = []

                async def splice() -> None:
                    moved.append(await perform(SpliceOp(r1, w2, 100)))

                nursery.start_soon(splice)
                await wait_all_tasks_blocked()
                assert moved == []
                os.write(w1, b"spliced")
            assert moved == [7]
            assert os.read(r2, 100) == b"spliced"
        finally:
            for fd in (r1, w1, r2, w2):
                os.close(fd)

    run(main)


def test_shutdown_and_raw_op() -> None:
    async def main() -> None:
        a, b = socketpair()
        with a, b:
            assert await perform(ShutdownOp(a.fileno(), socket.SHUT_WR)) is None
            assert b.recv(1) == b""
        with pytest.raises(OSError) as info:
            await perform(RawOp(0))
        assert info.value.errno == errno.ENOSYS

    run(main)


def test_fd_number_reused_by_another_family() -> None:
    # The adapter caches a socket object per fd number; a number reused by a
    # socket of another family must not be parsed with the old family.
    async def main() -> None:
        a, b = socketpair()
        with a:
            number = b.fileno()
            assert await perform(SendOp(number, b"x")) == 1  # caches a proxy
            b.close()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if u.fileno() != number:
                os.dup2(u.fileno(), number)
                u.close()
                u = socket.socket(fileno=number)
            with u, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                assert u.fileno() == number
                peer.bind(("127.0.0.1", 0))
                sent = await perform(
                    SendmsgOp(number, [b"v4"], (), 0, socket.AF_INET, peer.getsockname())
                )
                assert sent == 2
                assert peer.recv(4) == b"v4"

    run(main)


def test_pool_read_of_a_regular_file_with_the_pool_empty(tmp_file: Path) -> None:
    # epoll refuses regular files (EPERM): they count as always ready, so a
    # pool read with no free buffer goes straight to backpressure.
    async def main() -> None:
        pool = epoll().pool
        held = await pool.lease()
        with open(tmp_file, "rb") as f:
            got: list[bytes] = []
            async with open_nursery() as nursery:

                async def read() -> None:
                    lease = await perform(ReadPoolOp(f.fileno(), 0))
                    assert lease is not None
                    with lease:
                        got.append(bytes(lease.data))

                nursery.start_soon(read)
                await wait_all_tasks_blocked()
                assert pool.statistics().waiting == 1
                held.release()
            assert got == [b"0123456789"]

    run(main, buffers=1)


def test_ops_on_a_closed_fd_fail_with_ebadf() -> None:
    async def main() -> None:
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        for op in (RecvOp(r, bytearray(1)), PollOp(r, select.POLLIN), ReadOp(r, bytearray(1))):
            with pytest.raises(OSError) as info:
                await perform(op)
            assert info.value.errno == errno.EBADF

    run(main)


def test_recv_on_a_non_socket_fails_with_enotsock(tmp_file: Path) -> None:
    async def main() -> None:
        with open(tmp_file, "rb") as f:
            with pytest.raises(OSError) as info:
                await perform(RecvOp(f.fileno(), bytearray(1)))
            assert info.value.errno == errno.ENOTSOCK

    run(main)


def test_multishot_recv_keeps_datagram_boundaries() -> None:
    async def main() -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            for i in range(12):  # more than one turn's budget
                tx.sendto(b"d%d" % i, rx.getsockname())
            op = RecvMultishotOp(rx.fileno())
            got = []
            for _ in range(12):
                lease = await perform(op)
                with lease:
                    got.append(bytes(lease.data))
            assert got == [b"d%d" % i for i in range(12)]
            cancel_operation(op)
            with pytest.raises(EndOfChannel):
                await perform(op)

    run(main)


# -- the pool: leases only when data is there, backpressure ----------------------------


def test_idle_pool_receives_hold_no_buffer() -> None:
    async def main() -> None:
        pairs = [socketpair() for _ in range(8)]
        pool = epoll().pool
        leases: list[Lease] = []
        async with open_nursery() as nursery:

            async def recv(sock: socket.socket) -> None:
                lease = await perform(RecvPoolOp(sock.fileno()))
                assert lease is not None
                leases.append(lease)

            for _, b in pairs:
                nursery.start_soon(recv, b)
            await wait_all_tasks_blocked()
            assert pool.statistics().in_use == 0
            pairs[3][0].send(b"only me")
            await wait_all_tasks_blocked()
            assert pool.statistics().in_use == 1
            assert [bytes(x.data) for x in leases] == [b"only me"]
            for a, _ in pairs:
                a.send(b"!")
        assert pool.statistics().in_use == 8
        for lease in leases:
            lease.release()
        for a, b in pairs:
            a.close()
            b.close()

    run(main, buffers=16)


def test_pool_eof_takes_no_buffer() -> None:
    async def main() -> None:
        a, b = socketpair()
        with b:
            a.close()
            assert await perform(RecvPoolOp(b.fileno())) is None
            assert epoll().pool.statistics().high_water == 0

    run(main)


def test_backpressure_when_the_pool_is_empty() -> None:
    async def main() -> None:
        pool = epoll().pool
        held = [await pool.lease(), await pool.lease()]
        a, b = socketpair()
        with a, b:
            a.send(b"data")
            got: list[bytes] = []
            async with open_nursery() as nursery:

                async def recv() -> None:
                    lease = await perform(RecvPoolOp(b.fileno()))
                    assert lease is not None
                    with lease:
                        got.append(bytes(lease.data))

                nursery.start_soon(recv)
                await wait_all_tasks_blocked()
                stats = pool.statistics()
                assert got == []
                assert stats.waiting == 1
                assert stats.backpressure_waits == 1
                held.pop().release()
            assert got == [b"data"]
            held.pop().release()

    run(main, buffers=2)


def test_cancel_while_parked_for_a_buffer() -> None:
    async def main() -> None:
        pool = epoll().pool
        held = await pool.lease()
        a, b = socketpair()
        with a, b:
            a.send(b"data")
            with CancelScope() as cs:
                async with open_nursery() as nursery:

                    async def canceller() -> None:
                        await wait_all_tasks_blocked()
                        assert pool.statistics().waiting == 1
                        cs.cancel()

                    nursery.start_soon(canceller)
                    await perform(RecvPoolOp(b.fileno()))
            assert cs.cancelled_caught
            assert pool.statistics().waiting == 0
            held.release()
            assert b.recv(8) == b"data"

    run(main, buffers=1)


def test_multishot_recv_streams_until_eof() -> None:
    async def main() -> None:
        a, b = socketpair()
        with b:
            op = RecvMultishotOp(b.fileno())
            chunks: list[bytes] = []
            async with open_nursery() as nursery:

                async def reader() -> None:
                    while True:
                        try:
                            lease = await perform(op)
                        except EndOfChannel:
                            return
                        with lease:
                            chunks.append(bytes(lease.data))

                nursery.start_soon(reader)
                for part in (b"one", b"two", b"three"):
                    await wait_all_tasks_blocked()
                    a.send(part)
                await wait_all_tasks_blocked()
                a.close()
            assert b"".join(chunks) == b"onetwothree"
            assert op.done and op.res == 0
            assert epoll().pool.statistics().in_use == 0

    run(main)


def test_multishot_recv_big_stream_with_tiny_pool() -> None:
    # More data than the pool holds: the stream parks on ENOBUFS and goes on
    # as the reader releases buffers; nothing is lost or reordered.
    async def main() -> None:
        a, b = socketpair()
        payload = bytes(range(256)) * 64  # 16 KiB
        with b:
            op = RecvMultishotOp(b.fileno())
            received = bytearray()
            async with open_nursery() as nursery:

                async def reader() -> None:
                    while True:
                        try:
                            lease = await perform(op)
                        except EndOfChannel:
                            return
                        with lease:
                            received.extend(lease.data)
                        await cancel_shielded_checkpoint()

                nursery.start_soon(reader)
                a.sendall(payload)
                a.close()
            assert bytes(received) == payload
            assert epoll().pool.statistics().backpressure_waits > 0

    run(main, buffers=2, buffer_size=512)
