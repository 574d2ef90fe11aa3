"""corral's own lab scenarios: the figures in ``docs/cancel-safety.md``.

Each scenario is ``async def scenario(lab)`` and marks the operations the lab
cancels with ``lab.cancellable()`` regions; after a cancelled region it
simply carries on, so every byte must still arrive exactly once:

* :func:`echo`: request/response over TCP (``corral.socket``); every
  ``send``, ``recv``, ``recv_into`` on both sides is cancellable.
* :func:`accept_flood`: many clients connect at once; every ``accept`` is
  cancellable; each connection must be accepted exactly once and closed.
* :func:`file_roundtrip`: ``corral.open_file`` writes and reads a file in
  chunks; every ``write`` and ``read`` is cancellable.
* :func:`tls_echo`: :class:`corral.SSLStream` over TCP; every
  ``receive_some`` after the handshake is cancellable (``send_all`` is not:
  a cancelled ``send_all`` breaks a TLS stream by contract).

They are public so a library can run corral's scenarios next to its own.
"""

from __future__ import annotations

import os
import socket as _stdlib_socket
import tempfile
from typing import Any

from ... import socket as csocket
from ..._core import open_nursery
from ..._highlevel_socket import SocketStream
from ._runner import CancelLab, Scenario

_ADDRESS = ("127.0.0.1", 0)


async def _send_exactly(lab: CancelLab, sock: Any, checker: Any, n: int) -> None:
    """Send the next ``n`` pattern bytes, one cancellable ``send`` at a time.
    A cancelled send sent nothing (the contract), so it is retried."""
    data = checker.next_chunk(n)
    view = memoryview(data)
    while view:
        with lab.cancellable():
            sent = await sock.send(view)
            # No checkpoint between the result and the bookkeeping.
            checker.sent(sent)
            view = view[sent:]


async def _receive_exactly(lab: CancelLab, sock: Any, checker: Any, n: int, into: bool) -> bool:
    """Receive ``n`` bytes (fewer at EOF: returns False)."""
    got = 0
    buf = bytearray(max(1, n))
    while got < n:
        with lab.cancellable():
            if into:
                k = await sock.recv_into(buf, n - got)
                checker.received(buf[:k])
            else:
                data = await sock.recv(n - got)
                k = len(data)
                checker.received(data)
            if k == 0:
                return False
            got += k
    return True


async def _tcp_pair() -> tuple[Any, Any, Any]:
    listener = csocket.socket()
    try:
        await listener.bind(_ADDRESS)
        listener.listen()
        client = csocket.socket()
        try:
            results: list[Any] = []

            async def accept() -> None:
                results.append((await listener.accept())[0])

            async with open_nursery() as nursery:
                nursery.start_soon(accept)
                await client.connect(listener.getsockname())
        except BaseException:
            client.close()
            raise
    except BaseException:
        listener.close()
        raise
    return listener, client, results[0]


async def echo(lab: CancelLab, *, rounds: int = 6, size: int = 700) -> None:
    """Request/response over TCP; both directions checked byte for byte."""
    listener, client, server = await _tcp_pair()
    try:
        up = lab.stream("echo-up")
        down = lab.stream("echo-down")

        async def serve() -> None:
            while True:
                # Receive one request (its size is known to both sides).
                if not await _receive_exactly(lab, server, up, size, into=True):
                    break
                await _send_exactly(lab, server, down, size)
            server.shutdown(_stdlib_socket.SHUT_WR)

        async def talk() -> None:
            for _ in range(rounds):
                await _send_exactly(lab, client, up, size)
                assert await _receive_exactly(lab, client, down, size, into=False)
            client.shutdown(_stdlib_socket.SHUT_WR)
            assert not await _receive_exactly(lab, client, down, 1, into=False)

        async with open_nursery() as nursery:
            nursery.start_soon(serve)
            nursery.start_soon(talk)
        up.finish()
        down.finish()
    finally:
        client.close()
        server.close()
        listener.close()


async def accept_flood(lab: CancelLab, *, clients: int = 6) -> None:
    """Clients connect at once; every accept is cancellable. Each client
    sends its number; the server must accept each one exactly once."""
    listener = csocket.socket()
    accepted: list[Any] = []
    try:
        await listener.bind(_ADDRESS)
        listener.listen(clients)
        address = listener.getsockname()
        seen: list[int] = []

        async def client(i: int) -> None:
            sock = csocket.socket()
            try:
                await sock.connect(address)
                await sock.send(bytes([i]))
                # Wait for the server's close (EOF) before closing.
                await sock.recv(1)
            finally:
                sock.close()

        async with open_nursery() as nursery:
            for i in range(clients):
                nursery.start_soon(client, i)
            while len(accepted) < clients:
                with lab.cancellable():
                    conn, _ = await listener.accept()
                    accepted.append(conn)
            for conn in accepted:
                data = await conn.recv(1)
                seen.append(data[0])
                conn.close()
        assert sorted(seen) == list(range(clients)), seen
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


async def file_roundtrip(lab: CancelLab, *, chunks: int = 5, size: int = 3000) -> None:
    """Write a file in cancellable chunks, then read it back in cancellable
    chunks; the file and the reads must match the pattern exactly."""
    from ..._file_io import open_file

    fd, path = tempfile.mkstemp(prefix="corral-cancel-lab-")
    os.close(fd)
    try:
        written = lab.stream("file")
        f = await open_file(path, "wb")
        try:
            for _ in range(chunks):
                data = written.next_chunk(size)
                view = memoryview(data)
                while view:
                    with lab.cancellable():
                        n = await f.write(view)
                        written.sent(n)
                        view = view[n:]
        finally:
            await f.aclose()
        with open(path, "rb") as sync_file:
            content = sync_file.read()
        check = lab.stream("file")
        # The second checker shares the pattern: same seed and name prefix.
        check._seed, check.name = written._seed, written.name
        check.sent(written.sent_offset)
        check.received(content)
        check.finish()
        written.received(content)
        written.finish()
        r = await open_file(path, "rb")
        try:
            reread = lab.stream("file")
            reread._seed, reread.name = written._seed, written.name
            reread.sent(written.sent_offset)
            while True:
                with lab.cancellable():
                    chunk = await r.read(size // 2 + 1)
                    reread.received(chunk)
                    if not chunk:
                        break
            reread.finish()
        finally:
            await r.aclose()
    finally:
        os.unlink(path)


_TLS: dict[str, Any] = {}


def _tls_contexts() -> tuple[Any, Any]:
    if not _TLS:
        import ssl

        import trustme

        ca = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("corral.example").configure_cert(server_ctx)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        _TLS["server"], _TLS["client"] = server_ctx, client_ctx
    return _TLS["server"], _TLS["client"]


async def tls_echo(lab: CancelLab, *, rounds: int = 4, size: int = 900) -> None:
    """TLS over TCP; every ``receive_some`` after the handshake is
    cancellable, on both sides. Needs ``trustme``."""
    from ..._ssl import SSLStream

    server_ctx, client_ctx = _tls_contexts()
    listener, client_sock, server_sock = await _tcp_pair()
    listener.close()
    client = SSLStream(SocketStream(client_sock), client_ctx, server_hostname="corral.example")
    server = SSLStream(SocketStream(server_sock), server_ctx, server_side=True)
    try:
        async with open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        up = lab.stream("tls-up")
        down = lab.stream("tls-down")

        async def receive(stream: Any, checker: Any, n: int) -> None:
            got = 0
            while got < n:
                with lab.cancellable():
                    data = await stream.receive_some(n - got)
                    checker.received(data)
                    assert data, "unexpected end of the TLS stream"
                    got += len(data)

        async def serve() -> None:
            for _ in range(rounds):
                await receive(server, up, size)
                await server.send_all(down.next_chunk(size))
                down.sent(size)

        async def talk() -> None:
            for _ in range(rounds):
                await client.send_all(up.next_chunk(size))
                up.sent(size)
                await receive(client, down, size)

        async with open_nursery() as nursery:
            nursery.start_soon(serve)
            nursery.start_soon(talk)
        up.finish()
        down.finish()
    finally:
        try:
            await client.aclose()
        finally:
            await server.aclose()


#: Every scenario of corral's own lab, by name.
SCENARIOS: dict[str, Scenario] = {
    "echo": echo,
    "accept_flood": accept_flood,
    "file_roundtrip": file_roundtrip,
    "tls_echo": tls_echo,
}
