"""Every op record against a real kernel: what it returns, what it owns."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from iohelpers import run_on

from corral._io.ops import (
    AcceptOp,
    CancelFdOp,
    CloseOp,
    ConnectOp,
    FsyncOp,
    NopOp,
    OpenatOp,
    PollOp,
    RawOp,
    ReadOp,
    ReadPoolOp,
    ReadvOp,
    RecvmsgOp,
    RecvOp,
    SendmsgOp,
    ShutdownOp,
    SpliceOp,
    StatxOp,
    WriteOp,
    WritevOp,
)
from corral._io.perform import current_backend, perform

WINDOWS = sys.platform == "win32"
#: statx(2) and splice(2) are Linux's: the Windows backends answer ENOSYS
#: (corral's file API stats in a worker thread there, send_file copies).
linux_ops_only = pytest.mark.skipif(WINDOWS, reason="statx and splice are Linux ops")
needs_af_unix = pytest.mark.skipif(
    not hasattr(socket, "AF_UNIX"), reason="Windows CPython has no socket.AF_UNIX"
)


def test_file_ops(real_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"

    async def main() -> None:
        fd = await perform(OpenatOp(path, os.O_RDWR | os.O_CREAT, 0o600))
        assert os.get_inheritable(fd) is False
        assert await perform(WriteOp(fd, b"hello world", 0)) == 11
        assert await perform(WritevOp(fd, [b"12", b"345"], 11)) == 5
        assert await perform(FsyncOp(fd)) is None
        assert await perform(FsyncOp(fd, datasync=True)) is None
        buf = bytearray(5)
        assert await perform(ReadOp(fd, buf, 6)) == 5
        assert buf == b"world"
        a, b = bytearray(3), bytearray(4)
        assert await perform(ReadvOp(fd, [a, b], 0)) == 7
        assert (a, b) == (b"hel", b"lo w")
        lease = await perform(ReadPoolOp(fd, 11))
        assert lease is not None and bytes(lease) == b"12345"
        lease.release()
        assert await perform(ReadPoolOp(fd, 16)) is None  # EOF
        if WINDOWS:  # no statx: the op fails as a kernel without it would
            with pytest.raises(OSError) as info:
                await perform(StatxOp(path))
            assert info.value.errno == errno.ENOSYS
        else:
            st = await perform(StatxOp(path))
            assert st.st_size == 16
            assert st.st_ino == os.stat(path).st_ino
            assert st.st_mtime_ns == os.stat(path).st_mtime_ns
            fst = await perform(StatxOp("", dir_fd=fd))
            assert fst.st_ino == st.st_ino
        assert await perform(CloseOp(fd)) is None
        with pytest.raises(OSError) as info:
            await perform(OpenatOp(tmp_path / "missing", os.O_RDONLY))
        assert info.value.errno == errno.ENOENT

    run_on(real_backend, main)


def test_socket_ops(real_backend: str) -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setblocking(False)
        with listener, client:
            await perform(ConnectOp(client.fileno(), socket.AF_INET, listener.getsockname()))
            fd = await perform(AcceptOp(listener.fileno()))
            server = socket.socket(fileno=fd)
            with server:
                assert await perform(SendmsgOp(client.fileno(), [b"ab", b"cd"])) == 4
                buf = bytearray(8)
                n, anc, flags, _addr = await perform(RecvmsgOp(server.fileno(), [buf]))
                assert (n, bytes(buf[:4]), anc, flags) == (4, b"abcd", [], 0)
                assert await perform(ShutdownOp(client.fileno(), socket.SHUT_WR)) is None
                assert await perform(RecvmsgOp(server.fileno(), [buf])) == (0, [], 0, b"")

    run_on(real_backend, main)


@needs_af_unix
def test_unix_ancillary_data(real_backend: str) -> None:
    async def main() -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        r, w = os.pipe()
        with a, b:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))]
            assert await perform(SendmsgOp(a.fileno(), [b"fd"], anc)) == 2
            buf = bytearray(4)
            n, got, _flags, _addr = await perform(
                RecvmsgOp(b.fileno(), [buf], socket.CMSG_SPACE(4))
            )
            assert n == 2 and buf[:2] == b"fd"
            [(level, kind, data)] = got
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            passed = int.from_bytes(data[:4], "little")
            os.write(w, b"!")
            assert os.read(passed, 1) == b"!"
            for fd in (r, w, passed):
                os.close(fd)

    run_on(real_backend, main)


@linux_ops_only
def test_splice_poll_and_cancel_fd(real_backend: str) -> None:
    async def main() -> None:
        r, w = os.pipe()
        a, b = socket.socketpair()
        with a, b:
            os.write(w, b"spliced")
            assert await perform(SpliceOp(r, a.fileno(), 7)) == 7
            assert await perform(PollOp(b.fileno(), 0x1)) & 0x1
            assert b.recv(16) == b"spliced"
            backend = current_backend()
            idle = [RecvOp(b.fileno(), bytearray(1)) for _ in range(2)]
            for op in idle:
                backend.submit(op)
            await perform(NopOp())  # one loop turn: the recvs are in the kernel
            assert await perform(CancelFdOp(b.fileno())) == 2
            while not all(op.done for op in idle):
                await perform(NopOp())
            assert [op.res for op in idle] == [-errno.ECANCELED] * 2
        os.close(r)
        os.close(w)

    run_on(real_backend, main)


def test_raw_op_on_io_uring() -> None:
    from iohelpers import REAL_BACKENDS

    if "io_uring" not in REAL_BACKENDS:
        pytest.skip("io_uring unavailable here (a Linux kernel interface)")

    async def main() -> Any:
        assert current_backend().capabilities.raw_ops
        return await perform(RawOp(0))  # IORING_OP_NOP

    assert run_on("io_uring", main) == 0


@linux_ops_only
def test_statx_times_equal_os_stat(real_backend: str, tmp_path: Path) -> None:
    # Nanosecond times for which ns / 1e9 and sec + nsec * 1e-9 (what
    # os.stat computes) round differently in the last bit.
    times = [(1776067491, 974707781), (1658661498, 598229833), (1, 999999999), (0, 0)]
    paths = []
    for i, (sec, nsec) in enumerate(times):
        path = tmp_path / f"file{i}"
        path.write_bytes(b"x" * i)
        ns = sec * 10**9 + nsec
        os.utime(path, ns=(ns, ns))
        paths.append(path)
    paths.append(tmp_path)

    async def main() -> None:
        for path in paths:
            st = await perform(StatxOp(path))
            expected = os.stat(path)
            for field in ("st_atime", "st_mtime", "st_ctime"):
                assert getattr(st, field) == getattr(expected, field), (path, field)
            assert st == expected

    run_on(real_backend, main)


def _accept_peer_cases() -> list[tuple[int, str]]:
    cases = [(socket.AF_INET, "127.0.0.1")]
    if hasattr(socket, "AF_UNIX"):  # not on Windows CPython
        cases.append((socket.AF_UNIX, ""))
    if socket.has_ipv6:
        cases.append((socket.AF_INET6, "::1"))
    return cases


@pytest.mark.parametrize(("family", "host"), _accept_peer_cases())
def test_accept_reports_the_peer_address(
    real_backend: str, family: int, host: str, tmp_path: Path
) -> None:
    async def main() -> None:
        listener = socket.socket(family)
        client = socket.socket(family)
        with listener, client:
            if family == getattr(socket, "AF_UNIX", None):
                listener.bind(str(tmp_path / "listener"))
                client.bind(str(tmp_path / "client"))
            else:
                try:
                    listener.bind((host, 0))
                except OSError:  # pragma: no cover - no IPv6 loopback
                    pytest.skip("no loopback for this family")
            listener.listen()
            client.connect(listener.getsockname())
            op = AcceptOp(listener.fileno())
            assert op.peer_address is None
            fd = await perform(op)
            with socket.socket(fileno=fd) as server:
                # The address socket.accept() would have returned.
                assert op.peer_address == server.getpeername() == client.getsockname()

    run_on(real_backend, main)


@needs_af_unix
def test_accept_peer_address_of_an_unnamed_unix_peer(real_backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        listener = socket.socket(socket.AF_UNIX)
        client = socket.socket(socket.AF_UNIX)
        with listener, client:
            listener.bind(str(tmp_path / "listener"))
            listener.listen()
            client.connect(listener.getsockname())
            op = AcceptOp(listener.fileno())
            fd = await perform(op)
            with socket.socket(fileno=fd) as server:
                assert op.peer_address == server.getpeername() == ""

    run_on(real_backend, main)


def test_decode_sockaddr_round_trips() -> None:
    from corral._io._sockaddr import decode_sockaddr, encode_sockaddr

    assert decode_sockaddr(b"") is None
    for family, address in [
        (socket.AF_INET, ("10.1.2.3", 8080)),
        (socket.AF_INET6, ("fe80::1", 443, 7, 2)),
        *(
            [(socket.AF_UNIX, "/tmp/sock"), (socket.AF_UNIX, b"\0abstract")]
            if hasattr(socket, "AF_UNIX")  # not on Windows CPython
            else []
        ),
    ]:
        assert decode_sockaddr(encode_sockaddr(family, address)) == address
