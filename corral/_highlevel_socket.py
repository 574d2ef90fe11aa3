"""SocketStream and SocketListener: the :mod:`corral.abc` stream and listener
interfaces over a :mod:`corral.socket` socket.

Errors follow Trio's stream vocabulary. An :class:`OSError` from the socket
becomes :exc:`corral.ClosedResourceError` when it means "this socket is
closed" (``EBADF``, ``ENOTSOCK``), and :exc:`corral.BrokenResourceError`
otherwise (the peer reset the connection, the network went away...), with
the original error as ``__cause__``.

What completion I/O adds: a socket send reports exactly how many bytes the
kernel took, even when it races a cancellation. So a cancelled ``send_all``
knows whether it sent nothing (the stream is intact), everything (intact),
or a strict prefix; only in the last case is the stream's sending side
broken, and later sends say so instead of silently splicing the peer's
byte stream.
"""

from __future__ import annotations

import errno
from operator import index as _index
from typing import TYPE_CHECKING, Any, final, overload

from . import _sendfile
from . import socket as csocket
from ._abc import HalfCloseableStream, Listener
from ._core import BrokenResourceError, Cancelled, ClosedResourceError, checkpoint
from ._socket import SocketType
from ._util import ConflictDetector

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["DEFAULT_RECEIVE_SIZE", "SocketListener", "SocketStream"]

#: What ``receive_some()`` asks for when given no size (Trio's figure). On a
#: stream socket a receive returns at most one pool buffer anyway; the rest
#: waits in the kernel or the socket's stash.
DEFAULT_RECEIVE_SIZE = 65536

#: errnos that mean "the socket is closed", not "the connection broke":
#: EBADF on Unix, ENOTSOCK where a closed handle stops being a socket.
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

#: errnos from ``send_file`` that are about the connection; others (EINVAL
#: for a file that cannot be sent, EBADF for a closed *file*...) are about
#: the arguments and propagate as they are.
_BROKEN_SEND_ERRNOS = frozenset(
    {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ETIMEDOUT,
     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}
)  # fmt: skip

_SEND_BROKEN_MSG = (
    "a previous send was cancelled after sending part of its data; this stream can no longer send"
)


def _stream_error(exc: OSError) -> Exception:
    """The stream error for a socket error (raise it ``from None`` for a
    closed socket, ``from exc`` otherwise: done by the callers)."""
    if exc.errno in _CLOSED_ERRNOS:
        return ClosedResourceError("this socket was already closed")
    return BrokenResourceError(f"socket connection broken: {exc}")


def _raise_stream_error(exc: OSError) -> None:
    err = _stream_error(exc)
    if isinstance(err, ClosedResourceError):
        raise err from None
    raise err from exc


################################################################
# SocketStream
################################################################


@final
class SocketStream(HalfCloseableStream):
    """A :class:`corral.abc.HalfCloseableStream` over a connected stream
    socket (TCP, or a Unix socket).

    Args:
      socket: a :mod:`corral.socket` socket of type ``SOCK_STREAM``, already
        connected. The stream owns it from now on: closing the stream closes
        it.

    For TCP sockets the stream enables ``TCP_NODELAY`` (small writes go out
    at once: the stream API has no notion of "more coming") and, where the
    platform has it, ``TCP_NOTSENT_LOWAT`` at 16 KiB (unsent data queued in
    the kernel stays small, so ``wait_send_all_might_not_block`` means
    something). Both can be changed with :meth:`setsockopt`. On other
    sockets, where these options do not exist, the failures are ignored.

    Attributes:
      socket: the wrapped :mod:`corral.socket` socket.

    Raises:
      TypeError: ``socket`` is not a corral socket.
      ValueError: ``socket`` is not a ``SOCK_STREAM`` socket.
    """

    def __init__(self, socket: SocketType) -> None:
        if not isinstance(socket, SocketType):
            raise TypeError("SocketStream requires a corral socket object")
        if socket.type != csocket.SOCK_STREAM:
            raise ValueError("SocketStream requires a SOCK_STREAM socket")
        self.socket = socket
        self._send_conflict_detector = ConflictDetector(
            "another task is currently sending data on this SocketStream"
        )
        # True once a send was cancelled part-way (see send_all).
        self._send_broken = False
        # Defaults. setsockopt is called even on Unix sockets (it fails
        # there, harmlessly): a custom socket may need to see the call.
        try:
            self.setsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY, True)
        except OSError:
            pass
        if hasattr(csocket, "TCP_NOTSENT_LOWAT"):
            # 16 KiB (Trio's figure): roughly bandwidth x scheduling
            # latency on a fast link; more only adds latency and memory.
            try:
                self.setsockopt(csocket.IPPROTO_TCP, csocket.TCP_NOTSENT_LOWAT, 2**14)
            except OSError:
                pass

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for the peer as long as needed.

        ``data`` is not copied; a ``bytearray`` must not be resized while the
        call runs (it is pinned and cannot be).

        Cancellation: the completion core reports exactly how many bytes the
        kernel took, so a cancelled ``send_all`` has sent a known prefix of
        ``data``. If that prefix is empty the stream is intact and may be
        used again. If it is a strict, non-empty prefix, the peer holds an
        incomplete message: the stream is broken for sending, and every
        later ``send_all`` / ``send_file`` /
        ``wait_send_all_might_not_block`` raises
        :exc:`corral.BrokenResourceError` (``send_eof`` and ``aclose`` still
        work, and receiving is unaffected).

        Raises:
          corral.BusyResourceError: another task is in ``send_all``,
            ``send_file``, ``wait_send_all_might_not_block`` or ``send_eof``.
          corral.ClosedResourceError: the stream was closed, or ``send_eof``
            was called.
          corral.BrokenResourceError: the connection broke (``__cause__`` is
            the :class:`OSError`), or an earlier send was cancelled
            part-way.
          TypeError: ``data`` is not a bytes-like object.
        """
        sock = self.socket
        if sock.did_shutdown_SHUT_WR:
            raise ClosedResourceError("can't send data after sending EOF")
        with self._send_conflict_detector:
            if self._send_broken:
                raise BrokenResourceError(_SEND_BROKEN_MSG)
            sent = 0
            try:
                if type(data) is bytes and data:
                    # The common case: one send takes it all (no view).
                    sent = await sock.send(data)
                    if sent == len(data):
                        return
                with memoryview(data) as view:
                    total = len(view)
                    if not total:
                        if sock.fileno() == -1:
                            raise ClosedResourceError("socket was already closed")
                        await checkpoint()
                        return
                    while sent < total:
                        with view[sent:] as rest:
                            sent += await sock.send(rest)
            except Cancelled:
                # No send was in flight when Cancelled arrived (the core
                # delivers a completed send's count and raises at the next
                # checkpoint): ``sent`` is exactly what the peer will get.
                if sent:
                    self._send_broken = True
                raise
            except OSError as exc:
                _raise_stream_error(exc)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the socket has room in its send buffer (a hint: a
        following ``send_all`` may still block). Cancellation returns at
        once with no effect.

        Raises:
          corral.BusyResourceError: another task is sending.
          corral.ClosedResourceError: the stream was closed.
          corral.BrokenResourceError: the connection broke, or an earlier
            send was cancelled part-way.
        """
        with self._send_conflict_detector:
            if self.socket.fileno() == -1:
                raise ClosedResourceError
            if self._send_broken:
                raise BrokenResourceError(_SEND_BROKEN_MSG)
            try:
                await self.socket.wait_writable()
            except OSError as exc:
                _raise_stream_error(exc)

    async def send_eof(self) -> None:
        """Shut down the sending half (``shutdown(SHUT_WR)``): the peer
        reads end-of-file after the data already sent, and this side can
        still receive. Idempotent. Always a checkpoint; cancelled at that
        checkpoint, nothing is shut down.

        Raises:
          corral.BusyResourceError: another task is sending.
          corral.ClosedResourceError: the stream was closed.
          corral.BrokenResourceError: shutdown(2) failed (``ENOTCONN``...).
        """
        with self._send_conflict_detector:
            await checkpoint()
            # Some systems (macOS) fail a second shutdown with ENOTCONN;
            # send_eof must be idempotent.
            if self.socket.did_shutdown_SHUT_WR:
                return
            try:
                self.socket.shutdown(csocket.SHUT_WR)
            except OSError as exc:
                _raise_stream_error(exc)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return between 1 and ``max_bytes`` bytes as soon as some arrive,
        or ``b""`` once the peer sent end-of-file (``send_eof`` or close).
        ``max_bytes=None`` means :data:`DEFAULT_RECEIVE_SIZE`.

        Cancellation: either the bytes the kernel delivered are returned (and
        the scope raises ``Cancelled`` at the next checkpoint), or
        ``Cancelled`` is raised and no byte was consumed: a later receive
        gets them. Nothing is lost or duplicated.

        Raises:
          ValueError: ``max_bytes`` is less than 1.
          TypeError: ``max_bytes`` is not an int.
          corral.BusyResourceError: another task is receiving.
          corral.ClosedResourceError: the stream was closed (or another
            task closed it meanwhile).
          corral.BrokenResourceError: the connection broke (``ECONNRESET``:
            the peer reset it).
        """
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        elif type(max_bytes) is not int:
            max_bytes = _index(max_bytes)
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        try:
            return await self.socket.recv(max_bytes)
        except OSError as exc:
            err = _stream_error(exc)
            if isinstance(err, ClosedResourceError):
                raise err from None
            raise err from exc

    async def aclose(self) -> None:
        """Close the socket. Idempotent; a task blocked in this stream gets
        :exc:`corral.ClosedResourceError`. A checkpoint after the close, so
        a cancelled ``aclose`` has still closed the stream."""
        self.socket.close()
        await checkpoint()

    async def send_file(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """corral extension: send ``count`` bytes of ``file`` from ``offset``
        (to the end of the file if ``count`` is ``None``) without copying
        them through Python (:func:`corral._sendfile.send_file`: splice on
        io_uring, sendfile(2) elsewhere). Returns how many bytes were sent
        (fewer than ``count`` only at end of file). The file's position is
        not used or moved.

        Cancellation: the peer holds an exact prefix of the range, but its
        length is not reported, so a cancelled ``send_file`` always leaves
        the stream broken for sending (as a part-way ``send_all``).

        Raises:
          ValueError: negative ``offset`` or ``count``.
          corral.BusyResourceError, corral.ClosedResourceError: as
            :meth:`send_all`.
          corral.BrokenResourceError: the connection broke (``EPIPE``,
            ``ECONNRESET``...), or an earlier send was cancelled part-way.
          OSError: about the file (``EINVAL`` for a file that cannot be
            sent, ``EBADF`` for a closed file...).
        """
        sock = self.socket
        if sock.did_shutdown_SHUT_WR:
            raise ClosedResourceError("can't send data after sending EOF")
        with self._send_conflict_detector:
            if self._send_broken:
                raise BrokenResourceError(_SEND_BROKEN_MSG)
            if sock.fileno() == -1:
                raise ClosedResourceError("this socket was already closed")
            try:
                return await _sendfile.send_file(sock, file, offset, count)
            except Cancelled:
                self._send_broken = True
                raise
            except OSError as exc:
                if sock.fileno() == -1:
                    raise ClosedResourceError("this socket was already closed") from None
                if exc.errno in _BROKEN_SEND_ERRNOS:
                    raise BrokenResourceError(f"socket connection broken: {exc}") from exc
                raise

    # __aenter__ / __aexit__ come from AsyncResource.

    @overload
    def setsockopt(self, level: int, option: int, value: int | Buffer) -> None: ...

    @overload
    def setsockopt(self, level: int, option: int, value: None, length: int) -> None: ...

    def setsockopt(
        self,
        level: int,
        option: int,
        value: int | Buffer | None,
        length: int | None = None,
    ) -> None:
        """Set an option on the socket (:meth:`socket.socket.setsockopt`):
        ``setsockopt(level, option, value)``, or
        ``setsockopt(level, option, None, length)`` for an option that takes
        a NULL pointer and a length."""
        if length is None:
            if value is None:
                raise TypeError(
                    "invalid value for argument 'value', must not be None when specifying length"
                )
            return self.socket.setsockopt(level, option, value)
        if value is not None:
            raise TypeError(
                f"invalid value for argument 'value': {value!r}, "
                "must be None when specifying optlen"
            )
        return self.socket.setsockopt(level, option, value, length)

    @overload
    def getsockopt(self, level: int, option: int) -> int: ...

    @overload
    def getsockopt(self, level: int, option: int, buffersize: int) -> bytes: ...

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> int | bytes:
        """Read an option of the socket (:meth:`socket.socket.getsockopt`):
        an int, or ``buffersize`` raw bytes when ``buffersize`` is given."""
        if buffersize == 0:
            return self.socket.getsockopt(level, option)
        return self.socket.getsockopt(level, option, buffersize)


################################################################
# SocketListener
################################################################

# What accept(2) errors mean, and which ones a listener should swallow.
#
# Errors about our own call (EBADF, EINVAL: not listening, ENOTSOCK,
# EOPNOTSUPP on a socket kind that cannot accept, EFAULT) are bugs: raise.
#
# Errors about the environment (EMFILE, ENFILE: out of fds; ENOBUFS, ENOMEM)
# are raised too: the listener is fine, but the caller should know and
# decide (serve_listeners logs, backs off and retries). Swallowing them here
# would spin.
#
# Errors about the one connection being accepted are swallowed, and accept
# waits for the next one: the peer is gone, nobody can be told. Which errors
# those are varies by system: the BSDs report ECONNABORTED for a connection
# reset while queued; Linux reports *any* pending error of the new socket
# from accept (accept(2), "Error handling": "Linux accept() passes already-
# pending network errors on the new socket as an error code"), and EPERM
# when a firewall rule refused it. The list below is those, plus the errors
# other systems document for the same situation.
_IGNORABLE_ACCEPT_ERRNO_NAMES = (
    "EPERM",
    "ECONNABORTED",
    "EPROTO",
    "ENETDOWN",
    "ENOPROTOOPT",
    "EHOSTDOWN",
    "ENONET",
    "EHOSTUNREACH",
    "EOPNOTSUPP",
    "ENETUNREACH",
    "ENOSR",
    "ESOCKTNOSUPPORT",
    "EPROTONOSUPPORT",
    "ETIMEDOUT",
    "ECONNRESET",
)
#: The numbers this platform has for those names.
IGNORABLE_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name) for name in _IGNORABLE_ACCEPT_ERRNO_NAMES if hasattr(errno, name)
)


@final
class SocketListener(Listener[SocketStream]):
    """A :class:`corral.abc.Listener` that accepts connections on a
    listening stream socket and returns them as :class:`SocketStream`.

    Args:
      socket: a :mod:`corral.socket` socket of type ``SOCK_STREAM`` on which
        ``listen()`` was called. The listener owns it from now on: closing
        the listener closes it.

    Attributes:
      socket: the wrapped listening socket.

    Raises:
      TypeError: ``socket`` is not a corral socket.
      ValueError: not a ``SOCK_STREAM`` socket, or not listening (where the
        system can tell: ``SO_ACCEPTCONN``).
    """

    def __init__(self, socket: SocketType) -> None:
        if not isinstance(socket, SocketType):
            raise TypeError("SocketListener requires a corral socket object")
        if socket.type != csocket.SOCK_STREAM:
            raise ValueError("SocketListener requires a SOCK_STREAM socket")
        try:
            listening = socket.getsockopt(csocket.SOL_SOCKET, csocket.SO_ACCEPTCONN)
        except OSError:
            # macOS has no SO_ACCEPTCONN: trust the caller.
            pass
        else:
            if not listening:
                raise ValueError("SocketListener requires a listening socket")
        self.socket = socket

    async def accept(self) -> SocketStream:
        """Wait for a connection and return it as a :class:`SocketStream`.

        Connections that failed while queued (reset by the peer, refused by
        a firewall...: see ``IGNORABLE_ACCEPT_ERRNOS``) are skipped.

        Cancellation: a connection the kernel accepted in the race with the
        cancel is kept: it is returned, and ``Cancelled`` is raised at the
        next checkpoint; no connection is lost or leaked. Cancelled before
        that, the connection stays queued in the kernel's backlog.

        Raises:
          corral.ClosedResourceError: the listener was closed (or another
            task closed it meanwhile).
          corral.BusyResourceError: another task is accepting.
          OSError: other accept errors, including running out of resources
            (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``): those are for
            the caller to handle (:func:`corral.serve_listeners` backs off
            and retries).
        """
        while True:
            try:
                sock, _ = await self.socket.accept()
            except OSError as exc:
                if exc.errno in _CLOSED_ERRNOS:
                    raise ClosedResourceError from None
                if exc.errno not in IGNORABLE_ACCEPT_ERRNOS:
                    raise
            else:
                return SocketStream(sock)

    async def aclose(self) -> None:
        """Close the listening socket. Idempotent; a task blocked in
        :meth:`accept` gets :exc:`corral.ClosedResourceError`. Connections
        still queued in the backlog are reset by the kernel."""
        self.socket.close()
        await checkpoint()
