"""corral's socket objects: Trio's ``trio.socket`` shape on the completion
core.

Every I/O method builds an operation record (``corral/_io/ops.py``) and
awaits it with :func:`corral._io.perform.perform`, the completion core's one
waist. So the rule of ``perform`` holds for every socket call: when an async
method returns or raises, the kernel holds no reference to any memory the
caller can see, and a result the kernel delivered after a cancel request is
returned, not dropped (the surrounding scope then raises ``Cancelled`` at the
next checkpoint).

Per-socket state, and why:

* one *reader* and one *writer* slot: the op a task is waiting on in each
  direction. A second task that tries to wait in the same direction gets
  :exc:`corral.BusyResourceError` (Trio raises it from its readiness wait in
  the same situations). ``close()`` requests cancellation of the ops in the
  slots.
* the *stash*: bytes the kernel delivered to a stream socket beyond what the
  receiving call asked for (a pool buffer holds up to
  ``pool.buffer_size`` bytes; ``recv(4)`` may have got more). The next
  receive of any kind returns stashed bytes first, so no byte is lost or
  reordered. It holds at most one pool buffer (or a small private copy, see
  ``_STASH_COPY_LIMIT``), released when drained or when the socket closes.
* a deferred close: ``close()`` never closes the fd while an op on it is in
  flight. The fd number is released when the last such op has its terminal
  completion, so a late-submitted op can never act on a reused fd number
  (an SQE prepared in this loop turn names the fd by number until the next
  ``io_uring_enter``), and the epoll adapter never loses track of an fd it
  still watches.
"""

from __future__ import annotations

import errno
import os
import select
import socket as _stdlib_socket
import sys
from collections.abc import Iterable
from operator import index as _index
from typing import TYPE_CHECKING, Any, SupportsIndex

from ._core import (
    BusyResourceError,
    Cancelled,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    in_corral_run,
)
from ._io.ops import (
    IN_FLIGHT,
    AcceptOp,
    ConnectOp,
    Operation,
    SendmsgOp,
    SendOp,
    pin,
)
from ._io.perform import cancel_operation, perform
from ._io.readiness import notify_closing as _notify_closing
from ._io.readiness import wait_writable as _wait_writable
from ._socket_resolve import current_socket_factory, resolve_address

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from typing_extensions import Buffer


from ._socket_base import (
    _AF_UNIX,
    _ASYNC_CONNECT_ERRORS,
    _BUSY,
    _CLOSED,
    _EMPTY_VIEW,
    _ENCODABLE,
    _SOCK_CLOEXEC,
    _SOCK_NONBLOCK,
    _WAITING,
    _close_unclaimed_fd,
    _closed_error,
)
from ._socket_recv import _Receiving

################################################################
# SocketType
################################################################


class SocketType:
    """The type of corral's socket objects (Trio's ``trio.socket.SocketType``).

    An abstract class: create sockets with :func:`corral.socket.socket`,
    :func:`~corral.socket.socketpair`, :func:`~corral.socket.fromfd` or
    :func:`~corral.socket.from_stdlib_socket`. Subclass it to write a fake
    socket (with :func:`~corral.socket.set_custom_socket_factory`).
    """

    __slots__ = ()

    def __init__(self) -> None:
        if type(self) is SocketType:
            raise TypeError(
                "SocketType is an abstract class; use corral.socket.socket if you "
                "want to construct a socket object"
            )

    # The real methods live in _SocketType; these document the interface and
    # make a half-written fake socket fail loudly.
    def detach(self) -> int:
        raise NotImplementedError

    def fileno(self) -> int:
        raise NotImplementedError

    def getpeername(self) -> Any:
        raise NotImplementedError

    def getsockname(self) -> Any:
        raise NotImplementedError

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        raise NotImplementedError

    def setsockopt(
        self, level: int, optname: int, value: int | Buffer | None, optlen: int | None = None
    ) -> None:
        raise NotImplementedError

    def listen(self, backlog: int = min(_stdlib_socket.SOMAXCONN, 128)) -> None:
        raise NotImplementedError

    def get_inheritable(self) -> bool:
        raise NotImplementedError

    def set_inheritable(self, inheritable: bool) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        raise NotImplementedError

    @property
    def family(self) -> _stdlib_socket.AddressFamily:
        raise NotImplementedError

    @property
    def type(self) -> _stdlib_socket.SocketKind:
        raise NotImplementedError

    @property
    def proto(self) -> int:
        raise NotImplementedError

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        """Whether ``shutdown(SHUT_WR)`` or ``shutdown(SHUT_RDWR)`` succeeded."""
        raise NotImplementedError

    def __repr__(self) -> str:
        raise NotImplementedError

    def dup(self) -> SocketType:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def bind(self, address: Any) -> None:
        raise NotImplementedError

    def shutdown(self, flag: int) -> None:
        raise NotImplementedError

    def is_readable(self) -> bool:
        """Whether a receive would not block (data, EOF or an error
        waiting)."""
        raise NotImplementedError

    async def wait_writable(self) -> None:
        """Wait until the socket is writable."""
        raise NotImplementedError

    async def accept(self) -> tuple[SocketType, Any]:
        raise NotImplementedError

    async def connect(self, address: Any) -> None:
        raise NotImplementedError

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        raise NotImplementedError

    async def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> int:
        raise NotImplementedError

    async def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        raise NotImplementedError

    async def recvfrom_into(
        self, buffer: Buffer, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, Any]:
        raise NotImplementedError

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        raise NotImplementedError

    async def recvmsg_into(
        self, buffers: Iterable[Buffer], ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        raise NotImplementedError

    async def send(self, data: Buffer, flags: int = 0, /) -> int:
        raise NotImplementedError

    async def sendto(self, *args: Any) -> int:
        raise NotImplementedError

    async def sendmsg(
        self,
        buffers: Iterable[Buffer],
        ancdata: Iterable[tuple[int, int, Buffer]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        raise NotImplementedError


# The abstract methods carry the standard library's documentation.
for _name, _obj in list(SocketType.__dict__.items()):
    if _name.startswith("__") or getattr(_obj, "__doc__", None):
        continue
    _stdlib_obj = getattr(_stdlib_socket.socket, _name, None)
    if _stdlib_obj is not None and _stdlib_obj.__doc__ and callable(_obj):
        _obj.__doc__ = _stdlib_obj.__doc__
del _name, _obj, _stdlib_obj


class _SocketType(_Receiving, SocketType):
    """A corral socket wrapping a non-blocking :class:`socket.socket`."""

    __slots__ = ()

    ################################################################
    # Simple methods and properties (the standard library's)
    ################################################################

    def detach(self) -> int:
        """Like :meth:`socket.socket.detach`: the socket is closed but the
        fd is not; it is returned. Ops still in flight are cancelled (they
        finish on their own; the fd is the caller's now)."""
        self._drop_stash()
        self._fd = -1
        self._recv_op = None
        for op in (self._reader, self._writer):
            if isinstance(op, Operation) and op._state == IN_FLIGHT:
                cancel_operation(op)
        return self._sock.detach()

    def fileno(self) -> int:
        return self._sock.fileno()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        if buflen is None:
            return self._sock.getsockopt(level, optname)
        return self._sock.getsockopt(level, optname, buflen)

    def setsockopt(
        self, level: int, optname: int, value: int | Buffer | None, optlen: int | None = None
    ) -> None:
        if optlen is None:
            if value is None:
                raise TypeError(
                    "invalid value for argument 'value', must not be None when specifying optlen"
                )
            return self._sock.setsockopt(level, optname, value)
        if value is not None:
            raise TypeError(
                f"invalid value for argument 'value': {value!r}, "
                "must be None when specifying optlen"
            )
        return self._sock.setsockopt(level, optname, value, optlen)

    def listen(self, backlog: int = min(_stdlib_socket.SOMAXCONN, 128)) -> None:
        return self._sock.listen(backlog)

    def get_inheritable(self) -> bool:
        return self._sock.get_inheritable()

    def set_inheritable(self, inheritable: bool) -> None:
        return self._sock.set_inheritable(inheritable)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def family(self) -> _stdlib_socket.AddressFamily:
        return self._family

    @property
    def type(self) -> _stdlib_socket.SocketKind:
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        """Whether ``shutdown(SHUT_WR)`` or ``shutdown(SHUT_RDWR)`` succeeded."""
        return self._did_shutdown_SHUT_WR

    def __repr__(self) -> str:
        return repr(self._sock).replace("socket.socket", "corral.socket.socket")

    def dup(self) -> SocketType:
        """Like :meth:`socket.socket.dup`: a new corral socket on a new fd for
        the same kernel socket (stashed bytes stay with this one)."""
        return _SocketType(self._sock.dup())

    def close(self) -> None:
        """Close the socket. Idempotent.

        A task waiting in a method of this socket (another task: a task
        cannot close while it waits) is woken with
        :exc:`corral.ClosedResourceError` ("another task closed this fd"),
        as in Trio. Its kernel op is cancelled first, and the fd itself is
        closed only once no op on it is in flight (usually within the same
        loop turn); :meth:`fileno` returns -1 at once. Stashed bytes are
        dropped.
        """
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        self._recv_op = None
        self._drop_stash()
        pending = [
            op
            for op in (self._reader, self._writer)
            if isinstance(op, Operation) and op._state == IN_FLIGHT
        ]
        if in_corral_run():
            try:
                _notify_closing(fd)
            except RuntimeError:  # a run without a completion backend
                pass
        if not pending:
            self._sock.close()
            return
        self._closing_fd = self._sock.detach()
        for op in pending:
            cancel_operation(op)

    async def bind(self, address: Any) -> None:
        """Bind to ``address``, resolving names first (:func:`getaddrinfo`
        with ``AI_PASSIVE``). Binding an AF_UNIX path runs in a worker thread
        (it touches the filesystem); everything else binds at once (bind(2)
        on an IP socket does not block).

        Raises:
          ValueError: an IP address that is not a (host, port...) tuple.
          OSError: from bind(2) (``EADDRINUSE``...) or resolution.

        This is a checkpoint.
        """
        address = await self._resolve(address, local=True)
        if self._family == _AF_UNIX and address and address[0]:
            from . import to_thread

            return await to_thread.run_sync(self._sock.bind, address)
        await checkpoint()
        return self._sock.bind(address)

    def shutdown(self, flag: int) -> None:
        """Like :meth:`socket.socket.shutdown` (synchronous: shutdown(2)
        does not block); records a successful ``SHUT_WR``/``SHUT_RDWR``
        for :attr:`did_shutdown_SHUT_WR`."""
        self._sock.shutdown(flag)
        if flag in (_stdlib_socket.SHUT_WR, _stdlib_socket.SHUT_RDWR):
            self._did_shutdown_SHUT_WR = True

    def is_readable(self) -> bool:
        """Whether a receive would return at once: stashed bytes, or the
        kernel reports the socket readable (data, EOF or a pending error)."""
        if self._stash is not None:
            return True
        if sys.platform == "win32":  # no poll(); select() takes sockets there
            return bool(select.select([self._sock], [], [], 0)[0])
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0))

    async def wait_writable(self) -> None:
        """Wait until the kernel reports the socket writable
        (:func:`corral.lowlevel.wait_writable`).

        Raises:
          corral.BusyResourceError: another task is sending on, connecting
            or waiting for this socket to be writable.
          corral.ClosedResourceError: the socket was closed meanwhile.
          OSError: ``EBADF`` if the socket is already closed.

        Cancellation returns at once (a readiness wait owns no memory).
        """
        if self._writer is not None:
            raise BusyResourceError(_BUSY)
        if self._fd < 0:
            await checkpoint()
            raise _closed_error()
        self._writer = _WAITING
        try:
            await _wait_writable(self._fd)
        finally:
            self._writer = None

    async def _resolve(self, address: Any, *, local: bool) -> Any:
        sock = self._sock

        def v6only() -> int:
            return sock.getsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY)

        return await resolve_address(
            self._type, self._family, self._proto, address, local=local, v6only=v6only
        )

    ################################################################
    # accept, connect
    ################################################################

    async def accept(self) -> tuple[SocketType, Any]:
        """Accept a connection: ``(socket, address)`` like
        :meth:`socket.socket.accept` (an io_uring / emulated accept4 op).

        The new socket is non-blocking and close-on-exec. ``address`` is the
        peer's address (``None`` in the rare case the peer reset the
        connection before it could be read).

        Cancellation: a connection the kernel accepted in the race with the
        cancel is returned (the scope's ``Cancelled`` comes at the next
        checkpoint); it is never leaked. If the run ends while an accept is
        in flight, a connection accepted then is closed.

        Raises:
          corral.BusyResourceError: another task is already accepting.
          corral.ClosedResourceError: another task closed the socket
            meanwhile (a connection accepted at that moment is closed).
          OSError: ``EBADF`` if closed, ``EINVAL`` if not listening...
        """
        fd = self._fd
        if fd < 0:
            await checkpoint()
            raise _closed_error()
        op = AcceptOp(fd, _SOCK_CLOEXEC | _SOCK_NONBLOCK)
        op._callback = _close_unclaimed_fd
        new_fd: int = await self._read(op)
        try:
            # Explicit family/type/proto: no getsockopt calls; SOCK_NONBLOCK
            # in the type tells the stdlib the fd already is non-blocking.
            sock = _stdlib_socket.socket(
                self._family, self._type | _SOCK_NONBLOCK, self._proto, new_fd
            )
        except BaseException:
            _stdlib_socket.close(new_fd)
            raise
        try:
            address = sock.getpeername()
        except OSError:
            address = None
        return _SocketType(sock), address

    async def connect(self, address: Any) -> None:
        """Connect to ``address`` (names are resolved first).

        Errors are Trio's: ``OSError`` with the errno; failures that come
        back after the handshake started (``ECONNREFUSED``, ``ETIMEDOUT``...)
        say ``"Error connecting to <address>: <reason>"``.

        Cancellation: a connect cannot be taken back once the kernel started
        it, so a cancelled connect closes the socket (as Trio does) and
        raises ``Cancelled``.

        Raises:
          corral.BusyResourceError: another task is sending or connecting.
          ValueError: an IP address that is not a (host, port...) tuple.
          OSError: ``EBADF`` if the socket is closed; the connect failed.
        """
        try:
            address = await self._resolve(address, local=False)
            fd = self._fd
            if fd < 0:
                await checkpoint()
                raise _closed_error()
            if self._family not in _ENCODABLE:
                await self._connect_readiness(address)
                return
            try:
                await self._write(ConnectOp(fd, self._family, address))
            except OSError as exc:
                code = exc.errno
                if code in (errno.EINPROGRESS, errno.EALREADY):
                    # The kernel ran the connect from a worker without its
                    # non-blocking retry loop: wait for the outcome as Trio.
                    await self.wait_writable()
                    code = self._sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
                    if not code:
                        return
                elif code not in _ASYNC_CONNECT_ERRORS or self._family == _AF_UNIX:
                    raise
                raise OSError(
                    code, f"Error connecting to {address!r}: {os.strerror(code)}"
                ) from None
        except Cancelled:
            # The kernel may have half-done it; a socket in an unknown state
            # helps nobody.
            self.close()
            raise

    async def _connect_readiness(self, address: Any) -> None:
        # Trio's way, for families the completion core cannot encode: start
        # the connect, then wait for writability and read SO_ERROR (calling
        # connect again would report EALREADY, not the outcome).
        await checkpoint_if_cancelled()
        try:
            self._sock.connect(address)
        except BlockingIOError:
            pass
        except BaseException:
            await cancel_shielded_checkpoint()
            raise
        else:
            await cancel_shielded_checkpoint()
            return
        await self.wait_writable()
        code = self._sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
        if code:
            raise OSError(code, f"Error connecting to {address!r}: {os.strerror(code)}")

    ################################################################
    # sending
    ################################################################

    async def send(self, data: Buffer, flags: int = 0, /) -> int:
        """Send some of ``data``; return how many were sent, like
        :meth:`socket.socket.send` (a send op; the data is pinned until its
        terminal completion).

        Partial sends are reported, never retried behind your back.
        Cancellation: either the count the kernel sent is returned (and the
        scope raises ``Cancelled`` at the next checkpoint) or ``Cancelled``
        is raised and nothing was sent.

        Raises:
          corral.BusyResourceError: another task is sending or connecting.
          corral.ClosedResourceError: another task closed the socket.
          TypeError: ``data`` is not a bytes-like object.
          OSError: ``EBADF`` if closed; ``EPIPE``, ``ECONNRESET``...
        """
        fd = self._fd
        if fd < 0:
            await checkpoint()
            raise _closed_error()
        if self._writer is not None:
            raise BusyResourceError(_BUSY)
        op = self._send_op
        if op is None:
            op = self._send_op = SendOp(fd, data, flags)
        else:
            op.buffer = memoryview(data) if type(data) is bytes else pin(data, writable=False)
            op.flags = flags if type(flags) is int else _index(flags)
        self._writer = op
        try:
            return await perform(op)  # type: ignore[no-any-return]  # SendOp returns an int
        except OSError:
            if self._fd < 0:
                raise ClosedResourceError(_CLOSED) from None
            raise
        finally:
            op.buffer = _EMPTY_VIEW
            self._writer = None
            if self._closing_fd >= 0:
                self._finish_close()

    async def sendto(self, *args: Any) -> int:
        """``sendto(data[, flags], address)``: like
        :meth:`socket.socket.sendto`; names in ``address`` are resolved
        first. A sendmsg op; cancellation as :meth:`send`."""
        if not 2 <= len(args) <= 3:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args)} given)")
        data = args[0]
        flags = _index(args[1]) if len(args) == 3 else 0
        address = await self._resolve(args[-1], local=False)
        return await self._sendmsg([data], (), flags, address, "sendto")

    async def sendmsg(
        self,
        buffers: Iterable[Buffer],
        ancdata: Iterable[tuple[int, int, Buffer]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        """Like :meth:`socket.socket.sendmsg` (ancillary data such as
        ``SCM_RIGHTS`` included); ``address`` is resolved first. Every
        buffer is pinned until the terminal completion; cancellation as
        :meth:`send`."""
        if address is not None:
            address = await self._resolve(address, local=False)
        return await self._sendmsg(buffers, ancdata, _index(flags), address, "sendmsg")

    async def _sendmsg(
        self, buffers: Any, ancdata: Any, flags: int, address: Any, what: str
    ) -> int:
        fd = self._fd
        if fd < 0:
            await checkpoint()
            raise _closed_error()
        if address is not None and self._family not in _ENCODABLE:
            if what == "sendto":
                return await self._nonblocking(  # type: ignore[no-any-return]
                    False, self._sock.sendto, next(iter(buffers)), flags, address
                )
            return await self._nonblocking(  # type: ignore[no-any-return]
                False, self._sock.sendmsg, buffers, ancdata, flags, address
            )
        items = []
        for item in ancdata:
            if not isinstance(item, tuple) or len(item) != 3:
                raise TypeError(
                    "[sendmsg() ancillary data items]() argument must be sequence of length 3"
                )
            items.append(item)
        op = SendmsgOp(fd, buffers, items, flags, self._family, address)
        try:
            return await self._write(op)  # type: ignore[no-any-return]
        finally:
            op.buffers = []


################################################################
# Constructors
################################################################


def from_stdlib_socket(sock: _stdlib_socket.socket) -> SocketType:
    """Wrap a standard library :class:`socket.socket` in a corral socket
    (which makes it non-blocking). The corral socket owns it from now on.

    Raises:
      TypeError: ``sock`` is not exactly a ``socket.socket`` (an
        ``ssl.SSLSocket`` cannot be wrapped).
    """
    return _SocketType(sock)


def _sniff_sockopts_for_fileno(
    family: int, type_: int, proto: int, fileno: int | None
) -> tuple[int, int, int]:
    """The real family/type/protocol of an existing fd (Linux can tell);
    the given values elsewhere."""
    if sys.platform != "linux":
        return family, type_, proto
    probe = _stdlib_socket.socket(family, type_, proto, fileno=fileno)
    try:
        family = probe.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_DOMAIN)
        proto = probe.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_PROTOCOL)
        type_ = probe.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_TYPE)
    finally:
        probe.detach()  # the fd is not ours to close
    return family, type_, proto


if sys.platform == "win32":

    def fromshare(info: bytes) -> SocketType:
        """Like :func:`socket.fromshare` (Windows: a socket another process
        shared with ``socket.share``), returning a corral socket."""
        return from_stdlib_socket(_stdlib_socket.fromshare(info))


def fromfd(
    fd: SupportsIndex,
    family: int = _stdlib_socket.AF_INET,
    type: int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
) -> SocketType:
    """Like :func:`socket.fromfd` (it duplicates ``fd``), returning a corral
    socket. On Linux the family, type and protocol are read from the fd."""
    family, type, proto = _sniff_sockopts_for_fileno(family, type, proto, _index(fd))
    return from_stdlib_socket(_stdlib_socket.fromfd(fd, family, type, proto))


def socketpair(
    family: int | None = None,
    type: int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
) -> tuple[SocketType, SocketType]:
    """Like :func:`socket.socketpair`, returning two connected corral
    sockets (AF_UNIX by default; AF_INET on Windows, as the stdlib)."""
    if family is None:
        family = getattr(_stdlib_socket, "AF_UNIX", _stdlib_socket.AF_INET)
    left, right = _stdlib_socket.socketpair(family, type | _SOCK_NONBLOCK, proto)
    return _SocketType(left), _SocketType(right)


def socket(
    family: int = _stdlib_socket.AF_INET,
    type: int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
    fileno: int | None = None,
) -> SocketType:
    """Create a corral socket, like :class:`socket.socket` (non-blocking,
    close-on-exec).

    Without ``fileno``, a custom factory set with
    :func:`set_custom_socket_factory` makes the socket instead. With
    ``fileno``, the socket takes ownership of that fd; on Linux its real
    family, type and protocol are read from it.
    """
    if fileno is None:
        factory = current_socket_factory()
        if factory is not None:
            return factory.socket(family, type, proto)  # type: ignore[return-value]
        return _SocketType(_stdlib_socket.socket(family, type | _SOCK_NONBLOCK, proto))
    family, type, proto = _sniff_sockopts_for_fileno(family, type, proto, fileno)
    return _SocketType(_stdlib_socket.socket(family, type, proto, fileno))


__all__ = [
    "SocketType",
    "from_stdlib_socket",
    "fromfd",
    "socket",
    "socketpair",
]
