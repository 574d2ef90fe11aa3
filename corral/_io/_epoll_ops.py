"""The epoll adapter's per-op syscall attempts (the backend is ``epoll.py``).

Each ``_try_<kind>`` method makes one non-blocking attempt at an op and
says what happened, by its return value:

* ``DONE``: a terminal result was recorded (``_done``); multishot ops may
  have recorded non-terminal results first (``_more``).
* ``EPOLLIN`` / ``EPOLLOUT``: the kernel said EAGAIN; park the op on its fd
  in that direction and try again at readiness.
* ``AGAIN_LATER``: a multishot op used its budget for this turn while data
  was still there; queue it for the next flush (fairness between fds).
* ``PARKED``: the attempt parked the op itself (timeouts, polls, splice).

What the adapter does, per op kind (the kernel's results are reported the
io_uring way: ``res >= 0``, or ``-errno``):

========================  ====================================================
nop                       completes with 0 at the next turn.
timeout                   a timer on the backend's heap, started at the flush;
                          expiry completes with ``-ETIME`` (IORING_OP_TIMEOUT's
                          result), a cancel with ``-ECANCELED``.
poll                      no attempt: joins the fd's interest set; completes
                          with the ready mask (``POLLERR``/``POLLHUP`` always
                          included, as poll(2)). A regular file (epoll_ctl
                          EPERM) is always ready: ``POLLIN|POLLOUT``.
recv / send               ``recv_into`` / ``send`` with ``MSG_DONTWAIT`` (and
recvmsg / sendmsg         ``MSG_NOSIGNAL`` for sends), so even a blocking
                          socket never blocks the loop. ``recvmsg``'s sender
                          address is re-encoded to raw sockaddr bytes.
                          ``MSG_WAITALL`` cannot make a non-blocking receive
                          wait: it returns what is there (io_uring waits).
                          Receives are tried after the rest of their flush
                          (see ``epoll.py``).
recv_pool / read_pool     attempted into the first *free* pool buffer without
                          leasing it; only when data arrived is the buffer
                          adopted as a lease (``BufferPool.adopt``): an idle
                          receive pins nothing, and EOF takes no buffer. Pool
                          empty: wait for readiness, then ``-ENOBUFS`` (the
                          backend parks the op until a buffer is released).
recv_multishot            emulated: at each readiness, receive into pool
                          buffers (non-terminal results) until EAGAIN or a
                          budget of buffers per turn; EOF,
                          errors and cancellation are terminal.
accept                    ``accept4`` (CLOEXEC; SOCK_NONBLOCK and inheritable
                          applied as ``op.flags`` asks).
accept_multishot          emulated like recv_multishot: every connection
                          pending at readiness is a non-terminal result.
connect                   ``connect``; EINPROGRESS waits for EPOLLOUT, then
                          ``SO_ERROR`` gives the result (a spurious wakeup is
                          detected with ``getpeername`` and waits again).
shutdown, fsync, openat,  synchronous at the flush (they never wait for
statx, close              readiness). ``statx`` is ``os.stat`` re-encoded as a
                          ``struct statx`` (no ``btime``); ``openat`` of a
                          FIFO without O_NONBLOCK blocks until a peer opens
                          it, as open(2) does. ``close`` first
                          fails the ops still waiting on the fd with
                          ``-EBADF`` and drops its epoll registration.
read / write / readv /    ``read``/``pread``/``readv``/``preadv`` and the
writev                    writes. Regular files are always "ready": the call
                          runs synchronously and may block the loop
                          (``Capabilities.native_file_ops`` is False: upper
                          layers use worker threads). Pipes, ttys, sockets
                          wait for readiness.
splice                    ``os.splice`` with SPLICE_F_NONBLOCK; on EAGAIN a
                          zero-timeout poll of both fds decides which side to
                          wait for.
cancel_fd                 cancels every op waiting on the fd (``-ECANCELED``)
                          and completes with how many it found.
raw                       fails with ``-ENOSYS`` (io_uring only).
========================  ====================================================

Non-blocking mode: socket calls carry ``MSG_DONTWAIT``. Calls that have no
per-call flag (accept, connect, read/write on pipes and ttys, splice) need
``O_NONBLOCK`` on the fd; the adapter sets it at the op's first attempt if it
is missing (regular files, block devices and directories are left alone: they
never return EAGAIN). Like Trio's ``FdStream``, this changes the open file
description, which is shared with duplicates of the fd.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import select
import socket
import stat
from collections import deque
from typing import TYPE_CHECKING, Any

from ._sockaddr import encode_sockaddr
from .ops import _STATX, AT_EMPTY_PATH, AT_FDCWD

if TYPE_CHECKING:
    from .ops import (
        AcceptMultishotOp,
        AcceptOp,
        CancelFdOp,
        CloseOp,
        ConnectOp,
        FsyncOp,
        NopOp,
        OpenatOp,
        Operation,
        PollOp,
        ReadOp,
        ReadPoolOp,
        ReadvOp,
        RecvmsgOp,
        RecvMultishotOp,
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
    from .pool import BufferPool, Lease

IN = select.EPOLLIN
OUT = select.EPOLLOUT
DONE = 0
AGAIN_LATER = -1
PARKED = -2

#: Pool buffers a multishot receive fills per readiness event before it lets
#: other fds have their turn (it is re-queued, not re-armed).
MULTISHOT_BUDGET = 8
#: Connections a multishot accept takes per turn.
ACCEPT_BUDGET = 64

# Plain ints: the socket module's constants are enum flags, and an enum's
# __or__ on the per-op path costs more than the syscall's Python wrapper.
_DONTWAIT = int(socket.MSG_DONTWAIT)
_SEND_FLAGS = int(socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
_SOCK_NONBLOCK = int(socket.SOCK_NONBLOCK)
_SOCK_CLOEXEC = int(socket.SOCK_CLOEXEC)
_SOCK_STREAM = int(socket.SOCK_STREAM)
_SPLICE_F_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BASIC_STATS = 0x7FF
_EAGAIN = errno.EAGAIN
_ECANCELED = errno.ECANCELED
_EIO = errno.EIO

#: Marks a connect that got EINPROGRESS (kept in ``op._kmem`` while waiting).
_CONNECTING = "connecting"


def _no_buffer(op: Operation) -> int:
    """The result of a buffer-selecting op that found the pool empty.
    ``-ENOBUFS`` makes the backend park it and retry, unless a cancel was
    requested: then there is nothing to retry, and it was cancelled."""
    return -_ECANCELED if op._cancel_requested else -errno.ENOBUFS


class _Proxy(_socket.socket):
    """A socket object borrowed over someone else's fd.

    Created with ``SOCK_NONBLOCK`` in its type, so its timeout is 0 and every
    method makes exactly one syscall (no poll loop, no ``O_NONBLOCK``
    change). It never closes the fd: finalization detaches it instead, so a
    proxy that outlives its fd number cannot close an unrelated file.
    """

    __slots__ = ()

    def __del__(self) -> None:
        self.detach()


class FdWaiters:
    """Everything waiting for readiness on one fd: the merged interest.

    ``readers`` / ``writers`` are FIFO lines (only the op at the front is
    attempted at readiness, the next one only if the first completed);
    ``pollers`` are poll ops, completed by any matching readiness.
    ``armed`` is the mask the epoll registration currently holds (-1:
    disarmed, which EPOLLONESHOT does after every event).
    """

    __slots__ = ("armed", "dirty", "fd", "pollers", "readers", "writers")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.readers: deque[Operation] = deque()
        self.writers: deque[Operation] = deque()
        self.pollers: list[PollOp] = []
        self.armed = -1
        self.dirty = False

    def __bool__(self) -> bool:
        return bool(self.readers or self.writers or self.pollers)

    def discard(self, op: Operation) -> None:
        """Remove ``op`` wherever it waits here (no-op if it does not)."""
        for line in (self.readers, self.writers):
            if op in line:
                line.remove(op)
                return
        if op in self.pollers:
            self.pollers.remove(op)

    def ops(self) -> list[Operation]:
        return [*self.readers, *self.writers, *self.pollers]


def raw_address(address: Any) -> bytes:
    """Re-encode the address ``recvmsg_into`` decoded back into sockaddr
    bytes (``RecvmsgOp``'s contract). The shape tells the family: ``(host,
    port)`` is AF_INET, 4-tuples AF_INET6, str/bytes AF_UNIX. Unknown shapes
    (other families) and "no address" give ``b""``."""
    if address is None or address == "" or address == b"":
        return b""
    try:
        if isinstance(address, (str, bytes)):
            return encode_sockaddr(socket.AF_UNIX, address)
        if isinstance(address, tuple) and len(address) == 2:
            return encode_sockaddr(socket.AF_INET, address)
        if isinstance(address, tuple) and len(address) == 4:
            return encode_sockaddr(socket.AF_INET6, address)
    except (TypeError, ValueError, OSError):
        pass
    return b""


def ensure_nonblocking(fd: int) -> None:
    """Set ``O_NONBLOCK`` on ``fd`` unless it is set, or the fd is a regular
    file, block device or directory (never EAGAIN; left untouched). Errors
    (EBADF) are left for the op's own syscall to report."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if flags & os.O_NONBLOCK:
            return
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
            return
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    except OSError:
        pass


def encode_statx(buf: bytearray, st: os.stat_result, mask: int) -> None:
    """Fill a ``struct statx`` (``ops._STATX`` layout) from ``os.stat``."""
    a_ns, m_ns, c_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
    _STATX.pack_into(
        buf, 0,
        mask & _STATX_BASIC_STATS, st.st_blksize, 0,
        st.st_nlink, st.st_uid, st.st_gid, st.st_mode & 0xFFFF, 0,
        st.st_ino, st.st_size, st.st_blocks, 0,
        a_ns // 10**9, a_ns % 10**9, 0,
        0, 0, 0,  # btime: os.stat does not report it
        c_ns // 10**9, c_ns % 10**9, 0,
        m_ns // 10**9, m_ns % 10**9, 0,
        os.major(st.st_rdev), os.minor(st.st_rdev),
        os.major(st.st_dev), os.minor(st.st_dev),
    )  # fmt: skip


class Attempts:
    """Mixin of :class:`~corral._io.epoll.EpollBackend`: the attempts."""

    # Provided by the backend.
    pool: BufferPool
    _socks: dict[int, _Proxy]
    _fds: dict[int, FdWaiters]

    def _done(self, op: Operation, res: int, lease: Lease | None = None) -> None:
        raise NotImplementedError

    def _more(self, op: Operation, res: int, lease: Lease | None) -> None:
        raise NotImplementedError

    def _park(self, fd: int, op: Operation, direction: int) -> None:
        raise NotImplementedError

    def _add_timer(self, op: TimeoutOp) -> None:
        raise NotImplementedError

    def _fail_waiters(self, fd: int, res: int) -> int:
        raise NotImplementedError

    def _forget_fd(self, fd: int) -> None:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------

    def _sock(self, fd: int) -> _Proxy:
        """The cached socket proxy for ``fd`` (raises OSError ENOTSOCK/EBADF
        if it is not a socket)."""
        sock = self._socks.get(fd)
        if sock is None:
            # family -1: detected with one getsockname(); the type is only
            # used for SOCK_NONBLOCK (timeout 0), never for I/O.
            sock = _Proxy(-1, _SOCK_STREAM | _SOCK_NONBLOCK, 0, fd)
            self._socks[fd] = sock
        return sock

    def _sock_of_family(self, fd: int, family: int) -> _Proxy:
        """The proxy for ``fd``, checked against ``family`` where the address
        is parsed by the proxy (connect, sendmsg with an address): fd numbers
        are reused all the time, and a cached proxy may describe the
        previous socket that had this number."""
        sock = self._sock(fd)
        if sock.family != family:
            del self._socks[fd]
            sock.detach()
            sock = self._sock(fd)
        return sock

    def _failed(self, op: Operation, exc: OSError, fd: int = -1) -> int:
        err = exc.errno or _EIO
        if err in (errno.EBADF, errno.ENOTSOCK) and fd >= 0:
            # The fd was closed (or reused) behind our back: drop the proxy.
            sock = self._socks.pop(fd, None)
            if sock is not None:
                sock.detach()
        self._done(op, -err)
        return DONE

    def _free_buffer(self) -> int:
        """Index of the first free pool buffer, or -1 (not taken: it becomes
        a lease only if data lands in it, see ``_take``)."""
        free = self.pool._free
        return free[0] if free else -1

    def _view(self, index: int) -> memoryview:
        pool = self.pool
        start = index * pool.buffer_size
        return pool._view[start : start + pool.buffer_size]

    def _take(self, op: Operation, index: int, nbytes: int) -> Lease:
        """Data landed in free buffer ``index``: it becomes ``op``'s lease
        (the debug canary beyond ``nbytes`` is verified by ``adopt``)."""
        pool = self.pool
        # _free_buffer peeked at _free[0], and nothing ran since.
        pool._free.popleft()
        return pool.adopt(index, nbytes, op)

    # -- the attempts -----------------------------------------------------

    def _try_nop(self, op: NopOp) -> int:
        self._done(op, 0)
        return DONE

    def _try_timeout(self, op: TimeoutOp) -> int:
        self._add_timer(op)
        return PARKED

    def _try_poll(self, op: PollOp) -> int:
        self._park(op.fd, op, 0)
        return PARKED

    def _try_recv(self, op: RecvOp) -> int:
        try:
            res = self._sock(op.fd).recv_into(op.buffer, 0, op.flags | _DONTWAIT)
        except BlockingIOError:
            return IN
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        self._done(op, res)
        return DONE

    def _try_send(self, op: SendOp) -> int:
        try:
            res = self._sock(op.fd).send(op.buffer, op.flags | _SEND_FLAGS)
        except BlockingIOError:
            return OUT
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        self._done(op, res)
        return DONE

    def _try_recvmsg(self, op: RecvmsgOp) -> int:
        try:
            res, ancdata, msg_flags, address = self._sock(op.fd).recvmsg_into(
                op.buffers, op.ancbufsize, op.flags | _DONTWAIT
            )
        except BlockingIOError:
            return IN
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        op.out = (ancdata, msg_flags, raw_address(address))
        self._done(op, res)
        return DONE

    def _try_sendmsg(self, op: SendmsgOp) -> int:
        try:
            flags = op.flags | _SEND_FLAGS
            if op.address is None:
                res = self._sock(op.fd).sendmsg(op.buffers, op.ancdata, flags)
            else:
                address: Any = op.address
                sock = self._sock_of_family(op.fd, op.family)
                res = sock.sendmsg(op.buffers, op.ancdata, flags, address)
        except BlockingIOError:
            return OUT
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        except (TypeError, ValueError, OverflowError):
            # The address does not fit the socket's family (the record
            # validated it for op.family): what the kernel would say.
            self._done(op, -errno.EAFNOSUPPORT)
            return DONE
        self._done(op, res)
        return DONE

    def _recv_into_pool(self, op: Any, index: int) -> int:
        """One receive into free buffer ``index``; returns bytes (>= 0) or
        raises like the syscall."""
        view = self._view(index)
        if op.kind == "read_pool":
            if op.offset >= 0:
                return os.preadv(op.fd, [view], op.offset)
            return os.readv(op.fd, [view])
        return self._sock(op.fd).recv_into(view, len(view), op.flags | _DONTWAIT)

    def _try_pool(self, op: RecvPoolOp | ReadPoolOp, ready: bool = False) -> int:
        index = self._free_buffer()
        if index < 0:
            if not ready:
                # Maybe no data either: wait for readiness before saying
                # ENOBUFS, as a provided-buffer receive on io_uring does.
                return IN
            self._done(op, _no_buffer(op))
            return DONE
        try:
            res = self._recv_into_pool(op, index)
        except BlockingIOError:
            return IN
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        self._done(op, res, self._take(op, index, res) if res > 0 else None)
        return DONE

    def _try_pool_ready(self, op: RecvPoolOp | ReadPoolOp) -> int:
        return self._try_pool(op, True)

    def _try_recv_multishot(self, op: RecvMultishotOp, ready: bool = False) -> int:
        for _ in range(MULTISHOT_BUDGET):
            index = self._free_buffer()
            if index < 0:
                if not ready:
                    return IN
                # Terminal ENOBUFS: the backend parks the op until a buffer
                # is released, then re-submits it (the stream goes on).
                self._done(op, _no_buffer(op))
                return DONE
            try:
                res = self._recv_into_pool(op, index)
            except BlockingIOError:
                return IN
            except OSError as exc:
                return self._failed(op, exc, op.fd)
            if res == 0:
                self._done(op, 0)  # EOF ends the stream
                return DONE
            # Go on until EAGAIN even after a short read: on a datagram
            # socket each receive is one datagram, and stopping early would
            # cost a re-arm and a loop turn per datagram.
            self._more(op, res, self._take(op, index, res))
            ready = True
        return AGAIN_LATER

    def _try_recv_multishot_ready(self, op: RecvMultishotOp) -> int:
        return self._try_recv_multishot(op, True)

    def _accept_one(self, op: AcceptOp | AcceptMultishotOp) -> tuple[int, Any]:
        # The C-level accept of _socket.socket (absent from the stubs); it
        # returns the peer address too, decoded for the listener's family.
        fd, address = self._sock(op.fd)._accept()  # type: ignore[attr-defined]
        flags = op.flags
        try:
            # _accept() used accept4(SOCK_CLOEXEC); apply the rest of
            # op.flags as accept4 would have.
            if flags & _SOCK_NONBLOCK:
                os.set_blocking(fd, False)
            if not flags & _SOCK_CLOEXEC:
                os.set_inheritable(fd, True)
        except OSError:  # pragma: no cover - fcntl on a fresh fd
            os.close(fd)
            raise
        return int(fd), address

    def _try_accept(self, op: AcceptOp) -> int:
        try:
            res, op.peer_address = self._accept_one(op)
        except BlockingIOError:
            return IN
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        self._done(op, res)
        return DONE

    def _try_accept_multishot(self, op: AcceptMultishotOp) -> int:
        for _ in range(ACCEPT_BUDGET):
            try:
                res = self._accept_one(op)[0]
            except BlockingIOError:
                return IN
            except OSError as exc:
                # Terminal, as io_uring's multishot accept ends on an error
                # (EMFILE...): the caller decides whether to re-submit.
                return self._failed(op, exc, op.fd)
            self._more(op, res, None)
        return AGAIN_LATER

    def _try_connect(self, op: ConnectOp) -> int:
        try:
            sock = self._sock_of_family(op.fd, op.family)
            if op._kmem is _CONNECTING:
                # Writable after EINPROGRESS: SO_ERROR has the outcome
                # (connect(2), "EINPROGRESS").
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._done(op, -err)
                    return DONE
                try:
                    sock.getpeername()
                except OSError as exc:
                    if exc.errno == errno.ENOTCONN:
                        return OUT  # spurious wakeup: still connecting
                    raise
                self._done(op, 0)
                return DONE
            address: Any = op.address
            err = sock.connect_ex(address)
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        except (TypeError, ValueError, OverflowError):
            self._done(op, -errno.EAFNOSUPPORT)
            return DONE
        if err in (errno.EINPROGRESS, errno.EINTR):
            op._kmem = _CONNECTING
            return OUT
        if err == _EAGAIN:
            # AF_UNIX: the listener's backlog is full; retry when writable.
            return OUT
        self._done(op, -err)
        return DONE

    def _try_shutdown(self, op: ShutdownOp) -> int:
        try:
            self._sock(op.fd).shutdown(op.how)
        except OSError as exc:
            return self._failed(op, exc, op.fd)
        self._done(op, 0)
        return DONE

    def _try_close(self, op: CloseOp) -> int:
        fd = op.fd
        # Ops still waiting on the fd could never be woken once it is closed
        # (the epoll registration dies with the file): they fail, as a
        # syscall on a closed fd does. Then drop our registration *before*
        # closing, so a dup() of the fd cannot keep it alive (see epoll.py).
        self._fail_waiters(fd, -errno.EBADF)
        self._forget_fd(fd)
        try:
            os.close(fd)
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, 0)
        return DONE

    def _try_read(self, op: ReadOp) -> int:
        try:
            if op.offset >= 0:
                res = os.preadv(op.fd, [op.buffer], op.offset)
            else:
                res = os.readv(op.fd, [op.buffer])
        except BlockingIOError:
            return IN
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, res)
        return DONE

    def _try_write(self, op: WriteOp) -> int:
        try:
            if op.offset >= 0:
                res = os.pwrite(op.fd, op.buffer, op.offset)
            else:
                res = os.write(op.fd, op.buffer)
        except BlockingIOError:
            return OUT
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, res)
        return DONE

    def _try_readv(self, op: ReadvOp) -> int:
        if not op.buffers:
            self._done(op, 0)
            return DONE
        try:
            if op.offset >= 0:
                res = os.preadv(op.fd, op.buffers, op.offset)
            else:
                res = os.readv(op.fd, op.buffers)
        except BlockingIOError:
            return IN
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, res)
        return DONE

    def _try_writev(self, op: WritevOp) -> int:
        if not op.buffers:
            self._done(op, 0)
            return DONE
        try:
            if op.offset >= 0:
                res = os.pwritev(op.fd, op.buffers, op.offset)
            else:
                res = os.writev(op.fd, op.buffers)
        except BlockingIOError:
            return OUT
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, res)
        return DONE

    def _try_openat(self, op: OpenatOp) -> int:
        try:
            dir_fd = None if op.dir_fd == AT_FDCWD else op.dir_fd
            res = os.open(op.path[:-1], op.flags, op.mode, dir_fd=dir_fd)
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, res)
        return DONE

    def _try_statx(self, op: StatxOp) -> int:
        path = op.path[:-1]
        follow = not op.flags & _AT_SYMLINK_NOFOLLOW
        try:
            if not path and op.flags & AT_EMPTY_PATH:
                if op.dir_fd == AT_FDCWD:
                    st = os.stat(".", follow_symlinks=follow)
                else:
                    st = os.fstat(op.dir_fd)
            else:
                dir_fd = None if op.dir_fd == AT_FDCWD else op.dir_fd
                st = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow)
        except OSError as exc:
            return self._failed(op, exc)
        except ValueError:
            self._done(op, -errno.ENOENT)
            return DONE
        encode_statx(op.buf, st, op.mask)
        self._done(op, 0)
        return DONE

    def _try_fsync(self, op: FsyncOp) -> int:
        try:
            if op.datasync:
                os.fdatasync(op.fd)
            else:
                os.fsync(op.fd)
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, 0)
        return DONE

    def _try_splice(self, op: SpliceOp) -> int:
        if op._kmem is None:
            ensure_nonblocking(op.fd_in)
            ensure_nonblocking(op.fd_out)
            op._kmem = True
        try:
            res = os.splice(
                op.fd_in,
                op.fd_out,
                op.nbytes,
                op.off_in if op.off_in >= 0 else None,
                op.off_out if op.off_out >= 0 else None,
                op.flags | _SPLICE_F_NONBLOCK,
            )
        except BlockingIOError:
            # EAGAIN from either side: wait for the input unless it is
            # readable now, else for the output.
            poller = select.poll()
            poller.register(op.fd_in, select.POLLIN)
            readable = bool(poller.poll(0))
            if readable:
                self._park(op.fd_out, op, OUT)
            else:
                self._park(op.fd_in, op, IN)
            return PARKED
        except OSError as exc:
            return self._failed(op, exc)
        self._done(op, res)
        return DONE

    def _try_cancel_fd(self, op: CancelFdOp) -> int:
        self._done(op, self._fail_waiters(op.fd, -_ECANCELED))
        return DONE

    def _try_raw(self, op: Operation) -> int:
        self._done(op, -errno.ENOSYS)
        return DONE
