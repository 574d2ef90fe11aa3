"""corral.socket on every real backend available here.

Each test runs its body with ``on(backend, fn)``: a fresh ``corral.run`` on
that backend, with the pool's debug canaries on (a buffer written after
release, or a lease still held at the end of the run, fails the test).
Scripted cancel races on the fake kernel are in test_socket_races.py.
"""

from __future__ import annotations

import errno
import os
import re
import socket as stdlib_socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
import corral.socket as csocket
from corral import testing
from corral._io import _ring
from corral._io.perform import current_backend

BACKENDS = []
if _ring.unavailable_reason(check_kernel=True) is None:
    BACKENDS.append("io_uring")
try:
    import corral._io.epoll

    BACKENDS.append("epoll")
except ImportError:
    pass
if sys.platform == "win32":
    BACKENDS += ["iocp", "afd"]

have_ipv6 = True
try:
    with stdlib_socket.socket(stdlib_socket.AF_INET6) as _s6:
        _s6.bind(("::1", 0))
except OSError:  # pragma: no cover - machines without IPv6 loopback
    have_ipv6 = False
needs_ipv6 = pytest.mark.skipif(not have_ipv6, reason="no IPv6 loopback")

WINDOWS = sys.platform == "win32"
needs_af_unix = pytest.mark.skipif(
    not hasattr(stdlib_socket, "AF_UNIX"), reason="Windows CPython has no socket.AF_UNIX"
)
#: Windows cannot read a socket's blocking mode back (os.get_blocking takes
#: only C runtime fds there), so that check is Linux-only.
can_read_blocking = not WINDOWS


def _under_wine() -> bool:
    if not WINDOWS:
        return False
    import ctypes

    # Wine's ntdll exports wine_get_version; Windows' does not.
    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")  # type: ignore[attr-defined, unused-ignore]  # Windows-only ctypes name


UNDER_WINE = _under_wine()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def on(backend: str, fn: Callable[[], Awaitable[Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("debug", True)
    kwargs.setdefault("pool_buffer_size", 4096)
    kwargs.setdefault("pool_buffers", 64)
    return corral.run(fn, backend=backend, **kwargs)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def is_socket(fd: int) -> bool:
    """Whether ``fd`` still names an open socket (portable: Windows has no
    /proc to count fds, but a closed SOCKET fails getsockopt)."""
    try:
        # (Windows' constructor itself rejects a closed handle: WSAENOTSOCK.)
        probe = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM, 0, fileno=fd)
    except OSError:
        return False
    try:
        probe.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_TYPE)
    except OSError:
        return False
    finally:
        probe.detach()
    return True


async def tcp_pair(family: int = stdlib_socket.AF_INET) -> tuple[Any, Any]:
    host = "127.0.0.1" if family == stdlib_socket.AF_INET else "::1"
    with csocket.socket(family) as listener:
        await listener.bind((host, 0))
        listener.listen(1)
        client = csocket.socket(family)
        async with corral.open_nursery() as nursery:
            nursery.start_soon(client.connect, listener.getsockname())
            server, address = await listener.accept()
        assert address == client.getsockname()
        return client, server


# -- the module's shape ----------------------------------------------------


def test_module_has_trio_names() -> None:
    trio_socket = pytest.importorskip("trio.socket")
    theirs = {n for n in dir(trio_socket) if not n.startswith("_")}
    ours = {n for n in dir(csocket) if not n.startswith("_")}
    assert theirs - ours == set()
    assert csocket.AF_INET == stdlib_socket.AF_INET
    assert csocket.SOL_SOCKET == stdlib_socket.SOL_SOCKET
    assert csocket.gaierror is stdlib_socket.gaierror


def test_socket_type_is_abstract() -> None:
    with pytest.raises(TypeError, match=r"^SocketType is an abstract class; use corral.socket"):
        csocket.SocketType()


def test_from_stdlib_socket_rejects_subclasses() -> None:
    class Sub(stdlib_socket.socket):
        pass

    with (
        Sub() as s,
        pytest.raises(TypeError, match=r"^expected object of type 'socket.socket', not 'Sub'$"),
    ):
        csocket.from_stdlib_socket(s)


def test_sync_basics() -> None:
    # Sockets can be made and used synchronously outside a run.
    sock = csocket.socket()
    try:
        assert isinstance(sock, csocket.SocketType)
        assert sock.family == stdlib_socket.AF_INET
        assert sock.type == stdlib_socket.SOCK_STREAM
        assert sock.proto == 0
        if can_read_blocking:
            assert not os.get_blocking(sock.fileno())
        assert not sock.get_inheritable()
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        assert sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR)
        assert len(sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 4)) == 4
        with pytest.raises(TypeError, match="must not be None when specifying optlen"):
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, None)
        with pytest.raises(TypeError, match="must be None when specifying optlen"):
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1, 4)
        assert repr(sock).startswith("<corral.socket.socket fd=")
        dup = sock.dup()
        with dup:
            assert dup.fileno() != sock.fileno()
            assert dup.family == sock.family
        assert dup.fileno() == -1
    finally:
        sock.close()
    assert sock.fileno() == -1
    assert "[closed]" in repr(sock)
    sock.close()  # idempotent


def test_fromfd_and_fileno_sniff_the_real_family() -> None:
    with stdlib_socket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM) as raw:
        with csocket.fromfd(raw.fileno(), stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM) as s:
            if sys.platform == "linux":
                assert s.family == stdlib_socket.AF_INET6
                assert s.type == stdlib_socket.SOCK_DGRAM
            else:  # as Trio: only Linux can read the family back (SO_DOMAIN)
                assert s.family == stdlib_socket.AF_INET
            assert s.fileno() != raw.fileno()
    if not hasattr(stdlib_socket, "AF_UNIX"):
        return  # Windows CPython has no socket.AF_UNIX
    raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_DGRAM)
    with csocket.socket(fileno=raw.detach()) as s:
        assert s.family == stdlib_socket.AF_UNIX
        assert s.type == stdlib_socket.SOCK_DGRAM


def test_detach() -> None:
    sock = csocket.socket()
    fd = sock.fileno()
    assert sock.detach() == fd
    assert sock.fileno() == -1
    stdlib_socket.close(fd)  # os.close cannot close a Windows socket


# -- stream basics ----------------------------------------------------------


def test_socketpair_send_recv(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            assert a.family == getattr(stdlib_socket, "AF_UNIX", stdlib_socket.AF_INET)
            assert await a.send(b"hello world") == 11
            assert await b.recv(5) == b"hello"
            # The rest of the pool buffer was stashed; nothing was lost.
            assert b.is_readable()
            assert await b.recv(100) == b" world"
            assert not b.is_readable()
            await a.send(bytearray(b"abc"))
            await a.send(memoryview(b"xxdefxx")[2:5])
            got = b""
            while len(got) < 6:
                got += await b.recv(10)
            assert got == b"abcdef"
            a.shutdown(stdlib_socket.SHUT_WR)
            assert a.did_shutdown_SHUT_WR
            assert await b.recv(10) == b""
            # Half-closed: the other direction still works.
            await b.send(b"back")
            assert await a.recv(10) == b"back"

    on(backend, main)


def test_zero_length_receives(backend: str) -> None:
    # As recv(2) on a non-blocking socket: 0 bytes at once, data or not.
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            assert await b.recv(0) == b""
            assert await b.recv_into(bytearray(0)) == 0
            assert await b.recvfrom(0) == (b"", None)
            await a.send(b"data")
            assert await b.recv(0) == b""
            assert await b.recv(10) == b"data"

    on(backend, main)


def test_recv_small_pieces_of_a_big_stream(backend: str) -> None:
    # recv(n) smaller than what arrives: every byte comes back, in order,
    # through the stash (and the stash never outlives the data: the debug
    # pool checks every lease came back).
    async def main() -> None:
        a, b = csocket.socketpair()
        payload = os.urandom(50_000)
        with a, b:
            async with corral.open_nursery() as nursery:

                async def sender() -> None:
                    view = memoryview(payload)
                    while view:
                        view = view[await a.send(view) :]

                nursery.start_soon(sender)
                got = bytearray()
                sizes = [1, 7, 100, 3000, 5000, 13]
                i = 0
                while len(got) < len(payload):
                    got += await b.recv(sizes[i % len(sizes)])
                    i += 1
            assert got == payload

    on(backend, main)


@pytest.mark.parametrize("family", ["ipv4", pytest.param("ipv6", marks=needs_ipv6)])
def test_tcp_connect_accept(backend: str, family: str) -> None:
    fam = stdlib_socket.AF_INET if family == "ipv4" else stdlib_socket.AF_INET6

    async def main() -> None:
        client, server = await tcp_pair(fam)
        with client, server:
            assert server.family == fam
            if can_read_blocking:
                assert not os.get_blocking(server.fileno())
            assert not server.get_inheritable()
            assert server.getpeername() == client.getsockname()
            await client.send(b"ping")
            assert await server.recv(10) == b"ping"
            await server.send(b"pong")
            assert await client.recv(10) == b"pong"

    on(backend, main)


@pytest.mark.skipif(UNDER_WINE, reason="Wine sends no RST on a zero-linger close (EOF instead)")
def test_tcp_peer_reset(backend: str) -> None:
    async def main() -> None:
        client, server = await tcp_pair()
        with server:
            # SO_LINGER with a zero timeout: close sends RST, not FIN.
            # (struct linger: two ints on Linux, two u_shorts on Windows.)
            linger = struct.pack("HH" if WINDOWS else "ii", 1, 0)
            client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, linger)
            await server.send(b"unread")  # unread data also forces a reset
            await testing.wait_all_tasks_blocked()
            client.close()
            with pytest.raises(ConnectionResetError):
                await server.recv(10)

    on(backend, main)


def test_connect_errors(backend: str) -> None:
    async def main() -> None:
        # A free port: bind, note it, close.
        with stdlib_socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        sock = csocket.socket()
        with sock:
            # (The text is os.strerror's: Windows has none for Winsock codes.)
            refused = re.escape(os.strerror(errno.ECONNREFUSED))
            with pytest.raises(
                ConnectionRefusedError,
                match=rf"^\[Errno {errno.ECONNREFUSED}\] Error connecting to "
                rf"\('127.0.0.1', {port}\): {refused}$",
            ):
                await sock.connect(("127.0.0.1", port))
        if hasattr(stdlib_socket, "AF_UNIX"):  # not on Windows CPython
            with csocket.socket(stdlib_socket.AF_UNIX) as usock:
                with pytest.raises(
                    FileNotFoundError, match=r"^\[Errno 2\] No such file or directory$"
                ):
                    await usock.connect("/nonexistent/corral/socket")
        with csocket.socket() as sock:
            with pytest.raises(ValueError, match=r"^address should be a \(host, port\) tuple$"):
                await sock.connect("/some/path")
            with pytest.raises(ValueError, match=r"^address should be a \(host, port\) tuple$"):
                await sock.connect(("127.0.0.1", 1, 2))
        with csocket.socket(stdlib_socket.AF_INET6) as sock:
            with pytest.raises(ValueError, match=r"^address should be a \(host, port, \[flowinfo"):
                await sock.connect(("::1",))

    on(backend, main)


def test_cancelled_connect_closes_the_socket(backend: str) -> None:
    async def main() -> None:
        sock = csocket.socket()
        # A connect that hangs, with all traffic on this machine: the
        # listener's backlog is full.
        with csocket.socket() as listener:
            await listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            fillers = []
            try:
                for _ in range(8):
                    filler = stdlib_socket.socket()
                    filler.setblocking(False)
                    try:
                        filler.connect(listener.getsockname())
                    except BlockingIOError:
                        pass
                    fillers.append(filler)
                # Cancelled before it starts, and cancelled in flight (the
                # listener's queue is full: the handshake does not finish).
                with corral.CancelScope() as scope:
                    scope.cancel()
                    await sock.connect(listener.getsockname())
                assert scope.cancelled_caught
                assert sock.fileno() == -1
                sock = csocket.socket()
                async with corral.open_nursery() as nursery:
                    with corral.CancelScope() as scope:

                        async def cancel_when_blocked() -> None:
                            await testing.wait_all_tasks_blocked()
                            scope.cancel()

                        nursery.start_soon(cancel_when_blocked)
                        await sock.connect(listener.getsockname())
                assert scope.cancelled_caught
                assert sock.fileno() == -1
            finally:
                for filler in fillers:
                    filler.close()

    on(backend, main)


# -- closed sockets and bad input ------------------------------------------


def test_closed_socket_raises_ebadf(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        b.close()
        a.close()
        for call in (
            lambda: a.recv(1),
            lambda: a.recv_into(bytearray(1)),
            lambda: a.recvfrom(1),
            lambda: a.recvmsg(1),
            lambda: a.send(b"x"),
            lambda: a.sendmsg([b"x"]),
            lambda: a.accept(),
            lambda: a.wait_writable(),
            # (socketpair is AF_INET on Windows.)
            lambda: a.connect(
                ("127.0.0.1", 1) if a.family == stdlib_socket.AF_INET else "/tmp/nowhere"
            ),
        ):
            with pytest.raises(OSError) as info:
                await call()
            assert info.value.errno == errno.EBADF

    on(backend, main)


def test_bad_input(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            with pytest.raises(ValueError, match=r"^negative buffersize in recv$"):
                await a.recv(-1)
            with pytest.raises(TypeError, match=r"cannot be interpreted as an integer"):
                await a.recv("x")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"^a bytes-like object is required, not 'str'$"):
                await a.send("x")  # type: ignore[arg-type]
            with pytest.raises(
                TypeError,
                match=r"^recv_into\(\) argument 1 must be read-write bytes-like object, not bytes$",
            ):
                await a.recv_into(b"xx")
            with pytest.raises(ValueError, match=r"^buffer too small for requested bytes$"):
                await a.recv_into(bytearray(2), 5)
            with pytest.raises(ValueError, match=r"^negative buffersize in recv_into$"):
                await a.recv_into(bytearray(2), -1)
            with pytest.raises(ValueError, match=r"^negative buffersize in recvfrom$"):
                await a.recvfrom(-1)
            with pytest.raises(
                ValueError, match=r"^nbytes is greater than the length of the buffer$"
            ):
                await a.recvfrom_into(bytearray(2), 5)
            with pytest.raises(ValueError, match=r"^negative buffer size in recvmsg\(\)$"):
                await a.recvmsg(-1)
            with pytest.raises(ValueError, match=r"^invalid ancillary data buffer length$"):
                await a.recvmsg(1, -1)
            with pytest.raises(
                TypeError, match=r"^recvmsg_into\(\) argument 1 must be an iterable$"
            ):
                await a.recvmsg_into(5)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"iterable of single-segment read-write buffers$"):
                await a.recvmsg_into([b"x"])
            with pytest.raises(TypeError, match=r"^sendto\(\) takes 2 or 3 arguments \(1 given\)$"):
                await a.sendto(b"x")
            with pytest.raises(TypeError, match=r"^a bytes-like object is required, not 'str'$"):
                await a.sendmsg(["x"])  # type: ignore[list-item]
            if a.family != stdlib_socket.AF_INET:  # socketpair is AF_INET on Windows
                with pytest.raises(
                    TypeError, match=r"AF_UNIX address must be a str, bytes or path"
                ):
                    await a.connect(("127.0.0.1", 80))
            # Nothing above left a slot busy or a byte behind.
            await b.send(b"ok")
            assert await a.recv(2) == b"ok"

    on(backend, main)


# -- concurrency and close -------------------------------------------------


def test_concurrent_receivers_are_busy(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            async with corral.open_nursery() as nursery:
                nursery.start_soon(a.recv, 10)
                await testing.wait_all_tasks_blocked()
                with pytest.raises(
                    corral.BusyResourceError,
                    match=r"^another task is already reading / writing this fd$",
                ):
                    await a.recv(10)
                with pytest.raises(corral.BusyResourceError):
                    await a.recv_into(bytearray(10))
                await b.send(b"x")

    on(backend, main)


async def fill_send_buffer(sock: Any, peer: Any = None) -> None:
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
    if peer is not None:
        # A TCP pair (socketpair on Windows): a fixed receive buffer, or the
        # kernel's autotuning opens the window again after the fill.
        peer.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 4096)
    while True:
        with corral.move_on_after(0.05):
            await sock.send(b"x" * 65536)
            continue
        return


def test_close_wakes_waiters_with_closed_resource_error(backend: str) -> None:
    async def main() -> None:
        before = -1 if WINDOWS else fd_count()
        a, b = csocket.socketpair()
        c, d = csocket.socketpair()
        listener = csocket.socket()
        fds = [s.fileno() for s in (a, b, c, d, listener)]
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        await fill_send_buffer(a, b)
        await fill_send_buffer(c, d)
        closed: list[str] = []

        async def expect_closed(name: str, fn: Callable[[], Awaitable[Any]]) -> None:
            with pytest.raises(corral.ClosedResourceError, match=r"^another task closed this fd$"):
                await fn()
            closed.append(name)

        async with corral.open_nursery() as nursery:
            # a's send buffer is full and nobody sends to a: both its reader
            # and its writer slots are busy when it is closed.
            nursery.start_soon(expect_closed, "recv", lambda: a.recv(10))
            nursery.start_soon(expect_closed, "send", lambda: a.send(b"y" * 65536))
            nursery.start_soon(expect_closed, "accept", listener.accept)
            nursery.start_soon(expect_closed, "wait_writable", c.wait_writable)
            await testing.wait_all_tasks_blocked()
            for sock in (a, b, c, listener):
                sock.close()
                assert sock.fileno() == -1
        assert sorted(closed) == ["accept", "recv", "send", "wait_writable"]
        d.close()
        # Every fd was really closed once its ops finished.
        if WINDOWS:
            assert not [fd for fd in fds if is_socket(fd)]
        else:
            assert fd_count() == before

    on(backend, main)


# -- datagrams, Unix sockets, ancillary data ---------------------------------


@pytest.mark.parametrize("family", ["ipv4", pytest.param("ipv6", marks=needs_ipv6)])
def test_udp_sendto_recvfrom(backend: str, family: str) -> None:
    fam = stdlib_socket.AF_INET if family == "ipv4" else stdlib_socket.AF_INET6
    host = "127.0.0.1" if family == "ipv4" else "::1"

    async def main() -> None:
        with (
            csocket.socket(fam, stdlib_socket.SOCK_DGRAM) as server,
            csocket.socket(fam, stdlib_socket.SOCK_DGRAM) as client,
        ):
            await server.bind((host, 0))
            await client.bind((host, 0))
            assert await client.sendto(b"datagram one", server.getsockname()) == 12
            data, address = await server.recvfrom(100)
            assert data == b"datagram one"
            assert address == client.getsockname()
            # A datagram longer than the request is truncated, not stashed.
            await client.sendto(b"0123456789", 0, server.getsockname())
            assert await server.recv(4) == b"0123"
            await client.sendto(b"abc", server.getsockname())
            buf = bytearray(10)
            n, address = await server.recvfrom_into(buf)
            assert (bytes(buf[:n]), address) == (b"abc", client.getsockname())
            await client.sendmsg([b"sc", b"at", b"ter"], [], 0, server.getsockname())
            data, ancdata, flags, address = await server.recvmsg(100)
            assert (data, ancdata, flags, address) == (b"scatter", [], 0, client.getsockname())
            await client.sendto(b"truncated", server.getsockname())
            data, _, flags, _ = await server.recvmsg(3)
            assert data == b"tru"
            assert flags & stdlib_socket.MSG_TRUNC
            # A connected datagram socket: send/recv without addresses.
            await client.connect(server.getsockname())
            await client.send(b"connected")
            assert await server.recv(100) == b"connected"

    on(backend, main)


@needs_af_unix
def test_unix_path_and_abstract_sockets(backend: str, tmp_path: Any) -> None:
    async def main() -> None:
        path = str(tmp_path / "sock")
        for address in (path, b"\0corral-test-" + os.urandom(4).hex().encode()):
            with csocket.socket(stdlib_socket.AF_UNIX) as listener:
                await listener.bind(address)
                listener.listen(1)
                assert listener.getsockname() == address
                client = csocket.socket(stdlib_socket.AF_UNIX)
                async with corral.open_nursery() as nursery:
                    nursery.start_soon(client.connect, address)
                    server, peer = await listener.accept()
                assert peer == ""  # an unbound client has no name
                with client, server:
                    await client.send(b"over unix")
                    assert await server.recv(100) == b"over unix"
        # Datagrams between named Unix sockets report the sender's path.
        with (
            csocket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_DGRAM) as a,
            csocket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_DGRAM) as b,
        ):
            await a.bind(str(tmp_path / "a"))
            await b.bind(tmp_path / "b")  # path-like
            await a.sendto(b"hi", str(tmp_path / "b"))
            assert await b.recvfrom(10) == (b"hi", str(tmp_path / "a"))

    on(backend, main)


@pytest.mark.skipif(
    not hasattr(stdlib_socket, "SCM_RIGHTS"), reason="Windows has no SCM_RIGHTS fd passing"
)
def test_scm_rights(backend: str, tmp_path: Any) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        path = tmp_path / "passed"
        path.write_bytes(b"contents of the passed file")
        with a, b, open(path, "rb") as f:
            fds = [f.fileno()]
            cmsg = (
                stdlib_socket.SOL_SOCKET,
                stdlib_socket.SCM_RIGHTS,
                bytes(memoryview(__import__("array").array("i", fds))),
            )
            assert await a.sendmsg([b"fd"], [cmsg]) == 2
            data, ancdata, flags, _ = await b.recvmsg(10, stdlib_socket.CMSG_SPACE(4))
            assert data == b"fd"
            assert flags == 0
            ((level, type_, raw),) = ancdata
            assert (level, type_) == (stdlib_socket.SOL_SOCKET, stdlib_socket.SCM_RIGHTS)
            received = int.from_bytes(raw[:4], "little")
            assert received != f.fileno()
            with os.fdopen(received, "rb") as g:
                assert g.read() == b"contents of the passed file"
            # recvmsg_into with several buffers.
            await a.sendmsg([b"0123456789"])
            first, second = bytearray(4), bytearray(10)
            n, ancdata, _, _ = await b.recvmsg_into([first, second])
            assert (n, ancdata) == (10, [])
            assert bytes(first) + bytes(second[:6]) == b"0123456789"

    on(backend, main)


def test_recv_into_pins_the_buffer_while_waiting(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        buf = bytearray(16)
        with a, b:
            async with corral.open_nursery() as nursery:

                async def receive() -> None:
                    assert await b.recv_into(buf) == 5

                nursery.start_soon(receive)
                await testing.wait_all_tasks_blocked()
                with pytest.raises(BufferError):
                    buf.extend(b"resize")
                await a.send(b"hello")
            assert buf[:5] == b"hello"
            buf.extend(b"!")  # free again
            # Cancelled while waiting: unpinned once it raised.
            with corral.move_on_after(0.01):
                await b.recv_into(buf)
            buf.extend(b"!")

    on(backend, main)


def test_partial_sends_are_reported(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            a.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
            big = b"x" * 1_000_000
            sent = await a.send(big)
            assert 0 < sent < len(big)
            got = 0
            while got < sent:
                got += len(await b.recv(65536))
            assert got == sent

    on(backend, main)


def test_peek_and_is_readable_see_the_stash(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            await a.send(b"abcdefgh" * 200)  # longer than the stash copy limit
            assert await b.recv(3) == b"abc"
            assert b.is_readable()
            assert await b.recv(3, stdlib_socket.MSG_PEEK) == b"def"
            assert await b.recvfrom(3) == (b"def", None)
            buf = bytearray(2)
            assert await b.recv_into(buf) == 2
            assert buf == b"gh"
            rest = await b.recv(10_000)
            assert len(rest) == 1600 - 8
            assert not b.is_readable()

    on(backend, main)


# -- the pool: idle receives pin nothing ------------------------------------


def test_idle_receives_pin_no_buffer_and_share_a_small_pool(backend: str) -> None:
    count = 100

    async def main() -> None:
        pool = current_backend().pool
        pairs = [csocket.socketpair() for _ in range(count)]
        got: dict[int, bytes] = {}
        try:
            async with corral.open_nursery() as nursery:
                for i, (_, b) in enumerate(pairs):

                    async def receive(i: int = i, b: Any = b) -> None:
                        got[i] = await b.recv(100)

                    nursery.start_soon(receive)
                await testing.wait_all_tasks_blocked()
                # 100 receives in flight, not one pool buffer taken.
                assert pool.statistics().in_use == 0
                # Data for all of them at once: 8 buffers go round.
                for i, (a, _) in enumerate(pairs):
                    await a.send(b"message %d" % i)
            assert got == {i: b"message %d" % i for i in range(count)}
            assert pool.statistics().in_use == 0
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    on(backend, main, pool_buffers=8)


def test_wrong_family_addresses(backend: str) -> None:
    async def main() -> None:
        with csocket.socket() as sock:
            with pytest.raises(stdlib_socket.gaierror):
                await sock.connect(("::1", 80))
            assert sock.fileno() != -1  # only cancellation closes it
        with csocket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM) as sock:
            with pytest.raises(ValueError, match=r"^address should be a \(host, port\) tuple$"):
                await sock.sendto(b"x", "/a/path")

    on(backend, main)


def test_send_to_a_closed_peer(backend: str) -> None:
    async def main() -> None:
        client, server = await tcp_pair()
        with client:
            server.close()
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(100):
                    await client.send(b"x" * 10000)
                    await corral.sleep(0.001)

    on(backend, main)


def test_recv_into_unpins_even_while_its_exception_lives(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        buf = bytearray(8)
        b.close()
        try:
            await b.recv_into(buf, 4)
        except OSError as exc:
            kept = exc  # the traceback keeps recv_into's frames alive
        buf.extend(b"resizable")
        assert kept.errno == errno.EBADF
        a.close()

    on(backend, main)


def test_io_methods_are_checkpoints(backend: str) -> None:
    async def main() -> None:
        a, b = csocket.socketpair()
        with a, b:
            with testing.assert_checkpoints():
                await a.send(b"0123456789" * 200)
            with testing.assert_checkpoints():
                assert await b.recv(5) == b"01234"  # a kernel op
            with testing.assert_checkpoints():
                assert await b.recv(5) == b"56789"  # from the stash
            with testing.assert_checkpoints():
                assert await b.recv(0) == b""
            with testing.assert_checkpoints():
                await a.sendmsg([b"x"])
            with testing.assert_checkpoints():
                await a.wait_writable()
            with testing.assert_checkpoints():
                await csocket.getaddrinfo("127.0.0.1", 1)
            # Cancelled before the call: nothing happens, nothing is consumed.
            with corral.CancelScope() as scope:
                scope.cancel()
                await b.recv(10)
            assert scope.cancelled_caught
            rest = b""
            while len(rest) < 1991:
                rest += await b.recv(4096)
            assert rest == (b"0123456789" * 200)[10:] + b"x"

    on(backend, main)


async def message_pair(kind: str) -> tuple[Any, Any]:
    if hasattr(stdlib_socket, "AF_UNIX"):
        return csocket.socketpair(type=getattr(stdlib_socket, kind))
    # Windows' socketpair makes only TCP pairs: two connected UDP sockets.
    a = csocket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM)
    b = csocket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM)
    await a.bind(("127.0.0.1", 0))
    await b.bind(("127.0.0.1", 0))
    await a.connect(b.getsockname())
    await b.connect(a.getsockname())
    return a, b


@pytest.mark.parametrize(
    "kind",
    [
        "SOCK_DGRAM",
        pytest.param(
            "SOCK_SEQPACKET",
            marks=pytest.mark.skipif(
                not hasattr(stdlib_socket, "AF_UNIX"),
                reason="Windows has no SOCK_SEQPACKET pairs (no AF_UNIX in its CPython)",
            ),
        ),
    ],
)
def test_message_sockets_keep_message_boundaries(backend: str, kind: str) -> None:
    async def main() -> None:
        a, b = await message_pair(kind)
        with a, b:
            await a.send(b"first message")
            await a.send(b"second")
            # A short read truncates the message; the rest is not stashed.
            assert await b.recv(5) == b"first"
            assert await b.recv(100) == b"second"
            big = os.urandom(20000)  # larger than a pool buffer
            await a.send(big)
            assert await b.recv(30000) == big

    on(backend, main)


def test_families_the_core_cannot_encode_use_readiness(backend: str) -> None:
    # AF_NETLINK addresses have no sockaddr encoder in the completion core:
    # connect/sendto fall back to Trio's readiness path.
    async def main() -> None:
        netlink = getattr(stdlib_socket, "AF_NETLINK", None)
        if netlink is None:  # pragma: no cover
            pytest.skip("no AF_NETLINK")
        with csocket.socket(netlink, stdlib_socket.SOCK_RAW, 0) as sock:
            await sock.bind((0, 0))
            await sock.connect((0, 0))
            # RTM_GETLINK dump request: nlmsghdr(len, type=18, flags=REQUEST|DUMP,
            # seq, pid) + ifinfomsg (16 bytes).
            import struct

            msg = struct.pack("=IHHII", 32, 18, 0x301, 1, 0) + bytes(16)
            assert await sock.sendto(msg, (0, 0)) == 32
            reply = await sock.recv(65536)
            assert len(reply) >= 16

    on(backend, main)


def test_close_returns_a_stashed_pool_buffer(backend: str) -> None:
    async def main() -> None:
        pool = current_backend().pool
        a, b = csocket.socketpair()
        with a:
            await a.send(b"y" * 3000)
            await testing.wait_all_tasks_blocked()
            assert await b.recv(10) == b"y" * 10
            # 2990 bytes left over: more than the copy limit, so the pool
            # buffer itself is the stash (counted as in use).
            assert pool.statistics().in_use == 1
            b.close()
            assert pool.statistics().in_use == 0

    on(backend, main)
