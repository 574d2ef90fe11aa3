"""How the IOCP backend performs each op record: one *starter* per op kind
that issues the Windows call, and *finishers* that turn a dequeued packet
into the op's result.

A starter runs in ``IocpBackend._flush`` (the next ``get_events`` after
``submit``) and returns either ``None`` -- an overlapped call is now in the
kernel and its packet will come -- or the op's result at once (an immediate
failure, or an op with no asynchronous form). A finisher runs when the
packet is dequeued and returns the result, or ``None`` when the op went on
to another stage (a pool receive whose data was taken by someone else
waits again).

Everything the kernel may touch during a call -- the ``CORRAL_OVERLAPPED``
block, WSABUF arrays, flag words, sockaddrs, AcceptEx's address buffer --
hangs off the op's :class:`Submission` (``op._kmem``) until the packet is
dequeued; user buffers are pinned by the op record itself.

Receives into pool buffers (the idle connection pins nothing): a zero-byte
``WSARecv`` waits until data, EOF or an error is there; then a non-blocking
``recv`` copies what is there into a pool buffer. The socket is switched to
non-blocking mode for that ``recv`` (``ioctlsocket(FIONBIO)``; corral's
own sockets already are), so a receive that finds the data gone (another
reader took it) gets ``WSAEWOULDBLOCK`` and simply waits again instead of
blocking the loop. An empty pool completes the op with ``-ENOBUFS``, which
parks it until a buffer is released (``Backend._park_for_buffer``).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from . import _windows_ffi as w
from ._slots import SlotTable
from ._winerrors import StatusMapper, errno_from_winerror
from ._winfile import pread_into, pwrite_from
from ._winsock import Associator, SocketHelpers
from .ops import (
    AcceptOp,
    CancelFdOp,
    CloseOp,
    ConnectOp,
    FsyncOp,
    NopOp,
    OpenatOp,
    Operation,
    PollOp,
    RawOp,
    ReadOp,
    ReadPoolOp,
    ReadvOp,
    RecvmsgOp,
    RecvOp,
    RecvPoolOp,
    SendmsgOp,
    SendOp,
    ShutdownOp,
    SpliceOp,
    StatxOp,
    TimeoutOp,
    WriteOp,
    WritevOp,
)
from .pool import BufferPool

_ffi = w.ffi
_NULL = _ffi.NULL
_ECANCELED = errno.ECANCELED
_ENOBUFS = errno.ENOBUFS
_EOPNOTSUPP = errno.EOPNOTSUPP
#: WSABUF.len is a 32-bit ULONG; a longer buffer is done in part (a short
#: read or write, as the kernel may do anyway).
_MAX_CHUNK = 0x7FFFF000
_MSG_TRUNC: int = getattr(socket, "MSG_TRUNC", 0x0100)
#: Bytes one overlapped stream send hands the kernel. An overlapped WSASend
#: completes only when *all* its bytes are buffered or sent (it never reports
#: a partial send the way a non-blocking send(2) does), and its buffer stays
#: locked meanwhile: to a peer that stops reading, a large send would pin its
#: memory -- and the task -- indefinitely. Sending at most this much per op
#: bounds the locked memory per connection and gives the POSIX contract
#: ("send may send fewer bytes than asked") that callers already loop on.
SEND_CHUNK = 65536


class Submission:
    """One submission's kernel-visible memory and progress (``op._kmem``).

    Attributes:
      token: the op token this submission belongs to.
      block: the ``CORRAL_OVERLAPPED`` of the call in the kernel.
      handle: the handle the call was issued on (``None``: nothing to
        cancel, e.g. a posted nop).
      in_kernel: an overlapped call is outstanding on ``block``.
      cancel_sent: ``CancelIoEx`` was called for the current call.
      finish: ``finish(op, sub, status, nbytes) -> res | None``.
      keep: everything else the call may touch.
      aux: per-kind state (the socket AcceptEx accepts into...).
      lease: the pool buffer that holds the op's data.
    """

    __slots__ = (
        "aux",
        "block",
        "cancel_sent",
        "finish",
        "handle",
        "in_kernel",
        "keep",
        "lease",
        "token",
    )

    def __init__(self, token: int) -> None:
        self.token = token
        self.block: Any = None
        self.handle: int | None = None
        self.in_kernel = False
        self.cancel_sent = False
        self.finish: Any = None
        self.keep: Any = None
        self.aux: Any = None
        self.lease: Any = None

    def release(self) -> None:
        """The terminal completion arrived: drop the kernel-visible memory
        (buffer exports included, so the caller may resize a bytearray it
        received into; ``aux`` stays for :meth:`fill_recvmsg`)."""
        self.block = None
        self.keep = None

    def fill_recvmsg(self, op: RecvmsgOp) -> None:
        """Decode WSARecvFrom's outputs into ``op.out`` (called by
        ``RecvmsgOp._result``)."""
        if self.aux is None:
            return
        name, namelen, flags, extra = self.aux
        size = namelen[0]
        raw = bytes(_ffi.buffer(name, size)) if 0 < size <= 128 else b""
        if len(raw) < 2 or raw[:2] == b"\0\0":
            raw = b""  # a connected stream socket reports no source address
        op.out = ([], flags[0] | extra, raw)


class IocpOps:
    """The op starters and finishers, mixed into ``IocpBackend``."""

    # Provided by IocpBackend.
    _k32: Any
    _ws2: Any
    _libs: w.Libraries
    _port: Any
    _assoc: Associator
    _status: StatusMapper
    _counts: dict[str, int]
    _table: SlotTable
    pool: BufferPool

    def cancel(self, op: Operation) -> None:  # pragma: no cover - IocpBackend's
        raise NotImplementedError

    def _init_ops(self) -> None:
        self._sock = SocketHelpers(self._libs)
        self._starters: dict[type, Any] = {
            NopOp: self._start_nop,
            TimeoutOp: self._start_nothing,
            RecvOp: self._start_recv,
            SendOp: self._start_send,
            RecvPoolOp: self._start_recv_pool,
            ReadPoolOp: self._start_read_pool,
            RecvmsgOp: self._start_recvmsg,
            SendmsgOp: self._start_sendmsg,
            AcceptOp: self._start_accept,
            ConnectOp: self._start_connect,
            ShutdownOp: self._start_shutdown,
            CloseOp: self._start_close,
            PollOp: self._start_poll,
            CancelFdOp: self._start_cancel_fd,
            ReadOp: self._start_read,
            WriteOp: self._start_write,
            ReadvOp: self._start_readv,
            WritevOp: self._start_writev,
            FsyncOp: self._start_fsync,
            OpenatOp: self._start_openat,
            StatxOp: self._start_unsupported,
            SpliceOp: self._start_unsupported,
        }
        # The multishot records are emulated: each round is one single-shot
        # call, re-submitted by Backend._complete_multishot.
        from .ops import AcceptMultishotOp, RecvMultishotOp

        self._starters[AcceptMultishotOp] = self._start_accept
        self._starters[RecvMultishotOp] = self._start_recv_pool

    def _starter(self, op: Operation) -> Any:
        """The starter for ``op``'s kind (a library's subclass of a record
        is performed like its base). Raises ``OSError(ENOSYS)`` for
        :class:`RawOp` and ``TypeError`` for anything else unknown."""
        starter = self._starters.get(type(op))
        if starter is not None:
            return starter
        if isinstance(op, RawOp):
            raise OSError(errno.ENOSYS, "the IOCP backend does not accept raw io_uring ops")
        for cls in type(op).__mro__:
            starter = self._starters.get(cls)
            if starter is not None:
                self._starters[type(op)] = starter
                return starter
        raise TypeError(f"the IOCP backend cannot perform {type(op).__name__}")

    # -- shared pieces --------------------------------------------------------

    def _block(self, sub: Submission) -> Any:
        # A fresh block per call: the previous one (an earlier stage) has been
        # reported, but never reuse memory the kernel was handed.
        block = _ffi.new("CORRAL_OVERLAPPED *")
        block.token = sub.token
        sub.block = block
        sub.cancel_sent = False
        return block

    def _issued(self, sub: Submission, failed: bool) -> int | None:
        """Account for an overlapped call's immediate return: ``None`` if it
        is in the kernel (a packet will come), else ``-errno``."""
        self._counts["overlapped_calls"] += 1
        if failed:
            code = self._k32.GetLastError()
            # A call that "fails" with an NT *warning* status completed in
            # the kernel, and its packet is queued all the same: a datagram
            # longer than the buffer makes WSARecv return WSAEMSGSIZE at
            # once while the I/O manager reports STATUS_BUFFER_OVERFLOW
            # through the port (observed under Wine,
            # tests/_io/test_iocp.py::test_truncated_datagram...). Freeing the
            # block then would let the kernel report into freed memory.
            status = int(sub.block.ov.Internal) & 0xFFFFFFFF
            warning = 0x80000000 <= status < 0xC0000000
            if code != w.ERROR_IO_PENDING and not warning:
                self._counts["immediate_failures"] += 1
                return -errno_from_winerror(code)
        sub.in_kernel = True
        return None

    def _fail_status(self, status: int) -> int:
        return -self._status.errno(status)

    def _finish_transfer(self, op: Any, sub: Submission, status: int, nbytes: int) -> int:
        if status == 0 or status == w.STATUS_BUFFER_OVERFLOW:
            # BUFFER_OVERFLOW: a datagram longer than the buffer; Linux
            # returns the truncated length, so do we.
            return nbytes
        if nbytes > 0:
            # A transfer cancelled (or broken) part-way still moved these
            # bytes: a send that was cancelled after the kernel took 65482 of
            # its 65536 bytes reports STATUS_CANCELLED *and* 65482 in
            # InternalHigh (observed under Wine: test_iocp's
            # test_a_send_cancelled_part_way_reports_what_it_sent). Report the
            # partial count, as send(2) would; the next call sees the error.
            return nbytes
        return self._fail_status(status)

    def _finish_read(self, op: Any, sub: Submission, status: int, nbytes: int) -> int:
        if status == 0:
            return nbytes
        res = self._fail_status(status)
        if res == -errno.EPIPE or self._status.winerror(status) == w.ERROR_HANDLE_EOF:
            # End of file, or a pipe whose writer is gone: read(2) returns 0.
            return 0
        return res

    def _wsabufs(self, views: list[memoryview], limit: int = _MAX_CHUNK) -> tuple[Any, list[Any]]:
        """A WSABUF array over ``views``, at most ``limit`` bytes in all."""
        arr = _ffi.new("WSABUF[]", max(len(views), 1))
        keep = []
        for i, v in enumerate(views):
            n = min(len(v), limit)
            if n:
                cbuf = _ffi.from_buffer(v)
                keep.append(cbuf)
                arr[i].buf = cbuf
                arr[i].len = n
                limit -= n
        return arr, keep

    def _start_nothing(self, op: Any, sub: Submission) -> int | None:  # pragma: no cover
        return None  # timers never reach the flush

    def _start_unsupported(self, op: Any, sub: Submission) -> int:
        return -errno.ENOSYS

    # -- nop ------------------------------------------------------------------

    def _start_nop(self, op: NopOp, sub: Submission) -> int | None:
        block = self._block(sub)
        sub.finish = self._finish_nop
        from .iocp import KEY_IO

        ok = self._k32.PostQueuedCompletionStatus(
            self._port, 0, KEY_IO, _ffi.cast("OVERLAPPED *", block)
        )
        return self._issued(sub, not ok)

    def _finish_nop(self, op: Any, sub: Submission, status: int, nbytes: int) -> int:
        return 0

    # -- sockets: user buffers ---------------------------------------------------

    def _start_recv(self, op: RecvOp, sub: Submission) -> int | None:
        return self._wsarecv(op, sub, [op.buffer], op.flags)

    def _wsarecv(self, op: Any, sub: Submission, views: list[memoryview], flags: int) -> int | None:
        fd = op.fd
        rc = self._assoc.associate(fd)
        if rc:
            return rc
        bufs, keep = self._wsabufs(views)
        flag_word = _ffi.new("DWORD *", flags)
        sub.keep = (bufs, keep, flag_word)
        sub.handle = fd
        sub.finish = self._finish_transfer
        block = self._block(sub)
        failed = self._ws2.WSARecv(
            fd, bufs, len(views), _NULL, flag_word, _ffi.cast("OVERLAPPED *", block), _NULL
        )
        return self._issued(sub, failed != 0)

    def _start_send(self, op: SendOp, sub: Submission) -> int | None:
        return self._wsasend(op, sub, [op.buffer], op.flags)

    def _wsasend(self, op: Any, sub: Submission, views: list[memoryview], flags: int) -> int | None:
        fd = op.fd
        rc = self._assoc.associate(fd)
        if rc:
            return rc
        bufs, keep = self._wsabufs(views, SEND_CHUNK)
        sub.keep = (bufs, keep)
        sub.handle = fd
        sub.finish = self._finish_transfer
        block = self._block(sub)
        failed = self._ws2.WSASend(
            fd, bufs, len(views), _NULL, flags, _ffi.cast("OVERLAPPED *", block), _NULL
        )
        return self._issued(sub, failed != 0)

    def _start_recvmsg(self, op: RecvmsgOp, sub: Submission) -> int | None:
        if op.ancbufsize:
            # Ancillary data needs WSARecvMsg (not implemented yet).
            return -_EOPNOTSUPP
        fd = op.fd
        rc = self._assoc.associate(fd)
        if rc:
            return rc
        bufs, keep = self._wsabufs(op.buffers)
        flag_word = _ffi.new("DWORD *", op.flags)
        name = _ffi.new("char[]", 128)
        namelen = _ffi.new("int *", 128)
        sub.keep = (bufs, keep)
        sub.aux = (name, namelen, flag_word, 0)
        sub.handle = fd
        sub.finish = self._finish_recvmsg
        block = self._block(sub)
        failed = self._ws2.WSARecvFrom(
            fd, bufs, max(len(op.buffers), 1), _NULL, flag_word, name, namelen,
            _ffi.cast("OVERLAPPED *", block), _NULL,
        )  # fmt: skip
        return self._issued(sub, failed != 0)

    def _finish_recvmsg(self, op: Any, sub: Submission, status: int, nbytes: int) -> int:
        if status == w.STATUS_BUFFER_OVERFLOW:
            name, namelen, flags, _ = sub.aux
            sub.aux = (name, namelen, flags, _MSG_TRUNC)
        return self._finish_transfer(op, sub, status, nbytes)

    def _start_sendmsg(self, op: SendmsgOp, sub: Submission) -> int | None:
        if op.ancdata:
            return -_EOPNOTSUPP  # needs WSASendMsg (not implemented yet)
        fd = op.fd
        rc = self._assoc.associate(fd)
        if rc:
            return rc
        bufs, keep = self._wsabufs(op.buffers)
        to = bytearray(op.sockaddr)
        cto = _ffi.from_buffer(to) if to else _NULL
        sub.keep = (bufs, keep, to, cto)
        sub.handle = fd
        sub.finish = self._finish_transfer
        block = self._block(sub)
        failed = self._ws2.WSASendTo(
            fd, bufs, max(len(op.buffers), 1), _NULL, op.flags, cto, len(to),
            _ffi.cast("OVERLAPPED *", block), _NULL,
        )  # fmt: skip
        return self._issued(sub, failed != 0)

    # -- sockets: pool receives -------------------------------------------------

    def _start_recv_pool(self, op: Any, sub: Submission) -> int | None:
        fd = op.fd
        rc = self._assoc.associate(fd)
        if rc:
            return rc
        sub.handle = fd
        sub.finish = self._finish_zero_byte
        return self._zero_byte_recv(op, sub)

    def _zero_byte_recv(self, op: Any, sub: Submission) -> int | None:
        bufs = _ffi.new("WSABUF *")
        flag_word = _ffi.new("DWORD *", 0)
        sub.keep = (bufs, flag_word)
        block = self._block(sub)
        self._counts["zero_byte_receives"] += 1
        failed = self._ws2.WSARecv(
            op.fd, bufs, 1, _NULL, flag_word, _ffi.cast("OVERLAPPED *", block), _NULL
        )
        return self._issued(sub, failed != 0)

    def _finish_zero_byte(self, op: Any, sub: Submission, status: int, nbytes: int) -> int | None:
        if status != 0:
            return self._fail_status(status)
        # Data, EOF or an error is waiting in the socket.
        lease = self.pool.try_lease(op)
        if lease is None:
            return -_ENOBUFS
        fd = op.fd
        rc = self._sock.set_nonblocking(fd)
        if rc:
            lease.release()
            return rc
        view = lease.buffer
        cbuf = _ffi.from_buffer(view)
        self._counts["pool_receives"] += 1
        n = self._ws2.recv(fd, cbuf, len(view), op.flags)
        del cbuf
        if n < 0:
            code = self._k32.GetLastError()
            if code == w.WSAEMSGSIZE:
                n = len(view)  # a truncated datagram fills the buffer
            else:
                lease.release()
                if code == w.WSAEWOULDBLOCK:
                    # Someone else took the data: wait again.
                    if op._cancel_requested:
                        return -_ECANCELED
                    return self._zero_byte_recv(op, sub)
                return -errno_from_winerror(code)
        if n == 0:
            lease.release()
            return 0
        lease.nbytes = n
        sub.lease = lease
        return int(n)

    def _start_read_pool(self, op: ReadPoolOp, sub: Submission) -> int | None:
        if self._sock.socket_type(op.fd) >= 0:
            return self._start_recv_pool(op, sub)
        # A file or pipe: read into a pool buffer synchronously.
        lease = self.pool.try_lease(op)
        if lease is None:
            return -_ENOBUFS
        view = lease.buffer
        res = self._sync_read(op.fd, view, op.offset)
        if res <= 0:
            lease.release()
            return res
        lease.nbytes = res
        sub.lease = lease
        return res

    # -- sockets: accept, connect, shutdown, close ------------------------------

    def _start_accept(self, op: Any, sub: Submission) -> int | None:
        listener = op.fd
        rc = self._assoc.associate(listener)
        if rc:
            return rc
        sock = self._sock
        fn = sock.extension(listener, "AcceptEx")
        if isinstance(fn, int):
            return fn
        family = sock.family(listener)
        kind = sock.socket_type(listener)
        if kind < 0:
            return kind
        if not family:
            return -errno.EINVAL  # not bound, so not listening (accept(2): EINVAL)
        new = sock.new_socket(family, kind)
        if new < 0:
            return new
        size = w.ACCEPTEX_ADDRESS_LEN
        addrs = _ffi.new("char[]", 2 * size)
        received = _ffi.new("DWORD *")
        sub.keep = (addrs, received)
        sub.aux = new
        sub.handle = listener
        sub.finish = self._finish_accept
        block = self._block(sub)
        ok = fn(listener, new, addrs, 0, size, size, received, _ffi.cast("OVERLAPPED *", block))
        res = self._issued(sub, not ok)
        if res is not None:
            sub.aux = None
            sock.close_socket(new)
        return res

    def _finish_accept(self, op: Any, sub: Submission, status: int, nbytes: int) -> int:
        new: int = sub.aux
        sub.aux = None
        if status != 0:
            self._sock.close_socket(new)
            return self._fail_status(status)
        rc = self._sock.setsockopt_socket(new, w.SO_UPDATE_ACCEPT_CONTEXT, op.fd)
        if rc:
            self._sock.close_socket(new)
            return rc
        # (AcceptEx wrote both addresses into the op's buffer too, but
        # reading them back takes GetAcceptExSockaddrs, one more extension
        # pointer; with the context updated, getpeername answers.)
        if isinstance(op, AcceptOp):  # (not the multishot emulation)
            op.peer_address = self._sock.peer_address(new)
        return new

    def _start_connect(self, op: ConnectOp, sub: Submission) -> int | None:
        fd = op.fd
        sock = self._sock
        kind = sock.socket_type(fd)
        if kind < 0:
            return kind
        to = bytearray(op.sockaddr)
        cto = _ffi.from_buffer(to)
        if kind != socket.SOCK_STREAM:
            # A datagram connect only records the peer: nothing to wait for.
            self._counts["sync_ops"] += 1
            if self._ws2.connect(fd, cto, len(to)) != 0:
                return sock.last_errno()
            return 0
        rc = self._assoc.associate(fd)
        if rc:
            return rc
        if isinstance(sock.sockname(fd), int):
            rc = sock.bind_wildcard(fd, op.family)  # ConnectEx needs a bound socket
            if rc:
                return rc
        fn = sock.extension(fd, "ConnectEx")
        if isinstance(fn, int):
            return fn
        sub.keep = (to, cto)
        sub.handle = fd
        sub.finish = self._finish_connect
        block = self._block(sub)
        ok = fn(fd, cto, len(to), _NULL, 0, _NULL, _ffi.cast("OVERLAPPED *", block))
        return self._issued(sub, not ok)

    def _finish_connect(self, op: Any, sub: Submission, status: int, nbytes: int) -> int:
        if status != 0:
            return self._fail_status(status)
        return self._sock.setsockopt_socket(op.fd, w.SO_UPDATE_CONNECT_CONTEXT, None)

    def _start_shutdown(self, op: ShutdownOp, sub: Submission) -> int:
        self._counts["sync_ops"] += 1
        # SHUT_RD/WR/RDWR have the values of SD_RECEIVE/SEND/BOTH.
        if self._ws2.shutdown(op.fd, op.how) != 0:
            return self._sock.last_errno()
        return 0

    def _start_close(self, op: CloseOp, sub: Submission) -> int:
        self._counts["sync_ops"] += 1
        # closesocket cancels the socket's outstanding overlapped calls; they
        # still report (aborted) through the port.
        if self._ws2.closesocket(op.fd) == 0:
            return 0
        code = self._k32.GetLastError()
        if code != w.WSAENOTSOCK:
            return -errno_from_winerror(code)
        try:
            os.close(op.fd)  # a C runtime fd (a file or pipe)
        except OSError as exc:
            return -(exc.errno or errno.EBADF)
        return 0

    def _start_cancel_fd(self, op: CancelFdOp, sub: Submission) -> int:
        found = 0
        for other in self._table.values():
            if (
                other is not op
                and getattr(other, "fd", None) == op.fd
                and not other._cancel_requested
            ):
                self.cancel(other)
                found += 1
        return found

    def _start_poll(self, op: PollOp, sub: Submission) -> int | None:
        base = self._sock.base_handle(op.fd)
        if base < 0:
            return self._sock.handle_errno(op.fd, base)
        self._afd.add(op, base)  # type: ignore[attr-defined]  # IocpBackend's poller
        return None

    # -- files and pipes ----------------------------------------------------------

    def _start_read(self, op: ReadOp, sub: Submission) -> int | None:
        if self._sock.socket_type(op.fd) >= 0:
            return self._wsarecv(op, sub, [op.buffer], 0)
        return self._sync_read(op.fd, op.buffer, op.offset)

    def _start_write(self, op: WriteOp, sub: Submission) -> int | None:
        if self._sock.socket_type(op.fd) >= 0:
            return self._wsasend(op, sub, [op.buffer], 0)
        return self._sync_write(op.fd, op.buffer, op.offset)

    def _start_readv(self, op: ReadvOp, sub: Submission) -> int | None:
        if self._sock.socket_type(op.fd) >= 0:
            return self._wsarecv(op, sub, op.buffers, 0)
        total = 0
        offset = op.offset
        for view in op.buffers:
            res = self._sync_read(op.fd, view, offset)
            if res < 0:
                return res if total == 0 else total
            total += res
            if offset >= 0:
                offset += res
            if res < len(view):
                break
        return total

    def _start_writev(self, op: WritevOp, sub: Submission) -> int | None:
        if self._sock.socket_type(op.fd) >= 0:
            return self._wsasend(op, sub, op.buffers, 0)
        total = 0
        offset = op.offset
        for view in op.buffers:
            res = self._sync_write(op.fd, view, offset)
            if res < 0:
                return res if total == 0 else total
            total += res
            if offset >= 0:
                offset += res
            if res < len(view):
                break
        return total

    def _sync_read(self, fd: int, view: memoryview, offset: int) -> int:
        # No overlapped file I/O yet: the read runs in the loop thread (the
        # backend says native_file_ops=False, so corral's file API uses
        # worker threads instead).
        self._counts["sync_ops"] += 1
        try:
            return pread_into(fd, view, offset)
        except OSError as exc:
            return -(exc.errno or errno.EIO)

    def _sync_write(self, fd: int, view: memoryview, offset: int) -> int:
        self._counts["sync_ops"] += 1
        try:
            return pwrite_from(fd, view, offset)
        except OSError as exc:
            return -(exc.errno or errno.EIO)

    def _start_fsync(self, op: FsyncOp, sub: Submission) -> int:
        self._counts["sync_ops"] += 1
        try:
            os.fsync(op.fd)
        except OSError as exc:
            return -(exc.errno or errno.EIO)
        return 0

    def _start_openat(self, op: OpenatOp, sub: Submission) -> int:
        from .ops import AT_FDCWD

        self._counts["sync_ops"] += 1
        if op.dir_fd != AT_FDCWD:
            return -errno.EINVAL  # Windows has no openat: paths only
        try:
            return os.open(op.path[:-1], op.flags | getattr(os, "O_NOINHERIT", 0), op.mode)
        except OSError as exc:
            return -(exc.errno or errno.EIO)
