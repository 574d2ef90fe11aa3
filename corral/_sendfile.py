"""``send_file``: file -> socket without copying through Python.

On io_uring the bytes go file -> pipe -> socket with two IORING_OP_SPLICE
ops per chunk (splice(2) needs a pipe on one side; the pipe only holds page
references, so nothing is copied to user space). Elsewhere ``os.sendfile``
(sendfile(2)) moves them on the non-blocking socket, waiting for
writability between calls. Where ``os`` has no ``sendfile`` (Windows), the
bytes are copied: a worker thread reads a chunk, then sends it through the
completion core (``TransmitFile`` would be the zero-copy path there).

Exactness, also across cancellation: the peer receives exactly the bytes
``[offset, offset + sent)`` of the file, in order, with nothing repeated or
skipped. Cancellation stops the transfer at a chunk boundary of what the
socket accepted: bytes already spliced into the pipe but not yet into the
socket are dropped with the pipe, so the peer has a prefix of the range.
As with ``send_all``, a cancelled transfer leaves the stream mid-message.
"""

from __future__ import annotations

import errno
import os

try:
    import fcntl
except ImportError:  # Windows: no splice(2), so no pipe to resize
    fcntl = None  # type: ignore[assignment]
import time
from typing import Any

from . import _file_engine as engine
from ._core import checkpoint
from ._io.ops import SendOp, SpliceOp
from ._io.perform import perform
from ._io.readiness import wait_writable

#: Bytes per splice round trip; the pipe is grown to hold one chunk.
CHUNK = 1 << 20
#: fcntl(2) F_SETPIPE_SZ (include/uapi/linux/fcntl.h).
_F_SETPIPE_SZ = 1031


def _socket_fd(stream: Any) -> int:
    if isinstance(stream, int):
        return stream
    # A SocketStream carries its socket as ``.socket`` (Trio's API).
    sock = getattr(stream, "socket", stream)
    return int(sock.fileno())


def _file_fd(file: Any) -> int:
    if isinstance(file, int):
        return file
    return int(file.fileno())


async def send_file(stream: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    """Send ``count`` bytes of ``file`` starting at ``offset`` (to end of file
    if ``count`` is ``None``) on ``stream``, zero-copy. Returns the number of
    bytes sent (fewer than ``count`` only at end of file).

    Args:
      stream: a ``SocketStream`` (anything with a ``.socket``), a
        :mod:`corral.socket` socket, or a socket fd.
      file: a file from :func:`corral.open_file`, anything with ``fileno()``,
        or an fd. Its position is neither used nor moved.

    Cancellation: see the module docstring (the peer holds an exact prefix).

    Raises:
      OSError: from the kernel (``EPIPE``/``ECONNRESET`` when the peer went
        away, ``EINVAL`` for a file that cannot be spliced or sent).
      ValueError: negative ``offset`` or ``count``.
    """
    if offset < 0:
        raise ValueError(f"negative offset: {offset}")
    if count is not None and count < 0:
        raise ValueError(f"negative count: {count}")
    sock_fd = _socket_fd(stream)
    file_fd = _file_fd(file)
    if count is None:
        count = max(0, os.fstat(file_fd).st_size - offset)
    if count == 0:
        await checkpoint()
        return 0
    if engine.native_backend() is not None:
        return await _splice(sock_fd, file_fd, offset, count)
    if not hasattr(os, "sendfile"):
        return await _send_copy(sock_fd, file_fd, offset, count)
    return await _sendfile(sock_fd, file_fd, offset, count)


async def _splice(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            capacity = fcntl.fcntl(w, _F_SETPIPE_SZ, CHUNK)
        except OSError:  # pragma: no cover - pipe-max-size below CHUNK
            capacity = 65536
        sent = 0
        while sent < count:
            # A regular-file splice that started is completed by the kernel,
            # not cancelled; its bytes sit in the pipe.
            n = await perform(SpliceOp(file_fd, w, min(capacity, count - sent), offset + sent))
            if n == 0:
                break
            pending = n
            while pending:
                try:
                    m = await perform(SpliceOp(r, sock_fd, pending))
                except BlockingIOError:
                    # A non-blocking socket with a full buffer: io_uring
                    # reports EAGAIN for splice instead of polling.
                    await wait_writable(sock_fd)
                    continue
                pending -= m
                sent += m
        return sent
    finally:
        os.close(r)
        os.close(w)


async def _sendfile(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    sent = 0
    await checkpoint()
    while sent < count:
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, min(CHUNK, count - sent))
        except BlockingIOError:
            await wait_writable(sock_fd)
            continue
        except OSError as exc:
            if exc.errno == errno.EINTR:  # pragma: no cover
                continue
            raise
        if n == 0:
            break
        sent += n
    return sent


#: Bytes per read when copying (one overlapped send takes at most 64 KiB).
_COPY_CHUNK = 1 << 16


async def _send_copy(sock_fd: int, file_fd: int, offset: int, count: int) -> int:
    # Exactness across cancellation holds as for the other paths: a chunk is
    # read, then sent in order; a cancelled send had no effect (completion
    # contract), so the peer holds exactly the bytes counted in ``sent``.
    sent = 0
    chunk = bytearray(min(_COPY_CHUNK, count))
    while sent < count:
        view = memoryview(chunk)[: min(len(chunk), count - sent)]
        n = await engine.pread(file_fd, view, offset + sent)
        if n == 0:
            break
        data = view[:n]
        while data:
            m: int = await perform(SendOp(sock_fd, data))
            sent += m
            data = data[m:]
    return sent


def tcp_pair() -> tuple[Any, Any]:
    """A connected pair of non-blocking loopback TCP stdlib sockets."""
    import socket as stdlib_socket

    with stdlib_socket.create_server(("127.0.0.1", 0)) as listener:
        a = stdlib_socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def bench_send_file(corral: Any, path: str, size: int, backend: str) -> tuple[float, float]:
    """For ``benchmarks/bench_files.py``: MB/s of serving ``path`` over
    loopback TCP with :func:`send_file` and with ``read`` + ``send``."""

    def one(zero_copy: bool) -> float:
        async def main() -> float:
            a, b = tcp_pair()
            sender = corral.socket.from_stdlib_socket(a)
            receiver = corral.socket.from_stdlib_socket(b)
            got = 0

            async def receive() -> None:
                nonlocal got
                while got < size:
                    data = await receiver.recv(1 << 20)
                    if not data:
                        break
                    got += len(data)

            t0 = time.perf_counter()
            async with corral.open_nursery() as nursery:
                nursery.start_soon(receive)
                f = await corral.open_file(path, "rb")
                try:
                    if zero_copy:
                        await send_file(sender, f)
                    else:
                        while chunk := await f.read(1 << 20):
                            view = memoryview(chunk)
                            while view:
                                view = view[await sender.send(view) :]
                finally:
                    await f.aclose()
            elapsed = time.perf_counter() - t0
            sender.close()
            receiver.close()
            assert got == size
            return size / elapsed / 1e6

        return float(corral.run(main, backend=backend))

    return max(one(True) for _ in range(3)), max(one(False) for _ in range(3))
