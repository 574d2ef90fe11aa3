"""The core of a corral socket: its per-socket state, the op paths shared
by its methods, the stash, and address decoding. ``corral/_socket.py`` has the
module docstring that explains the design; ``_socket_recv.py`` the receive
methods.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import struct
from typing import TYPE_CHECKING, Any

from ._core import (
    BusyResourceError,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
)
from ._io.ops import (
    IN_FLIGHT,
    AcceptOp,
    Operation,
    RecvPoolOp,
    SendOp,
    pin,
)
from ._io.perform import current_backend, perform
from ._io.readiness import wait_readable as _wait_readable
from ._io.readiness import wait_writable as _wait_writable

if TYPE_CHECKING:
    from ._io.pool import Lease

_AF_INET = _stdlib_socket.AF_INET
_AF_INET6 = _stdlib_socket.AF_INET6
# Windows Python has no AF_UNIX, SOCK_NONBLOCK or SOCK_CLOEXEC: -1 is a
# family no socket has, 0 a flag that sets nothing.
_AF_UNIX: int = getattr(_stdlib_socket, "AF_UNIX", -1)
_SOCK_STREAM = _stdlib_socket.SOCK_STREAM
_SOCK_NONBLOCK: int = getattr(_stdlib_socket, "SOCK_NONBLOCK", 0)
_SOCK_CLOEXEC: int = getattr(_stdlib_socket, "SOCK_CLOEXEC", 0)
_MSG_PEEK = _stdlib_socket.MSG_PEEK
_MSG_OOB = _stdlib_socket.MSG_OOB
_EBADF = errno.EBADF
_NATIVE_U16 = struct.Struct("=H")
_IN6_TAIL = struct.Struct("!HI")
_U32 = struct.Struct("=I")
#: Families whose addresses the completion core can encode (``_sockaddr``);
#: other families connect/send-to through the readiness path.
_ENCODABLE = frozenset({_AF_INET, _AF_INET6, _AF_UNIX})
#: connect(2) errors that arrive after the handshake started; Trio reports
#: these as "Error connecting to <address>: ...", since they come back
#: through SO_ERROR there.
_ASYNC_CONNECT_ERRORS = frozenset(
    {errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ECONNRESET,
     errno.ECONNABORTED}
)  # fmt: skip
#: Stash leftovers at most this long are copied out and the pool buffer is
#: released at once: a few bytes must not pin a whole buffer on an idle
#: connection. Longer leftovers keep the buffer (no copy).
_STASH_COPY_LIMIT = 1024
_EMPTY_VIEW = memoryview(b"")

_BUSY = "another task is already reading / writing this fd"
_CLOSED = "another task closed this fd"


class _Waiting:
    """Occupies a direction slot while ``wait_writable`` waits (no op)."""

    __slots__ = ()


_WAITING = _Waiting()


def _closed_error() -> OSError:
    return OSError(_EBADF, os.strerror(_EBADF))


def decode_sockaddr(raw: bytes) -> Any:
    """Decode a kernel ``struct sockaddr`` (as :class:`RecvmsgOp` reports it)
    into the Python address the standard library would return: ``None`` when
    the kernel reported none, ``(host, port)`` for AF_INET, ``(host, port,
    flowinfo, scope_id)`` for AF_INET6, a ``str`` path (or ``bytes`` for an
    abstract name, ``""`` for an unnamed peer) for AF_UNIX, and the raw bytes
    for other families."""
    if not raw:
        return None
    family = _NATIVE_U16.unpack_from(raw)[0]
    if family == _AF_INET and len(raw) >= 8:
        return (_stdlib_socket.inet_ntop(_AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big"))
    if family == _AF_INET6 and len(raw) >= 24:
        port, flowinfo = _IN6_TAIL.unpack_from(raw, 2)
        scope_id = _U32.unpack_from(raw, 24)[0] if len(raw) >= 28 else 0
        return (_stdlib_socket.inet_ntop(_AF_INET6, raw[8:24]), port, flowinfo, scope_id)
    if family == _AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return path  # Linux abstract namespace: length-delimited bytes
        return os.fsdecode(path.split(b"\0", 1)[0])
    return raw


def _writable_view(obj: object, what: str) -> memoryview:
    """A flat writable byte view of ``obj`` (stdlib error messages)."""
    try:
        view = pin(obj, writable=True)
    except TypeError:
        raise TypeError(
            f"{what}() argument 1 must be read-write bytes-like object, not {type(obj).__name__}"
        ) from None
    return view


def _release_lease(lease: Lease) -> None:
    # A lease outliving its run (a stash on a socket closed after the run)
    # is fine to release: the closed pool ignores it.
    if not lease.released:
        lease.release()


def _close_unclaimed_fd(op: Operation) -> None:
    """Callback of accept ops: at the run's shutdown nobody waits for the op
    any more, and a connection accepted then must not leak its fd."""
    if op.res >= 0:
        _stdlib_socket.close(op.res)  # os.close cannot close a Windows socket


class _SocketCore:
    """The state of a corral socket and the op paths its methods share
    (``_socket.py`` and ``_socket_recv.py`` add the public methods)."""

    __slots__ = (
        "__weakref__",
        "_closing_fd",
        "_did_shutdown_SHUT_WR",
        "_family",
        "_fd",
        "_pool_recv",
        "_proto",
        "_reader",
        "_recv_op",
        "_send_op",
        "_sock",
        "_stash",
        "_stash_lease",
        "_type",
        "_writer",
    )

    def __init__(self, sock: _stdlib_socket.socket) -> None:
        if type(sock) is not _stdlib_socket.socket:
            # ssl.SSLSocket and friends subclass socket.socket; wrapping one
            # would bypass its protocol.
            raise TypeError(f"expected object of type 'socket.socket', not '{type(sock).__name__}'")
        self._sock = sock
        # A timeout of 0.0 means the stdlib already made the fd non-blocking
        # (SOCK_NONBLOCK at creation, or setblocking(False)): skip the two
        # fcntl calls.
        if sock.gettimeout() != 0.0:
            sock.setblocking(False)
        self._fd = sock.fileno()
        self._family = sock.family
        self._type = sock.type
        self._proto = sock.proto
        # Stream sockets receive through the pool (an idle connection pins no
        # memory); datagram sockets into a buffer of the requested size, since
        # where a datagram is truncated depends on it.
        self._pool_recv = self._type == _SOCK_STREAM
        self._did_shutdown_SHUT_WR = False
        self._reader: object = None
        self._writer: object = None
        # The reusable pool receive of stream sockets; None also means "no
        # fast path" (datagram socket, or closed), so recv checks one slot.
        self._recv_op: RecvPoolOp | None = (
            RecvPoolOp(self._fd) if self._pool_recv and self._fd >= 0 else None
        )
        self._send_op: SendOp | None = None
        self._stash: memoryview | None = None
        self._stash_lease: Lease | None = None
        self._closing_fd = -1

    def _finish_close(self) -> None:
        # Called after an op's terminal completion on a closed socket.
        for op in (self._reader, self._writer):
            if isinstance(op, Operation) and op._state == IN_FLIGHT:
                return
        fd, self._closing_fd = self._closing_fd, -1
        if fd >= 0:
            _stdlib_socket.close(fd)

    ################################################################
    # The op paths shared by several methods
    ################################################################

    async def _read(self, op: Operation) -> Any:
        """Await ``op`` in the reader slot (busy / closed handling)."""
        if self._reader is not None:
            raise BusyResourceError(_BUSY)
        self._reader = op
        try:
            result = await perform(op)
        except OSError:
            if self._fd < 0:
                raise ClosedResourceError(_CLOSED) from None
            raise
        finally:
            self._reader = None
            if self._closing_fd >= 0:
                self._finish_close()
        if self._fd < 0:
            self._discard(op, result)
            raise ClosedResourceError(_CLOSED)
        return result

    async def _write(self, op: Operation) -> Any:
        """Await ``op`` in the writer slot (busy / closed handling)."""
        if self._writer is not None:
            raise BusyResourceError(_BUSY)
        self._writer = op
        try:
            result = await perform(op)
        except OSError:
            if self._fd < 0:
                raise ClosedResourceError(_CLOSED) from None
            raise
        finally:
            self._writer = None
            if self._closing_fd >= 0:
                self._finish_close()
        if self._fd < 0:
            raise ClosedResourceError(_CLOSED)
        return result

    @staticmethod
    def _discard(op: Operation, result: Any) -> None:
        # A result that arrived for a socket closed meanwhile.
        if isinstance(op, AcceptOp):
            _stdlib_socket.close(result)
        elif result is not None and isinstance(op, RecvPoolOp):
            result.release()

    async def _nonblocking(self, wait_readable: bool, fn: Any, *args: Any) -> Any:
        """Trio's readiness path, for the few calls the completion core has no
        op for (addresses of families it cannot encode): try ``fn`` at once,
        and on ``BlockingIOError`` wait for readiness and retry."""
        await checkpoint_if_cancelled()
        try:
            result = fn(*args)
        except BlockingIOError:
            pass
        except BaseException:
            await cancel_shielded_checkpoint()
            raise
        else:
            await cancel_shielded_checkpoint()
            return result
        wait = _wait_readable if wait_readable else _wait_writable
        while True:
            await wait(self._fd)
            try:
                return fn(*args)
            except BlockingIOError:
                pass

    ################################################################
    # The stash
    ################################################################

    def _stash_rest(self, lease: Lease, start: int) -> None:
        rest = lease.nbytes - start
        if rest <= _STASH_COPY_LIMIT or current_backend().pool.statistics().waiting:
            # Small, or others wait for buffers: copy and give it back.
            self._stash = memoryview(bytes(lease.data[start:]))
            lease.release()
        else:
            self._stash = lease.data[start:]
            self._stash_lease = lease

    def _take_stash(self, n: int, peek: bool = False) -> bytes:
        view = self._stash
        assert view is not None
        if len(view) > n:
            data = bytes(view[:n])
            if not peek:
                self._stash = view[n:]
            return data
        data = bytes(view)
        if not peek:
            self._drop_stash()
        return data

    def _stash_into(self, target: memoryview) -> int:
        view = self._stash
        assert view is not None
        n = min(len(view), len(target))
        target[:n] = view[:n]
        if n < len(view):
            self._stash = view[n:]
        else:
            self._drop_stash()
        return n

    def _drop_stash(self) -> None:
        self._stash = None
        lease = self._stash_lease
        if lease is not None:
            self._stash_lease = None
            _release_lease(lease)
