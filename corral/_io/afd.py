"""The AFD readiness adapter: completions emulated with ``\\Device\\Afd`` polls.

What the epoll adapter is to io_uring on Linux, this backend is to IOCP on
Windows: every socket op is *tried* as a non-blocking Winsock call at the
flush; when Winsock says ``WSAEWOULDBLOCK`` the op waits for readiness
through an ``IOCTL_AFD_POLL`` (``_winafd.py``: one poll per base socket,
waiters merged, sockets spread over several AFD handles) and is tried again
when the poll reports. No overlapped socket call is ever issued, so no
buffer is handed to the kernel for longer than one synchronous call: a
receive into a pool buffer leases the buffer only around the ``recv`` that
fills it. Requested with ``backend="afd"`` (or ``CORRAL_BACKEND=afd``); the
default on Windows is IOCP.

Everything else -- the completion port (the AFD handles report to it), the
run loop, timers, wakeups, the signal wakeup socket, non-socket ops, the
shutdown drain -- is the IOCP backend's, which this class extends.

Facts used here:

* Winsock has no per-call "don't wait" flag (Linux's ``MSG_DONTWAIT``), so
  the socket is switched to non-blocking mode (``ioctlsocket(FIONBIO)``)
  before each op's first attempt; corral's sockets already are.
* The non-overlapped forms of ``WSARecv``/``WSASend``/``WSARecvFrom``/
  ``WSASendTo`` (``lpOverlapped = NULL``) are ordinary non-blocking calls
  with scatter/gather, on overlapped sockets too.
* A non-blocking ``connect`` fails with ``WSAEWOULDBLOCK`` (not
  EINPROGRESS); writability (``AFD_POLL_SEND``) or ``AFD_POLL_CONNECT_FAIL``
  ends the wait and ``SO_ERROR`` says which.
* ``accept`` returns an inheritable socket; it is made non-inheritable, as
  Python's own ``socket.accept`` does.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from . import _windows_ffi as w
from ._backend import Capabilities
from ._winafd import POLLIN, POLLOUT
from ._winerrors import errno_from_winerror
from ._winiocp_ops import Submission
from .iocp import IocpBackend
from .ops import IN_FLIGHT, AcceptOp, ConnectOp, Operation, RecvmsgOp, SendmsgOp
from .pool import BufferPool

_ffi = w.ffi
_NULL = _ffi.NULL
_ECANCELED = errno.ECANCELED
_ENOBUFS = errno.ENOBUFS
_EOPNOTSUPP = errno.EOPNOTSUPP
_SO_ERROR = 0x1007
_MSG_TRUNC: int = getattr(socket, "MSG_TRUNC", 0x0100)


class _Wait:
    """An op waiting for readiness: what the poller holds for it."""

    __slots__ = ("events", "op", "retry")

    def __init__(self, op: Operation, events: int, retry: Callable[[], int | None]) -> None:
        self.op = op
        self.events = events
        self.retry = retry


class AfdBackend(IocpBackend):
    """The readiness adapter. Same arguments as :class:`IocpBackend`."""

    name = "afd"

    def __init__(
        self,
        pool: BufferPool,
        *,
        guest: bool = False,
        max_events: int = 256,
        afd_group_size: int = 500,
        install_wakeup_fd: bool | None = None,
    ) -> None:
        IocpBackend.__init__(
            self,
            pool,
            guest=guest,
            max_events=max_events,
            afd_group_size=afd_group_size,
            install_wakeup_fd=install_wakeup_fd,
        )
        self.capabilities = Capabilities(
            multishot=False, provided_buffers=False, native_file_ops=False, raw_ops=False
        )
        self.features = ("afd-poll", "readiness")
        self._counts["attempts"] = 0
        self._counts["would_block"] = 0

    # -- waiting for readiness -------------------------------------------------

    def _attempt(
        self, op: Any, sub: Submission, events: int, call: Callable[[], int]
    ) -> int | None:
        """Run ``call()`` (one non-blocking attempt: ``res`` or ``-errno``);
        on ``-EAGAIN`` wait for ``events`` and try again then."""
        self._counts["attempts"] += 1
        res = call()
        if res != -errno.EAGAIN:
            return self._sock.handle_errno(op.fd, res) if res < 0 else res
        if op._cancel_requested:
            return -_ECANCELED
        self._counts["would_block"] += 1
        base = self._sock.base_handle(op.fd)
        if base < 0:
            return self._sock.handle_errno(op.fd, base)
        wait = _Wait(op, events, lambda: self._attempt(op, sub, events, call))
        sub.aux = wait
        self._afd.add(wait, base)
        return None

    def _deliver_poll(self, op: Any, res: int) -> None:
        if not isinstance(op, _Wait):
            IocpBackend._deliver_poll(self, op, res)
            return
        wait, op = op, op.op
        sub = op._kmem
        if op._state != IN_FLIGHT or not isinstance(sub, Submission) or sub.aux is not wait:
            return  # cancelled meanwhile
        sub.aux = None
        if res >= 0:
            got = wait.retry()
            if got is None:
                return  # waiting again
            res = got
        if self._table.pop(op._token) is op:
            lease = sub.lease
            sub.lease = None
            sub.release()
            self._complete(op, res, 0, lease)

    def _deliver_poll_soon(self, op: Any, res: int) -> None:
        self._complete_soon(op.op if isinstance(op, _Wait) else op, res)

    def _cancel_in_kernel(self, op: Operation, sub: Submission) -> None:
        wait = sub.aux
        if isinstance(wait, _Wait):
            # Nothing of the op's is in the kernel: leave the poller at once.
            if self._afd.remove(wait):
                sub.aux = None
                self._complete_soon(op, -_ECANCELED)
            return
        IocpBackend._cancel_in_kernel(self, op, sub)

    # -- the attempts ----------------------------------------------------------------

    def _wsa_errno(self) -> int:
        return -errno_from_winerror(self._k32.GetLastError())

    def _nonblocking(self, fd: int) -> int:
        return self._sock.set_nonblocking(fd)

    def _wsarecv(self, op: Any, sub: Submission, views: list[memoryview], flags: int) -> int | None:
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)
        bufs, keep = self._wsabufs(views)
        count = max(len(views), 1)
        total: int = sum(int(bufs[i].len) for i in range(count))
        nbytes = _ffi.new("DWORD *")
        flag_word = _ffi.new("DWORD *")
        sub.keep = (bufs, keep)

        def call() -> int:
            flag_word[0] = flags
            if self._ws2.WSARecv(op.fd, bufs, count, nbytes, flag_word, _NULL, _NULL) != 0:
                code = self._k32.GetLastError()
                if code == w.WSAEMSGSIZE:
                    # A datagram longer than the buffers filled them (and the
                    # rest is gone): Linux reports the truncated length.
                    return total
                return -errno_from_winerror(code)
            return int(nbytes[0])

        return self._attempt(op, sub, POLLIN, call)

    def _wsasend(self, op: Any, sub: Submission, views: list[memoryview], flags: int) -> int | None:
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)
        bufs, keep = self._wsabufs(views)
        count = max(len(views), 1)
        nbytes = _ffi.new("DWORD *")
        sub.keep = (bufs, keep)

        def call() -> int:
            if self._ws2.WSASend(op.fd, bufs, count, nbytes, flags, _NULL, _NULL) != 0:
                return self._wsa_errno()
            return int(nbytes[0])

        return self._attempt(op, sub, POLLOUT, call)

    def _start_recvmsg(self, op: RecvmsgOp, sub: Submission) -> int | None:
        if op.ancbufsize:
            return -_EOPNOTSUPP
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)
        bufs, keep = self._wsabufs(op.buffers)
        count = max(len(op.buffers), 1)
        total: int = sum(int(bufs[i].len) for i in range(count))
        nbytes = _ffi.new("DWORD *")
        flag_word = _ffi.new("DWORD *")
        name = _ffi.new("char[]", 128)
        namelen = _ffi.new("int *")
        sub.keep = (bufs, keep)
        sub.aux = None

        def call() -> int:
            flag_word[0] = op.flags
            namelen[0] = 128
            extra = 0
            failed = self._ws2.WSARecvFrom(
                op.fd, bufs, count, nbytes, flag_word, name, namelen, _NULL, _NULL
            )
            if failed:
                code = self._k32.GetLastError()
                if code != w.WSAEMSGSIZE:
                    return -errno_from_winerror(code)
                extra = _MSG_TRUNC
                nbytes[0] = total
            sub.aux = (name, namelen, flag_word, extra)  # for fill_recvmsg
            return int(nbytes[0])

        return self._attempt(op, sub, POLLIN, call)

    def _start_sendmsg(self, op: SendmsgOp, sub: Submission) -> int | None:
        if op.ancdata:
            return -_EOPNOTSUPP
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)
        bufs, keep = self._wsabufs(op.buffers)
        count = max(len(op.buffers), 1)
        nbytes = _ffi.new("DWORD *")
        to = bytearray(op.sockaddr)
        cto = _ffi.from_buffer(to) if to else _NULL
        sub.keep = (bufs, keep, to, cto)

        def call() -> int:
            failed = self._ws2.WSASendTo(
                op.fd, bufs, count, nbytes, op.flags, cto, len(to), _NULL, _NULL
            )
            if failed:
                return self._wsa_errno()
            return int(nbytes[0])

        return self._attempt(op, sub, POLLOUT, call)

    def _start_recv_pool(self, op: Any, sub: Submission) -> int | None:
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)

        def call() -> int:
            # The buffer is leased only around the recv that fills it.
            lease = self.pool.try_lease(op)
            if lease is None:
                return -_ENOBUFS
            view = lease.buffer
            cbuf = _ffi.from_buffer(view)
            self._counts["pool_receives"] += 1
            n = self._ws2.recv(op.fd, cbuf, len(view), op.flags)
            del cbuf
            if n < 0:
                code = self._k32.GetLastError()
                if code != w.WSAEMSGSIZE:
                    lease.release()
                    return -errno_from_winerror(code)
                n = len(view)
            if n == 0:
                lease.release()
                return 0
            lease.nbytes = n
            sub.lease = lease
            return int(n)

        return self._attempt(op, sub, POLLIN, call)

    def _start_accept(self, op: Any, sub: Submission) -> int | None:
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)

        def call() -> int:
            new = self._ws2.accept(op.fd, _NULL, _NULL)
            if new == w.INVALID_SOCKET:
                return self._wsa_errno()
            self._k32.SetHandleInformation(_ffi.cast("HANDLE", new), w.HANDLE_FLAG_INHERIT, 0)
            if isinstance(op, AcceptOp):  # (not the multishot emulation)
                op.peer_address = self._sock.peer_address(new)
            return int(new)

        return self._attempt(op, sub, POLLIN, call)

    def _start_connect(self, op: ConnectOp, sub: Submission) -> int | None:
        rc = self._nonblocking(op.fd)
        if rc:
            return self._sock.handle_errno(op.fd, rc)
        to = bytearray(op.sockaddr)
        cto = _ffi.from_buffer(to)
        sub.keep = (to, cto)
        self._counts["attempts"] += 1
        if self._ws2.connect(op.fd, cto, len(to)) == 0:
            return 0
        res = self._wsa_errno()
        if res != -errno.EAGAIN:
            return self._sock.handle_errno(op.fd, res)

        def connected() -> int:
            # Writable (connected) or CONNECT_FAIL: SO_ERROR says which.
            value = _ffi.new("int *")
            size = _ffi.new("int *", _ffi.sizeof("int"))
            if self._ws2.getsockopt(op.fd, w.SOL_SOCKET, _SO_ERROR, value, size) != 0:
                return self._wsa_errno()
            if value[0]:
                return -errno_from_winerror(value[0])
            return 0

        self._counts["would_block"] += 1
        if op._cancel_requested:
            return -_ECANCELED
        base = self._sock.base_handle(op.fd)
        if base < 0:
            return self._sock.handle_errno(op.fd, base)
        wait = _Wait(op, POLLOUT, connected)
        sub.aux = wait
        self._afd.add(wait, base)
        return None

    def afd_statistics(self) -> dict[str, int]:
        """Attempts made and how many had to wait for readiness."""
        return {"attempts": self._counts["attempts"], "would_block": self._counts["would_block"]}
