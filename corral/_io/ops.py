"""The op vocabulary: backend-neutral records of kernel operations.

An *operation record* says what to ask the kernel and **owns every piece of
memory the kernel may touch** until the op's terminal completion: user
buffers are pinned through a buffer export (a :class:`memoryview`, so a
``bytearray`` cannot be resized while the kernel may write into it),
sockaddrs and paths are encoded into bytes the record holds, and anything a
backend allocates for the kernel (iovec arrays, msghdrs, statx blocks) hangs
off the record's ``_kmem`` slot until the terminal completion.

Lifecycle (``_state``)::

    NEW --submit--> IN_FLIGHT --terminal completion--> DONE
                       |  (cancel(op) only sets _cancel_requested)
                       |  (multishot: any number of non-terminal completions)

An op in ``DONE`` may be submitted again (a socket can reuse its receive
record); each submission gets a fresh backend token (io_uring user_data), so a
late completion of an earlier submission can never be mistaken for a later
one.

The terminal completion fills ``res`` (the kernel's result: ``>= 0`` success,
``-errno`` failure, io_uring convention on every backend), ``cqe_flags`` and,
for buffer-selecting ops, ``lease`` (a :class:`~corral._io.pool.Lease` on the
pool buffer the kernel chose). ``_result()`` then turns that into the value
:func:`~corral._io.perform.perform` returns, or raises.

Records are plain ``__slots__`` classes: one is built per I/O call, so
construction is a handful of attribute stores plus input validation (bad
input raises ``TypeError``/``ValueError`` here, at the call, never later in a
backend).
"""

from __future__ import annotations

import errno
import math
import operator
import os
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from ._sockaddr import encode_sockaddr

if TYPE_CHECKING:
    from .pool import Lease

# _state values. Ints, compared by identity-cheap equality on the hot path.
NEW = 0
IN_FLIGHT = 1
DONE = 2

_ECANCELED = errno.ECANCELED
_EINTR = errno.EINTR
_ETIME = errno.ETIME
# Linux-only flags, 0 where the platform has none (Windows), so the op
# records import everywhere; a backend that cannot honour a flag ignores it.
_SOCK_CLOEXEC: int = getattr(socket, "SOCK_CLOEXEC", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)

AT_FDCWD = -100
#: statx(2) mask for the fields ``os.stat`` reports.
STATX_BASIC_STATS = 0x7FF
AT_EMPTY_PATH = 0x1000


def raise_errno(res: int) -> NoReturn:
    """Raise ``OSError(-res)`` for a negative kernel result."""
    raise OSError(-res, os.strerror(-res))


def _fd(fd: object, what: str = "fd") -> int:
    try:
        value = operator.index(fd)  # type: ignore[arg-type]  # checked by the except
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(fd).__name__}") from None
    if value < 0:
        raise ValueError(f"{what} must be a non-negative file descriptor, not {value}")
    return value


def _offset(offset: object) -> int:
    try:
        value = operator.index(offset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"offset must be an int, not {type(offset).__name__}") from None
    if value < -1:
        raise ValueError(f"offset must be >= 0, or -1 for the current position; got {value}")
    return value


def _size(n: object, what: str = "nbytes") -> int:
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(n).__name__}") from None
    if value < 0:
        raise ValueError(f"negative {what}: {value}")
    return value


def pin(obj: object, *, writable: bool) -> memoryview:
    """Pin ``obj``'s memory for the life of an op and return it as a flat,
    C-contiguous byte view.

    The returned view holds a buffer export: while it lives, a ``bytearray``
    cannot be resized (``BufferError``), so the address the kernel was given
    stays valid.

    Raises:
      TypeError: ``obj`` is not a bytes-like object, is read-only while the
        kernel must write into it, or is not contiguous.
    """
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(obj).__name__}'") from None
    if writable and view.readonly:
        view.release()
        raise TypeError(
            f"a writable bytes-like object is required (bytearray, memoryview, ...), "
            f"not '{type(obj).__name__}'"
        )
    if not view.c_contiguous:
        view.release()
        raise TypeError("the buffer must be C-contiguous")
    if view.ndim != 1 or view.format != "B":
        flat = view.cast("B")
        view.release()
        view = flat
    return view


def _pin_ro(obj: object) -> memoryview:
    # pin(obj, writable=False) for the common cases without its checks:
    # bytes and bytearray always give a flat, contiguous byte view.
    t = type(obj)
    if t is bytes or t is bytearray:
        return memoryview(obj)  # type: ignore[arg-type]  # bytes or bytearray
    return pin(obj, writable=False)


def _pin_rw(obj: object) -> memoryview:
    # pin(obj, writable=True), with the same shortcut for bytearray.
    if type(obj) is bytearray:
        return memoryview(obj)
    return pin(obj, writable=True)


class Operation:
    """Base of every operation record. See the module docstring.

    Fields a backend reads and writes (nobody else writes them):

    * ``_state``: ``NEW`` / ``IN_FLIGHT`` / ``DONE``.
    * ``_token``: the backend's handle for the current submission (io_uring:
      the user_data; ``0`` when not in flight).
    * ``_task``: the task parked in :func:`perform` on this op, or ``None``.
    * ``_callback``: called as ``callback(op)`` instead of rescheduling a task
      when the op completes and no task waits (orphaned ops, multishot
      stashes, ``wait_readable`` bookkeeping).
    * ``_cancel_requested``: ``cancel(op)`` was called for this submission.
    * ``_raise_cancel``: the runner's ``raise_cancel`` captured by the abort
      callback; raised on a terminal "cancelled" result.
    * ``_kmem``: backend-allocated kernel-visible memory (kept until DONE).
    * ``res`` / ``cqe_flags`` / ``lease``: the terminal completion.
    """

    __slots__ = (
        "_callback",
        "_cancel_requested",
        "_kmem",
        "_raise_cancel",
        "_state",
        "_task",
        "_token",
        "cqe_flags",
        "lease",
        "res",
    )

    #: Short name used in reprs and leak reports.
    kind: ClassVar[str] = "op"
    #: The op delivers a stream of results (see :func:`perform`).
    multishot: ClassVar[bool] = False
    #: The kernel picks a pool buffer for the op's data (io_uring
    #: IOSQE_BUFFER_SELECT; emulated by the readiness adapters).
    buffer_select: ClassVar[bool] = False

    def __init__(self) -> None:
        self._state = NEW
        self._token = 0
        self._task: Any = None
        self._callback: Any = None
        self._cancel_requested = False
        self._raise_cancel: Any = None
        self._kmem: Any = None
        self.res = 0
        self.cqe_flags = 0
        self.lease: Lease | None = None

    @property
    def done(self) -> bool:
        """True once the terminal completion has arrived."""
        return self._state == DONE

    @property
    def in_flight(self) -> bool:
        """True between submission and the terminal completion."""
        return self._state == IN_FLIGHT

    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        state = ("new", "in flight", "done")[self._state]
        extra = self._describe()
        return f"<{self.kind} op{' ' + extra if extra else ''} {state}>"

    # -- result translation (runs in the task, after the terminal completion)

    def _result(self) -> Any:
        res = self.res
        if res < 0:
            self._fail(res)
        return res

    def _fail(self, res: int) -> NoReturn:
        # "Raise Cancelled only if the kernel cancelled it": ECANCELED is the
        # result of a request removed by IORING_OP_ASYNC_CANCEL
        # (io_uring_prep_cancel(3)); a request already running in an io-wq
        # worker is interrupted with a signal and may report EINTR instead
        # (io_uring/io-wq.c sends the worker a notification signal). Either
        # one after *our* cancel request means "cancelled, no effect". The
        # same errno without a cancel request is an ordinary OSError.
        lease = self.lease
        if lease is not None:
            self.lease = None
            lease.release()
        raise_cancel = self._raise_cancel
        if raise_cancel is not None and (res == -_ECANCELED or res == -_EINTR):
            self._raise_cancel = None
            raise_cancel()
        raise_errno(res)


class NopOp(Operation):
    """IORING_OP_NOP: completes at once with result ``None``. Used to measure
    the per-op overhead and in tests."""

    __slots__ = ()
    kind = "nop"

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


class TimeoutOp(Operation):
    """Complete after ``seconds`` (a relative kernel timer). Returns ``None``."""

    __slots__ = ("seconds",)
    kind = "timeout"

    def __init__(self, seconds: float) -> None:
        Operation.__init__(self)
        if not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"timeout must be non-negative, not {seconds!r}")
        self.seconds = float(seconds)

    def _result(self) -> None:
        # IORING_OP_TIMEOUT reports expiry as -ETIME (io_uring_prep_timeout(3)).
        res = self.res
        if res < 0 and res != -_ETIME:
            self._fail(res)


class _FdOp(Operation):
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        Operation.__init__(self)
        self.fd = _fd(fd)

    def _describe(self) -> str:
        return f"fd={self.fd}"


class ReadOp(_FdOp):
    """read(2)/pread(2) into a writable user buffer. ``offset=-1`` reads at
    the file position. Returns the number of bytes read (0 at EOF)."""

    __slots__ = ("buffer", "offset")
    kind = "read"

    def __init__(self, fd: int, buffer: object, offset: int = -1) -> None:
        # Operation.__init__ and _FdOp.__init__, inlined: one record is
        # built per I/O call (tests/_io/test_ops.py checks the fields match).
        self._state = NEW
        self._token = 0
        self._task = None
        self._callback = None
        self._cancel_requested = False
        self._raise_cancel = None
        self._kmem = None
        self.res = 0
        self.cqe_flags = 0
        self.lease = None
        self.fd = fd if type(fd) is int and fd >= 0 else _fd(fd)
        self.offset = offset if type(offset) is int and offset >= -1 else _offset(offset)
        self.buffer = _pin_rw(buffer)


class WriteOp(_FdOp):
    """write(2)/pwrite(2) from a bytes-like object. Returns bytes written."""

    __slots__ = ("buffer", "offset")
    kind = "write"

    def __init__(self, fd: int, data: object, offset: int = -1) -> None:
        # Operation.__init__ and _FdOp.__init__, inlined: one record is
        # built per I/O call (tests/_io/test_ops.py checks the fields match).
        self._state = NEW
        self._token = 0
        self._task = None
        self._callback = None
        self._cancel_requested = False
        self._raise_cancel = None
        self._kmem = None
        self.res = 0
        self.cqe_flags = 0
        self.lease = None
        self.fd = fd if type(fd) is int and fd >= 0 else _fd(fd)
        self.offset = offset if type(offset) is int and offset >= -1 else _offset(offset)
        self.buffer = _pin_ro(data)


class ReadvOp(_FdOp):
    """readv(2)/preadv(2) into several writable buffers. Returns bytes read."""

    __slots__ = ("buffers", "offset")
    kind = "readv"

    def __init__(self, fd: int, buffers: Any, offset: int = -1) -> None:
        _FdOp.__init__(self, fd)
        self.offset = _offset(offset)
        self.buffers = [pin(b, writable=True) for b in buffers]


class WritevOp(_FdOp):
    """writev(2)/pwritev(2) from several buffers. Returns bytes written."""

    __slots__ = ("buffers", "offset")
    kind = "writev"

    def __init__(self, fd: int, buffers: Any, offset: int = -1) -> None:
        _FdOp.__init__(self, fd)
        self.offset = _offset(offset)
        self.buffers = [pin(b, writable=False) for b in buffers]


def _pool_result(op: Any) -> Lease | None:
    """Result of a buffer-selecting op: a Lease on the pool buffer holding
    ``res`` bytes, or ``None`` at end of file (0 bytes)."""
    res: int = op.res
    if res < 0:
        op._fail(res)
    lease: Lease | None = op.lease
    op.lease = None
    if res == 0:
        if lease is not None:
            lease.release()
        return None
    if lease is None:  # pragma: no cover - a backend bug
        from .._core import CorralInternalError

        raise CorralInternalError(f"{op!r} completed with {res} bytes but no buffer")
    return lease


class ReadPoolOp(_FdOp):
    """read(2) into a pool buffer the kernel picks when data is ready.
    Returns a :class:`~corral._io.pool.Lease` (``None`` at EOF)."""

    __slots__ = ("offset",)
    kind = "read_pool"
    buffer_select = True

    def __init__(self, fd: int, offset: int = -1) -> None:
        _FdOp.__init__(self, fd)
        self.offset = _offset(offset)

    def _result(self) -> Lease | None:
        return _pool_result(self)


class RecvOp(_FdOp):
    """recv(2) into a writable user buffer. Returns bytes received."""

    __slots__ = ("buffer", "flags")
    kind = "recv"

    def __init__(self, fd: int, buffer: object, flags: int = 0) -> None:
        # Operation.__init__ and _FdOp.__init__, inlined: one record is
        # built per I/O call (tests/_io/test_ops.py checks the fields match).
        self._state = NEW
        self._token = 0
        self._task = None
        self._callback = None
        self._cancel_requested = False
        self._raise_cancel = None
        self._kmem = None
        self.res = 0
        self.cqe_flags = 0
        self.lease = None
        self.fd = fd if type(fd) is int and fd >= 0 else _fd(fd)
        self.flags = flags if type(flags) is int else operator.index(flags)
        self.buffer = _pin_rw(buffer)


class RecvPoolOp(_FdOp):
    """recv(2) into a pool buffer chosen when data arrives, so an idle
    receive holds no buffer. Returns a Lease, or ``None`` at EOF."""

    __slots__ = ("flags",)
    kind = "recv_pool"
    buffer_select = True

    def __init__(self, fd: int, flags: int = 0) -> None:
        # Operation.__init__ and _FdOp.__init__, inlined: one record is
        # built per I/O call (tests/_io/test_ops.py checks the fields match).
        self._state = NEW
        self._token = 0
        self._task = None
        self._callback = None
        self._cancel_requested = False
        self._raise_cancel = None
        self._kmem = None
        self.res = 0
        self.cqe_flags = 0
        self.lease = None
        self.fd = fd if type(fd) is int and fd >= 0 else _fd(fd)
        self.flags = flags if type(flags) is int else operator.index(flags)

    def _result(self) -> Lease | None:
        return _pool_result(self)


class SendOp(_FdOp):
    """send(2) from a bytes-like object. Returns bytes sent."""

    __slots__ = ("buffer", "flags")
    kind = "send"

    def __init__(self, fd: int, data: object, flags: int = 0) -> None:
        # Operation.__init__ and _FdOp.__init__, inlined: one record is
        # built per I/O call (tests/_io/test_ops.py checks the fields match).
        self._state = NEW
        self._token = 0
        self._task = None
        self._callback = None
        self._cancel_requested = False
        self._raise_cancel = None
        self._kmem = None
        self.res = 0
        self.cqe_flags = 0
        self.lease = None
        self.fd = fd if type(fd) is int and fd >= 0 else _fd(fd)
        self.flags = flags if type(flags) is int else operator.index(flags)
        self.buffer = _pin_ro(data)


class RecvmsgOp(_FdOp):
    """recvmsg(2) into user buffers. Returns ``(nbytes, ancdata, msg_flags,
    address)`` like :meth:`socket.socket.recvmsg_into`; ``address`` is the
    raw sockaddr bytes (``b""`` when the socket reports none)."""

    __slots__ = ("ancbufsize", "buffers", "flags", "out")
    kind = "recvmsg"

    def __init__(self, fd: int, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> None:
        _FdOp.__init__(self, fd)
        self.buffers = [pin(b, writable=True) for b in buffers]
        self.ancbufsize = _size(ancbufsize, "ancbufsize")
        self.flags = operator.index(flags)
        #: Filled by the backend: (ancdata, msg_flags, address).
        self.out: tuple[list[tuple[int, int, bytes]], int, Any] = ([], 0, b"")

    def _result(self) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        res = self.res
        if res < 0:
            self._fail(res)
        fill = getattr(self._kmem, "fill_recvmsg", None)
        if fill is not None:
            fill(self)
        return (res, *self.out)


class SendmsgOp(_FdOp):
    """sendmsg(2). ``ancdata`` is a list of ``(level, type, data)``;
    ``address`` is ``None`` or a Python address for ``family``. Returns bytes
    sent."""

    __slots__ = ("address", "ancdata", "buffers", "family", "flags", "sockaddr")
    kind = "sendmsg"

    def __init__(
        self,
        fd: int,
        buffers: Any,
        ancdata: Any = (),
        flags: int = 0,
        family: int = socket.AF_UNSPEC,
        address: object = None,
    ) -> None:
        _FdOp.__init__(self, fd)
        self.buffers = [pin(b, writable=False) for b in buffers]
        self.ancdata = [(int(lv), int(ty), bytes(data)) for lv, ty, data in ancdata]
        self.flags = operator.index(flags)
        self.family = family
        self.address = address
        self.sockaddr = b"" if address is None else encode_sockaddr(family, address)


class AcceptOp(_FdOp):
    """accept4(2). Returns the new connection's fd (close-on-exec by
    default).

    After a successful completion, :attr:`peer_address` is the connection's
    peer address as :meth:`socket.socket.accept` would return it, when the
    backend reports it (io_uring fills a sockaddr, the epoll adapter gets it
    from accept4, the Windows backends from getpeername); it is ``None``
    before that, after a failure, and on backends that do not report it
    (the fake kernel): then ask the connection (``getpeername``).
    """

    __slots__ = ("flags", "peer_address")
    kind = "accept"

    def __init__(self, fd: int, flags: int = _SOCK_CLOEXEC) -> None:
        _FdOp.__init__(self, fd)
        self.flags = operator.index(flags)
        #: The peer's address (see the class docstring); set by the backend
        #: at completion, or decoded from ``_kmem`` by ``_result``.
        self.peer_address: Any = None

    def _result(self) -> int:
        res = self.res
        if res < 0:
            self.peer_address = None
            self._fail(res)
        peer = getattr(self._kmem, "accept_peer", None)
        if peer is not None:
            self.peer_address = peer()
        return res


class _MultishotBase(_FdOp):
    """A multishot op: one submission, a stream of results.

    Non-terminal completions are queued on ``_queue`` as ``(res, lease)``
    pairs by the backend; :func:`perform` pops them. The terminal completion
    sets ``_state = DONE`` and queues its own result last, with
    ``_TERMINAL``. Results queue up even while no task waits (that queue is
    the resource's stash).
    """

    __slots__ = ("_queue",)
    multishot = True

    def __init__(self, fd: int) -> None:
        _FdOp.__init__(self, fd)
        self._queue: deque[tuple[int, Lease | None, bool]] = deque()

    def _rearm_after(self, res: int) -> bool:
        """Whether a terminal completion carrying ``res`` means "stopped, but
        healthy": the backend then queues ``res`` as an ordinary result and
        re-submits the op (unless a cancel was requested)."""
        raise NotImplementedError

    def _item(self, res: int, lease: Lease | None) -> Any:
        raise NotImplementedError


class AcceptMultishotOp(_MultishotBase):
    """Multishot accept (Linux 5.19): each result is a new connection's fd."""

    __slots__ = ("flags",)
    kind = "accept_multishot"

    def __init__(self, fd: int, flags: int = _SOCK_CLOEXEC) -> None:
        _MultishotBase.__init__(self, fd)
        self.flags = operator.index(flags)

    def _rearm_after(self, res: int) -> bool:
        return res >= 0

    def _item(self, res: int, lease: Lease | None) -> int:
        if lease is not None:  # pragma: no cover - accept never selects a buffer
            lease.release()
        return res


class RecvMultishotOp(_MultishotBase):
    """Multishot receive into pool buffers (Linux 6.0): each result is a
    Lease; the stream ends at EOF."""

    __slots__ = ("flags",)
    kind = "recv_multishot"
    buffer_select = True

    def __init__(self, fd: int, flags: int = 0) -> None:
        _MultishotBase.__init__(self, fd)
        self.flags = operator.index(flags)

    def _rearm_after(self, res: int) -> bool:
        # res == 0 is EOF: the stream is over.
        return res > 0

    def _item(self, res: int, lease: Lease | None) -> Lease:
        if lease is None:  # pragma: no cover - a backend bug
            from .._core import CorralInternalError

            raise CorralInternalError(f"{self!r} delivered {res} bytes without a buffer")
        return lease


class ConnectOp(_FdOp):
    """connect(2) to ``address`` (a Python address for ``family``; numeric
    hosts only). Returns ``None``."""

    __slots__ = ("address", "family", "sockaddr")
    kind = "connect"

    def __init__(self, fd: int, family: int, address: object) -> None:
        _FdOp.__init__(self, fd)
        self.family = family
        self.address = address
        self.sockaddr = encode_sockaddr(family, address)

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


class ShutdownOp(_FdOp):
    """shutdown(2). ``how`` is ``socket.SHUT_RD/WR/RDWR``. Returns ``None``."""

    __slots__ = ("how",)
    kind = "shutdown"

    def __init__(self, fd: int, how: int) -> None:
        _FdOp.__init__(self, fd)
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError(f"invalid shutdown mode {how!r}")
        self.how = how

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


class CloseOp(_FdOp):
    """close(2). Returns ``None``. Cancel ops on the fd first: closing an fd
    does not cancel io_uring requests that already hold a file reference."""

    __slots__ = ()
    kind = "close"

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


class PollOp(_FdOp):
    """One-shot poll for readiness (``select.POLLIN`` / ``POLLOUT`` ...).
    Returns the ready event mask. Holds no user memory."""

    __slots__ = ("events",)
    kind = "poll"

    def __init__(self, fd: int, events: int) -> None:
        # Operation.__init__ and _FdOp.__init__, inlined: one record is
        # built per I/O call (tests/_io/test_ops.py checks the fields match).
        self._state = NEW
        self._token = 0
        self._task = None
        self._callback = None
        self._cancel_requested = False
        self._raise_cancel = None
        self._kmem = None
        self.res = 0
        self.cqe_flags = 0
        self.lease = None
        self.fd = fd if type(fd) is int and fd >= 0 else _fd(fd)
        self.events = events if type(events) is int else operator.index(events)


PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def _path(path: PathLike) -> bytes:
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    return raw + b"\0"


class OpenatOp(Operation):
    """openat(2). Returns the new fd."""

    __slots__ = ("dir_fd", "flags", "mode", "path")
    kind = "openat"

    def __init__(
        self, path: PathLike, flags: int, mode: int = 0o666, dir_fd: int = AT_FDCWD
    ) -> None:
        Operation.__init__(self)
        self.path = _path(path)
        self.flags = operator.index(flags) | _O_CLOEXEC
        self.mode = operator.index(mode)
        self.dir_fd = dir_fd if dir_fd == AT_FDCWD else _fd(dir_fd, "dir_fd")

    def _describe(self) -> str:
        return repr(self.path[:-1])


class StatxOp(Operation):
    """statx(2). Returns an :class:`os.stat_result`. With ``path=""`` and
    ``dir_fd`` an open fd, stats that fd (``AT_EMPTY_PATH``)."""

    __slots__ = ("buf", "dir_fd", "flags", "mask", "path")
    kind = "statx"

    def __init__(
        self,
        path: PathLike,
        dir_fd: int = AT_FDCWD,
        flags: int = 0,
        mask: int = STATX_BASIC_STATS,
    ) -> None:
        Operation.__init__(self)
        self.path = _path(path)
        self.dir_fd = dir_fd if dir_fd == AT_FDCWD else _fd(dir_fd, "dir_fd")
        self.flags = operator.index(flags) | (AT_EMPTY_PATH if self.path == b"\0" else 0)
        self.mask = operator.index(mask)
        # struct statx is 256 bytes (include/uapi/linux/stat.h); the kernel
        # writes it, so the op owns it.
        self.buf = bytearray(256)

    def _result(self) -> os.stat_result:
        if self.res < 0:
            self._fail(self.res)
        return statx_to_stat_result(self.buf)


# struct statx layout (include/uapi/linux/stat.h): u32 mask, blksize; u64
# attributes; u32 nlink, uid, gid; u16 mode, pad; u64 ino, size, blocks,
# attributes_mask; 4 x statx_timestamp {s64 sec; u32 nsec; s32 pad} (atime,
# btime, ctime, mtime); u32 rdev_major, rdev_minor, dev_major, dev_minor.
_STATX = struct.Struct("=IIQIIIHHQQQQ" + "qIi" * 4 + "IIII")


def statx_to_stat_result(buf: bytes | bytearray) -> os.stat_result:
    """Decode a ``struct statx`` into the :class:`os.stat_result` that
    :func:`os.stat` would return."""
    f = _STATX.unpack_from(buf)
    (_mask, blksize, _attrs, nlink, uid, gid, mode, _pad, ino, size, blocks, _amask) = f[:12]
    a_s, a_n, _, _b_s, _b_n, _, c_s, c_n, _, m_s, m_n, _ = f[12:24]
    rdev_major, rdev_minor, dev_major, dev_minor = f[24:28]
    dev = os.makedev(dev_major, dev_minor)
    rdev = os.makedev(rdev_major, rdev_minor)
    # The float times as CPython's os.stat computes them (posixmodule.c,
    # fill_time: (double)sec + nsec * 1e-9); ns / 1e9 can differ in the
    # last bit (tests/_io/test_ops.py checks equality with os.stat).
    return os.stat_result(
        (mode, ino, dev, nlink, uid, gid, size, a_s, m_s, c_s),
        {
            "st_atime": a_s + a_n * 1e-9,
            "st_mtime": m_s + m_n * 1e-9,
            "st_ctime": c_s + c_n * 1e-9,
            "st_atime_ns": a_s * 1_000_000_000 + a_n,
            "st_mtime_ns": m_s * 1_000_000_000 + m_n,
            "st_ctime_ns": c_s * 1_000_000_000 + c_n,
            "st_blksize": blksize,
            "st_blocks": blocks,
            "st_rdev": rdev,
        },
    )


class FsyncOp(_FdOp):
    """fsync(2), or fdatasync(2) with ``datasync=True``. Returns ``None``."""

    __slots__ = ("datasync",)
    kind = "fsync"

    def __init__(self, fd: int, datasync: bool = False) -> None:
        _FdOp.__init__(self, fd)
        self.datasync = bool(datasync)

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


class SpliceOp(Operation):
    """splice(2) up to ``nbytes`` from ``fd_in`` to ``fd_out`` (one of them a
    pipe). Offsets of -1 use the file position. Returns bytes moved."""

    __slots__ = ("fd_in", "fd_out", "flags", "nbytes", "off_in", "off_out")
    kind = "splice"

    def __init__(
        self,
        fd_in: int,
        fd_out: int,
        nbytes: int,
        off_in: int = -1,
        off_out: int = -1,
        flags: int = 0,
    ) -> None:
        Operation.__init__(self)
        self.fd_in = _fd(fd_in, "fd_in")
        self.fd_out = _fd(fd_out, "fd_out")
        self.nbytes = _size(nbytes)
        self.off_in = _offset(off_in)
        self.off_out = _offset(off_out)
        self.flags = operator.index(flags)


class CancelFdOp(_FdOp):
    """Request cancellation of every in-flight op on ``fd`` (io_uring
    IORING_ASYNC_CANCEL_FD | _ALL, Linux 5.19). Returns how many were found.
    Like :meth:`Backend.cancel`, this only *requests*: each cancelled op still
    gets its own terminal completion."""

    __slots__ = ()
    kind = "cancel_fd"


class RawOp(Operation):
    """Escape hatch: an io_uring SQE spelled out field by field.

    ``keep`` holds every object whose memory the SQE points at (the op owns
    them until its terminal completion); ``addr``/``addr2``/``off`` are plain
    integers (pointers included), copied into the SQE as given. Only the
    io_uring backend accepts it; others raise ``OSError(ENOSYS)`` at submission.
    Returns the raw ``res`` (negative results raise ``OSError``).
    """

    __slots__ = (
        "addr",
        "buf_index",
        "fd",
        "keep",
        "len",
        "off",
        "op_flags",
        "opcode",
        "sqe_flags",
    )
    kind = "raw"

    def __init__(
        self,
        opcode: int,
        fd: int = -1,
        addr: int = 0,
        len: int = 0,
        off: int = 0,
        op_flags: int = 0,
        sqe_flags: int = 0,
        buf_index: int = 0,
        keep: Any = (),
    ) -> None:
        Operation.__init__(self)
        self.opcode = operator.index(opcode)
        self.fd = operator.index(fd)
        self.addr = operator.index(addr)
        self.len = operator.index(len)
        self.off = operator.index(off)
        self.op_flags = operator.index(op_flags)
        self.sqe_flags = operator.index(sqe_flags)
        self.buf_index = operator.index(buf_index)
        self.keep = keep


__all__ = [
    "AT_FDCWD",
    "AcceptMultishotOp",
    "AcceptOp",
    "CancelFdOp",
    "CloseOp",
    "ConnectOp",
    "FsyncOp",
    "NopOp",
    "OpenatOp",
    "Operation",
    "PollOp",
    "RawOp",
    "ReadOp",
    "ReadPoolOp",
    "ReadvOp",
    "RecvMultishotOp",
    "RecvOp",
    "RecvPoolOp",
    "RecvmsgOp",
    "SendOp",
    "SendmsgOp",
    "ShutdownOp",
    "SpliceOp",
    "StatxOp",
    "TimeoutOp",
    "WriteOp",
    "WritevOp",
]
