"""SocketStream, SocketListener and open_unix_socket on every backend: the
stream conformance suites over TCP and Unix sockets, Trio's errors, and
what completion I/O guarantees across cancellation."""

from __future__ import annotations

import errno
import os
import socket as stdlib_socket
import struct
import tempfile
from typing import Any

import pytest
from net_helpers import needs_ipv6, needs_rst, needs_unix, net_backend, run_on_backend  # noqa: F401

import corral
import corral.socket as csocket
from corral import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    SocketListener,
    SocketStream,
    open_unix_socket,
)
from corral.testing import (
    assert_checkpoints,
    check_half_closeable_stream,
    open_stream_to_socket_listener,
    wait_all_tasks_blocked,
)

pytestmark = pytest.mark.corral(run=run_on_backend)


async def tcp_stream_pair(family: int = csocket.AF_INET) -> tuple[SocketStream, SocketStream]:
    host = "127.0.0.1" if family == csocket.AF_INET else "::1"
    with csocket.socket(family) as listen_sock:
        await listen_sock.bind((host, 0))
        listen_sock.listen(1)
        listener = SocketListener(listen_sock)
        client = await open_stream_to_socket_listener(listener)
        server = await listener.accept()
    return client, server


async def unix_stream_pair() -> tuple[SocketStream, SocketStream]:
    a, b = csocket.socketpair()
    return SocketStream(a), SocketStream(b)


async def clog(stream: SocketStream) -> None:
    """Fill the stream's send direction until the kernel takes no more.

    Through the raw socket, not ``send_all``: a ``send_all`` cancelled
    part-way would (rightly) leave the stream broken for sending."""

    async def fill() -> None:
        while True:
            await stream.socket.send(b"x" * 65536)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(fill)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


# -- construction and options ------------------------------------------------


async def test_socket_stream_requires_a_connected_corral_stream_socket() -> None:
    a, b = stdlib_socket.socketpair()
    with a, b:
        with pytest.raises(TypeError, match=r"^SocketStream requires a corral socket object$"):
            SocketStream(a)  # type: ignore[arg-type]
    with csocket.socket(type=csocket.SOCK_DGRAM) as sock:
        with pytest.raises(ValueError, match=r"^SocketStream requires a SOCK_STREAM socket$"):
            SocketStream(sock)
    ca, cb = csocket.socketpair()
    with ca, cb:
        # Unix sockets have no TCP options: the defaults fail silently.
        assert SocketStream(ca).socket is ca


async def test_socket_stream_tcp_defaults_and_options() -> None:
    client, server = await tcp_stream_pair()
    async with client, server:
        for s in (client, server):
            assert s.getsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY)
            if hasattr(csocket, "TCP_NOTSENT_LOWAT"):  # not on Windows
                assert s.getsockopt(csocket.IPPROTO_TCP, csocket.TCP_NOTSENT_LOWAT) == 2**14
        client.setsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY, False)
        assert not client.getsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY)
        raw = client.getsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY, 4)
        assert isinstance(raw, bytes)
        assert int.from_bytes(raw, "little") == 0  # (Windows returns one byte)
        client.setsockopt(csocket.SOL_SOCKET, csocket.SO_KEEPALIVE, struct.pack("i", 1))
        assert client.getsockopt(csocket.SOL_SOCKET, csocket.SO_KEEPALIVE)
        with pytest.raises(
            TypeError,
            match=r"^invalid value for argument 'value', must not be None when specifying length$",
        ):
            client.setsockopt(csocket.SOL_SOCKET, csocket.SO_KEEPALIVE, None)  # type: ignore[call-overload]
        with pytest.raises(
            TypeError,
            match=r"^invalid value for argument 'value': 1, must be None when specifying optlen$",
        ):
            client.setsockopt(csocket.SOL_SOCKET, csocket.SO_KEEPALIVE, 1, 4)  # type: ignore[call-overload]
        # A NULL value with a length: accepted by the kernel for options
        # without a value (the call shape is what matters here).
        with pytest.raises(OSError):
            client.setsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY, None, 0)


# -- the conformance suites ---------------------------------------------------


@needs_unix
async def test_unix_socket_stream_passes_check_half_closeable_stream() -> None:
    async def clogged() -> tuple[SocketStream, SocketStream]:
        left, right = await unix_stream_pair()
        await clog(left)
        await clog(right)
        return left, right

    await check_half_closeable_stream(unix_stream_pair, clogged)


@pytest.mark.parametrize("family", ["ipv4", pytest.param("ipv6", marks=needs_ipv6)])
async def test_tcp_socket_stream_passes_check_half_closeable_stream(family: str) -> None:
    fam = csocket.AF_INET if family == "ipv4" else csocket.AF_INET6

    async def maker() -> tuple[SocketStream, SocketStream]:
        return await tcp_stream_pair(fam)

    async def clogged() -> tuple[SocketStream, SocketStream]:
        left, right = await maker()
        for s in (left, right):
            # Fixed buffers: else TCP autotuning (Windows, Wine's host) makes
            # room again after the clog (an overlapped send is not a
            # non-blocking one: it waits for room rather than fail).
            s.setsockopt(csocket.SOL_SOCKET, csocket.SO_SNDBUF, 4096)
            s.setsockopt(csocket.SOL_SOCKET, csocket.SO_RCVBUF, 4096)
        await clog(left)
        await clog(right)
        return left, right

    await check_half_closeable_stream(maker, clogged)


# -- sending --------------------------------------------------------------------


async def test_send_all_large_buffer_and_no_lingering_export() -> None:
    big = 10_000_000
    a, b = await unix_stream_pair()
    async with a, b:

        async def sender() -> None:
            data = bytearray(os.urandom(1024) * (big // 1024))
            await a.send_all(data)
            # The pin on the bytearray must be gone: resizing would raise
            # BufferError otherwise.
            data += b"more"
            data.clear()

        got = bytearray()

        async def receiver() -> None:
            await wait_all_tasks_blocked()  # the sender fills the kernel first
            while len(got) < big // 1024 * 1024:
                got.extend(await b.receive_some(big))

        async with corral.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(receiver)
        assert len(got) == big // 1024 * 1024
        await a.send_all(memoryview(b"tail"))
        assert await b.receive_some(10) == b"tail"


async def test_send_all_empty_is_a_checkpoint_and_sends_nothing() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        with assert_checkpoints():
            await a.send_all(b"")
        with assert_checkpoints():
            await a.send_all(bytearray())
        await a.send_eof()
        assert await b.receive_some(10) == b""
    c, d = await unix_stream_pair()
    await c.aclose()
    with pytest.raises(ClosedResourceError, match=r"^socket was already closed$"):
        await c.send_all(b"")
    await d.aclose()


async def test_send_all_bad_input() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        with pytest.raises(TypeError):
            await a.send_all("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await a.send_all(42)  # type: ignore[arg-type]
        await a.send_all(b"ok")
        assert await b.receive_some() == b"ok"


async def test_two_senders_conflict() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        await clog(a)
        with pytest.RaisesGroup(
            pytest.RaisesExc(
                BusyResourceError,
                match=r"^another task is currently sending data on this SocketStream$",
            )
        ):
            async with corral.open_nursery() as nursery:
                nursery.start_soon(a.send_all, b"x")
                await wait_all_tasks_blocked()
                nursery.start_soon(a.send_all, b"y")


async def test_cancelled_send_all_that_sent_nothing_leaves_the_stream_usable() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        await clog(a)
        async with corral.open_nursery() as nursery:
            nursery.start_soon(a.send_all, b"never")
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        # The blocked send had not started to copy: nothing went out, so
        # the stream is intact. The peer reads what clog() queued, then
        # exactly the next message.
        got = bytearray()

        async def receive() -> None:
            while not got.endswith(b"after"):
                got.extend(await b.receive_some())

        async with corral.open_nursery() as nursery:
            nursery.start_soon(receive)
            await a.send_all(b"after")
        assert got.lstrip(b"x") == b"after"


async def test_send_all_cancelled_part_way_breaks_the_sending_side() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        payload = os.urandom(4_000_000)  # far more than the socket buffers
        async with corral.open_nursery() as nursery:
            nursery.start_soon(a.send_all, payload)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        msg = (
            r"^a previous send was cancelled after sending part of its data; "
            r"this stream can no longer send$"
        )
        with pytest.raises(BrokenResourceError, match=msg):
            await a.send_all(b"more")
        with pytest.raises(BrokenResourceError, match=msg):
            await a.wait_send_all_might_not_block()
        # The sending half can still be shut down, and the peer reads an
        # exact prefix of the payload, then end-of-file.
        await a.send_eof()
        got = bytearray()
        while chunk := await b.receive_some():
            got += chunk
        assert 0 < len(got) < len(payload)
        assert got == payload[: len(got)]
        # Receiving on the broken stream still works.
        await b.send_all(b"reply")
        assert await a.receive_some() == b"reply"


async def test_send_after_send_eof_is_closed() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        await a.send_all(b"x")
        with assert_checkpoints():
            await a.send_eof()
        with assert_checkpoints():
            await a.send_eof()  # idempotent
        with pytest.raises(ClosedResourceError, match=r"^can't send data after sending EOF$"):
            await a.send_all(b"y")
        with pytest.raises(ClosedResourceError, match=r"^can't send data after sending EOF$"):
            await a.send_file(0)
        assert await b.receive_some() == b"x"
        assert await b.receive_some() == b""
        # Half-closed: the other direction keeps working.
        await b.send_all(b"back")
        assert await a.receive_some() == b"back"


async def test_closed_stream_errors() -> None:
    a, b = await unix_stream_pair()
    await a.aclose()
    with assert_checkpoints():
        await a.aclose()  # idempotent, still a checkpoint
    with pytest.raises(ClosedResourceError, match=r"^this socket was already closed$"):
        await a.send_all(b"x")
    with pytest.raises(ClosedResourceError, match=r"^this socket was already closed$"):
        await a.receive_some(10)
    with pytest.raises(ClosedResourceError, match=r"^$"):
        await a.wait_send_all_might_not_block()
    with pytest.raises(ClosedResourceError, match=r"^this socket was already closed$"):
        await a.send_eof()
    with pytest.raises(ClosedResourceError, match=r"^this socket was already closed$"):
        await a.send_file(0)
    assert await b.receive_some() == b""
    await b.aclose()


async def test_aclose_wakes_a_blocked_receiver() -> None:
    a, b = await unix_stream_pair()

    async def receiver() -> None:
        with pytest.raises(ClosedResourceError):
            await a.receive_some(10)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        await a.aclose()
    await b.aclose()


# -- receiving ------------------------------------------------------------------


async def test_receive_some_validates_max_bytes() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        for bad in (0, -1):
            with pytest.raises(ValueError, match=r"^max_bytes must be >= 1$"):
                await a.receive_some(bad)
        for wrong in ("10", 1.5, b"1"):
            with pytest.raises(TypeError):
                await a.receive_some(wrong)  # type: ignore[arg-type]
        await b.send_all(b"abcdef")
        assert await a.receive_some(2) == b"ab"
        assert await a.receive_some(True) == b"c"  # an index, like Trio
        assert await a.receive_some(None) == b"def"


async def test_cancelled_receive_loses_nothing() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(a.receive_some)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await b.send_all(b"kept")
        assert await a.receive_some() == b"kept"


async def test_two_receivers_conflict() -> None:
    a, b = await unix_stream_pair()
    async with a, b:
        with pytest.RaisesGroup(pytest.RaisesExc(BusyResourceError)):
            async with corral.open_nursery() as nursery:
                nursery.start_soon(a.receive_some)
                await wait_all_tasks_blocked()
                nursery.start_soon(a.receive_some)


async def test_works_when_peer_has_already_closed() -> None:
    sa, sb = csocket.socketpair()
    await sb.send(b"x")
    sb.close()
    stream = SocketStream(sa)
    assert await stream.receive_some(1) == b"x"
    assert await stream.receive_some(1) == b""
    await stream.aclose()


@needs_rst
async def test_peer_reset_breaks_the_stream() -> None:
    client, server = await tcp_stream_pair()
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    # (struct linger: two ints on Linux, two u_shorts on Windows.)
    linger = struct.pack("HH" if os.name == "nt" else "ii", 1, 0)
    server.setsockopt(csocket.SOL_SOCKET, csocket.SO_LINGER, linger)
    await server.aclose()
    with pytest.raises(BrokenResourceError, match=r"^socket connection broken: ") as info:
        await client.receive_some(10)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ECONNRESET
    # After a reset, sending fails too (EPIPE: the connection is gone).
    with pytest.raises(BrokenResourceError, match=r"^socket connection broken: ") as info:
        for _ in range(10):
            await client.send_all(b"x" * 1000)
    assert isinstance(info.value.__cause__, OSError)
    await client.aclose()


async def test_peer_close_breaks_sending() -> None:
    client, server = await tcp_stream_pair()
    await server.aclose()
    with pytest.raises(BrokenResourceError) as info:
        # The first send may still be accepted (the RST comes back for it).
        for _ in range(100):
            await client.send_all(b"x" * 1000)
            await corral.sleep(0.001)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno in (errno.EPIPE, errno.ECONNRESET)
    await client.aclose()


# -- send_file -----------------------------------------------------------------


async def test_send_file_method() -> None:
    content = os.urandom(300_000)
    with tempfile.TemporaryFile() as f:
        f.write(content)
        f.flush()
        client, server = await tcp_stream_pair()
        async with client, server:
            got = bytearray()

            async def receive() -> None:
                while len(got) < 1000 + 5000:
                    got.extend(await server.receive_some())

            async with corral.open_nursery() as nursery:
                nursery.start_soon(receive)
                assert await client.send_file(f, offset=1000, count=1000) == 1000
                assert await client.send_file(f.fileno(), offset=len(content) - 5000) == 5000
            assert got == content[1000:2000] + content[-5000:]
            with pytest.raises(ValueError):
                await client.send_file(f, offset=-1)
            with pytest.raises(ValueError):
                await client.send_file(f, count=-1)


# -- SocketListener --------------------------------------------------------------


async def test_socket_listener_validation_and_accept() -> None:
    with stdlib_socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(10)
        with pytest.raises(TypeError, match=r"^SocketListener requires a corral socket object$"):
            SocketListener(s)  # type: ignore[arg-type]
    with csocket.socket(type=csocket.SOCK_DGRAM) as ds:
        await ds.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match=r"^SocketListener requires a SOCK_STREAM socket$"):
            SocketListener(ds)
    with csocket.socket() as ns:
        await ns.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match=r"^SocketListener requires a listening socket$"):
            SocketListener(ns)

    listen_sock = csocket.socket()
    await listen_sock.bind(("127.0.0.1", 0))
    listen_sock.listen(10)
    listener = SocketListener(listen_sock)
    assert listener.socket is listen_sock

    client_sock = csocket.socket()
    await client_sock.connect(listen_sock.getsockname())
    with assert_checkpoints():
        server_stream = await listener.accept()
    assert isinstance(server_stream, SocketStream)
    assert server_stream.socket.getsockname() == listen_sock.getsockname()
    assert server_stream.socket.getpeername() == client_sock.getsockname()
    # Accepted streams get the same defaults.
    assert server_stream.getsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY)

    with assert_checkpoints():
        await listener.aclose()
    with assert_checkpoints():
        await listener.aclose()
    with assert_checkpoints():
        with pytest.raises(ClosedResourceError):
            await listener.accept()
    client_sock.close()
    await server_stream.aclose()


async def test_socket_listener_socket_closed_underfoot() -> None:
    listen_sock = csocket.socket()
    await listen_sock.bind(("127.0.0.1", 0))
    listen_sock.listen(10)
    listener = SocketListener(listen_sock)
    listen_sock.close()
    with assert_checkpoints():
        with pytest.raises(ClosedResourceError):
            await listener.accept()


async def test_socket_listener_aclose_wakes_accept() -> None:
    listeners = await corral.open_tcp_listeners(0, host="127.0.0.1")
    (listener,) = listeners

    async def accepter() -> None:
        with pytest.raises(ClosedResourceError):
            await listener.accept()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(accepter)
        await wait_all_tasks_blocked()
        await listener.aclose()


class FakeListenSocket(csocket.SocketType):
    """accept() returns or raises the scripted events in turn."""

    def __init__(self, events: list[Any]) -> None:
        self._events = iter(events)

    @property
    def type(self) -> stdlib_socket.SocketKind:
        return stdlib_socket.SOCK_STREAM

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        return 1  # SO_ACCEPTCONN: yes, listening

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        pass

    async def accept(self) -> tuple[csocket.SocketType, Any]:
        await corral.lowlevel.checkpoint()
        event = next(self._events)
        if isinstance(event, BaseException):
            raise event
        return event, None


async def test_socket_listener_skips_per_connection_errors() -> None:
    accepted = FakeListenSocket([])
    fake = FakeListenSocket(
        [
            OSError(errno.ECONNABORTED, "Connection aborted"),
            OSError(errno.EPERM, "Permission denied"),
            OSError(errno.EPROTO, "Bad protocol"),
            OSError(errno.ECONNRESET, "Connection reset"),
            accepted,
            OSError(errno.EMFILE, "Out of file descriptors"),
            OSError(errno.EFAULT, "attempt to write to read-only memory"),
            OSError(errno.ENOBUFS, "out of buffers"),
            OSError(errno.EBADF, "Bad file descriptor"),
            accepted,
        ]
    )
    listener = SocketListener(fake)
    with assert_checkpoints():
        stream = await listener.accept()
    assert stream.socket is accepted
    for code, message in [
        (errno.EMFILE, "Out of file descriptors"),
        (errno.EFAULT, "attempt to write to read-only memory"),
        (errno.ENOBUFS, "out of buffers"),
    ]:
        with assert_checkpoints():
            with pytest.raises(OSError, match=rf"^\[Errno {code}\] {message}$") as info:
                await listener.accept()
        assert info.value.errno == code
    with pytest.raises(ClosedResourceError):
        await listener.accept()
    assert (await listener.accept()).socket is accepted


# -- Unix sockets ------------------------------------------------------------------


@needs_unix
async def test_open_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        with csocket.socket(csocket.AF_UNIX) as listen_sock:
            await listen_sock.bind(path)
            listen_sock.listen(1)
            listener = SocketListener(listen_sock)
            for name in (path, path.encode(), __import__("pathlib").Path(path)):
                client = await open_unix_socket(name)
                server = await listener.accept()
                async with client, server:
                    assert client.socket.family == csocket.AF_UNIX
                    await client.send_all(b"hi")
                    assert await server.receive_some() == b"hi"
                    await server.send_eof()
                    assert await client.receive_some() == b""
            # The client socket of a failed connect is closed, not leaked.
            before = len(os.listdir("/proc/self/fd"))
            with pytest.raises(FileNotFoundError):
                await open_unix_socket(os.path.join(tmp, "missing"))
            assert len(os.listdir("/proc/self/fd")) == before
        with pytest.raises(ConnectionRefusedError):
            await open_unix_socket(path)  # the file stays, nobody listens
        with pytest.raises(TypeError):
            await open_unix_socket(42)  # type: ignore[arg-type]


@needs_unix
async def test_unix_listener_and_open_stream_to_socket_listener() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sock")
        listen_sock = csocket.socket(csocket.AF_UNIX)
        await listen_sock.bind(path)
        listen_sock.listen(1)
        async with SocketListener(listen_sock) as listener:
            client = await open_stream_to_socket_listener(listener)
            server = await listener.accept()
            async with client, server:
                await server.send_all(b"unix")
                assert await client.receive_some() == b"unix"
