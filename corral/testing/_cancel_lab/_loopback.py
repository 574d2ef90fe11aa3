"""The lab's fake kernel: :class:`~corral.testing.FakeKernel` doing real I/O.

The plain fake kernel completes only what a test scripts. To run ordinary
scenarios (sockets, pipes, files) on the fake kernel, the lab drives it with
:class:`LoopbackKernel`: each loop turn it tries every pending operation with
a non-blocking system call and completes the ones that can complete, in an
order and with outcomes chosen by a seeded random generator, within what the
completion contract allows:

* an operation may be *delayed* for a few turns although it could complete
  (the kernel's progress is not the caller's business);
* a receive or send may be *short* (fewer bytes than asked, never zero for
  a non-empty request unless at end of file);
* when a cancel was requested, either the cancel wins (``-ECANCELED``, the
  operation had no effect) or, if the operation can complete in that turn,
  the completion wins and its result is delivered (contract rule 5).

So one seed fixes one interleaving: a failure found with a seed is replayed
by the same seed. The generator never makes a run idle while an operation
could complete (the autojump clock must not jump over ready I/O).

Supported operation kinds: ``nop``, ``timeout`` (real time), ``read``,
``write`` (files, pipes, sockets; ``offset`` honoured), ``read_pool``,
``recv``, ``recv_pool``, ``send``, ``recvmsg``, ``sendmsg`` (without
ancillary data), ``accept``, ``accept_multishot`` and ``recv_multishot``
(emulated one result per round, ``capabilities.multishot`` is false),
``connect``, ``shutdown``, ``close``, ``poll``, ``fsync``. Others fail with
``ENOSYS`` at submission, like a kernel without the opcode.

On Windows the same kernel runs over ``select.select`` (Windows has no
``poll``; ``select`` there takes sockets only, and regular files count as
always ready), with C runtime fds for files and SOCKET handles for sockets.
Windows cannot read a socket's blocking mode back and has no
``MSG_DONTWAIT``, so the kernel leaves every socket it touches non-blocking
(corral's sockets are anyway). Winsock error codes become errnos through
``corral._io._winerrors``, as the IOCP backend reports them.
"""

from __future__ import annotations

import errno
import math
import os
import random
import select
import socket
import stat
import sys
import time
from typing import Any

from ..._io._backend import Capabilities
from ..._io._sockaddr import encode_sockaddr
from ..._io._winerrors import errno_from_winerror
from ..._io._winfile import pread_into, pwrite_from
from ..._io.fake import FakeKernel
from ..._io.ops import IN_FLIGHT, Operation
from ..._io.pool import BufferPool, Lease

try:
    import fcntl
except ImportError:  # Windows: the loopback kernel is Unix-only (socketpairs
    fcntl = None  # type: ignore[assignment]  # + O_NONBLOCK); importing must work

_F_BUFFER = 1
_WINDOWS = sys.platform == "win32"
_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)
_FILE_KINDS = {"read", "read_pool", "write"}
# Linux's values where select has no poll (Windows), as PollOp uses them.
_POLLIN: int = getattr(select, "POLLIN", 0x001)
_POLLOUT: int = getattr(select, "POLLOUT", 0x004)
_POLLERR: int = getattr(select, "POLLERR", 0x008)
_READY_ERR: int = _POLLERR | getattr(select, "POLLHUP", 0x010) | getattr(select, "POLLNVAL", 0x020)

_READS = {"read", "read_pool", "recv", "recv_pool", "recvmsg", "recv_multishot"}
_WRITES = {"write", "send", "sendmsg"}
_SUPPORTED = (
    _READS
    | _WRITES
    | {
        "nop",
        "timeout",
        "accept",
        "accept_multishot",
        "connect",
        "shutdown",
        "close",
        "poll",
        "fsync",
    }
)
if _WINDOWS:  # Windows sockets have no sendmsg/recvmsg_into
    _SUPPORTED -= {"recvmsg", "sendmsg"}


def _errno_of(exc: OSError) -> int:
    # Windows sockets raise with the Winsock code (errno == winerror ==
    # 10035 for WSAEWOULDBLOCK): report the errno the IOCP backend would.
    winerror = getattr(exc, "winerror", None)
    if winerror:
        return errno_from_winerror(winerror)
    return exc.errno or errno.EIO


def _blocks(exc: OSError) -> bool:
    return _errno_of(exc) in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS, errno.EALREADY)


class LoopbackKernel(FakeKernel):
    """A fake kernel that performs operations for real, with seeded choices.

    Args:
      pool: the run's pool.
      seed: fixes every choice (delays, short transfers, cancel outcomes).
      delay: probability that a ready operation waits one more turn.
      short: probability that a transfer moves fewer bytes than it could.
      cancel_wins: probability that a requested cancel wins over a
        completion that is possible in the same turn.
      guest: passed by the run for guest mode.
    """

    name = "fake"

    def __init__(
        self,
        pool: BufferPool | None = None,
        *,
        seed: int = 0,
        delay: float = 0.25,
        short: float = 0.25,
        cancel_wins: float = 0.5,
        guest: bool = False,
    ) -> None:
        FakeKernel.__init__(self, pool, guest=guest)
        self.capabilities = Capabilities(
            multishot=False, provided_buffers=True, native_file_ops=False, raw_ops=False
        )
        self.rng = random.Random(seed)
        self.delay = delay
        self.short = short
        self.cancel_wins = cancel_wins
        #: If set, no transfer moves more bytes than this (a short result).
        self.max_transfer: int | None = None
        self._deadlines: dict[Operation, float] = {}
        self._connecting: set[Operation] = set()

    # -- submission -----------------------------------------------------------

    def submit(self, op: Operation) -> None:
        if op.kind not in _SUPPORTED:
            self._check_submit(op)
            raise OSError(errno.ENOSYS, f"the lab's fake kernel does not run {op.kind} ops")
        FakeKernel.submit(self, op)
        if op.kind == "timeout":
            self._deadlines[op] = time.monotonic() + op.seconds  # type: ignore[attr-defined]

    # -- one turn of kernel progress -------------------------------------------

    def _held(self, op: Operation) -> bool:
        """Ops the automatic progress leaves alone (the race explorer drives
        them itself)."""
        return False

    def _progress(self) -> None:
        pending = [op for op in self.pending if op._state == IN_FLIGHT and not self._held(op)]
        self.rng.shuffle(pending)
        skipped: list[Operation] = []
        progressed = False
        for op in pending:
            if op._cancel_requested and self.rng.random() < self.cancel_wins:
                self._finish(op, -errno.ECANCELED)
                progressed = True
            elif self.rng.random() < self.delay:
                skipped.append(op)
            elif self._attempt(op):
                progressed = True
            elif op._cancel_requested:
                # Nothing to complete with: the kernel removes the request.
                self._finish(op, -errno.ECANCELED)
                progressed = True
        if not progressed:
            # Never leave a turn empty while some op could complete.
            for op in skipped:
                if op._state == IN_FLIGHT and self._attempt(op):
                    break

    def _finish(self, op: Operation, res: int, lease: Lease | None = None) -> None:
        self._deadlines.pop(op, None)
        self._connecting.discard(op)
        self._cqes.append((op._token, res, _F_BUFFER if lease is not None else 0, lease))

    def _limit(self, n: int) -> int:
        if self.max_transfer is not None:
            return min(n, self.max_transfer)
        if n > 1 and self.rng.random() < self.short:
            return self.rng.randint(1, n - 1)
        return n

    def _attempt(self, op: Operation) -> bool:
        """Try ``op`` once, without blocking. True if it completed."""
        kind = op.kind
        if kind == "nop":
            self._finish(op, 0)
            return True
        if kind == "timeout":
            if time.monotonic() >= self._deadlines[op]:
                self._finish(op, -errno.ETIME)
                return True
            return False
        fd: int = op.fd  # type: ignore[attr-defined]
        try:
            if _WINDOWS and kind in _FILE_KINDS and not _is_socket(fd):
                pass  # select() takes no files; a regular file is always ready
            elif kind in _READS or kind in ("accept", "accept_multishot"):
                if not _ready(fd, _POLLIN):
                    return False
            elif kind in _WRITES and not _ready(fd, _POLLOUT):
                return False
            return self._syscall(op, kind, fd)
        except OSError as exc:
            if _blocks(exc):
                return False
            self._finish(op, -_errno_of(exc))
            return True

    def _syscall(self, op: Any, kind: str, fd: int) -> bool:
        rng_limit = self._limit
        if kind in ("read", "recv", "recv_pool", "read_pool", "recv_multishot"):
            lease: Lease | None = None
            if op.buffer_select:
                lease = self.pool.try_lease(op)
                if lease is None:
                    self._finish(op, -errno.ENOBUFS)
                    return True
                target = lease.buffer
            else:
                target = op.buffer
            view = target[: rng_limit(len(target))] if len(target) else target
            try:
                if kind in ("read", "read_pool"):
                    n = _pread(fd, view, op.offset)
                else:
                    n = _with_socket(fd, lambda s: s.recv_into(view, 0, op.flags | _DONTWAIT))
            except BaseException:
                if lease is not None:
                    lease.release()
                raise
            if lease is not None:
                if n == 0:
                    lease.release()
                    lease = None
                else:
                    lease.nbytes = n
            self._finish(op, n, lease)
            return True
        if kind in ("write", "send"):
            data = op.buffer[: rng_limit(len(op.buffer))] if len(op.buffer) else op.buffer
            if kind == "write":
                n = _pwrite(fd, data, op.offset)
            else:
                n = _with_socket(fd, lambda s: s.send(data, op.flags | _DONTWAIT))
            self._finish(op, n)
            return True
        if kind == "recvmsg":
            return self._recvmsg(op, fd)
        if kind == "sendmsg":
            n = _with_socket(
                fd,
                lambda s: s.sendmsg(
                    op.buffers,
                    op.ancdata,
                    op.flags | _DONTWAIT,
                    *(() if op.address is None else (op.address,)),
                ),
            )
            self._finish(op, n)
            return True
        if kind in ("accept", "accept_multishot"):
            new_fd, _ = _with_socket(fd, lambda s: s._accept())
            if not _WINDOWS:  # Windows: _accept() made it non-inheritable
                os.set_inheritable(new_fd, False)
                if op.flags & _SOCK_NONBLOCK:
                    os.set_blocking(new_fd, False)
            self._finish(op, new_fd)
            return True
        if kind == "connect":
            return self._connect(op, fd)
        if kind == "shutdown":
            _with_socket(fd, lambda s: s.shutdown(op.how))
        elif kind == "close":
            if _WINDOWS and _is_socket(fd):
                socket.socket(fileno=fd).close()  # closesocket
            else:
                os.close(fd)
        elif kind == "poll":
            ready = _poll_mask(fd, op.events)
            if not ready:
                return False
            self._finish(op, ready)
            return True
        elif kind == "fsync":
            (os.fdatasync if op.datasync and not _WINDOWS else os.fsync)(fd)
        self._finish(op, 0)
        return True

    def _recvmsg(self, op: Any, fd: int) -> bool:
        def call(s: socket.socket) -> tuple[int, list[Any], int, Any]:
            return s.recvmsg_into(op.buffers, op.ancbufsize, op.flags | _DONTWAIT)

        n, anc, flags, address = _with_socket(fd, call)
        family = _with_socket(fd, lambda s: s.family)
        raw = b""
        if address:
            try:
                raw = encode_sockaddr(family, address)
            except (OSError, TypeError, ValueError):
                raw = b""
        op.out = ([(lv, ty, bytes(d)) for lv, ty, d in anc], flags, raw)
        self._finish(op, n)
        return True

    def _connect(self, op: Any, fd: int) -> bool:
        if op in self._connecting:
            if not _ready(fd, _POLLOUT):
                return False
            err = _with_socket(fd, lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            self._finish(op, -err if err else 0)
            return True
        if _WINDOWS:
            # _with_socket made it non-blocking; Winsock codes -> errno.
            err = _with_socket(fd, lambda s: s.connect_ex(op.address), op.family)
            err = errno_from_winerror(err) if err else 0
        else:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            try:
                err = _with_socket(fd, lambda s: s.connect_ex(op.address))
            finally:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        if err in (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN):
            self._connecting.add(op)
            return False
        self._finish(op, -err if err else 0)
        return True

    # -- the I/O manager interface ---------------------------------------------------

    def get_events(self, timeout: float) -> Any:
        self.turns += 1
        self._kernel_waits += 1
        self._progress()
        if self._cqes or self._local:
            timeout = 0
        waits = [op for op in self.pending if op._state == IN_FLIGHT and not self._held(op)]
        if timeout > 0 and waits:
            timeout = self._wait_for_progress(waits, timeout)
            self._progress()
            if self._cqes:
                timeout = 0
        woke = self._waker.get_events(timeout)
        cqes, self._cqes = self._cqes, []
        return (cqes, woke) if (cqes or woke or self._local) else None

    def _wait_for_progress(self, waits: list[Operation], timeout: float) -> float:
        """Block until an op's fd is ready, a timer is due or a wakeup comes;
        return what is left of ``timeout`` for the waker."""
        if _WINDOWS:
            return self._wait_for_progress_select(waits, timeout)
        poller = select.poll()
        poller.register(self._waker._rsock.fileno(), _POLLIN)
        now = time.monotonic()
        for op in waits:
            if op in self._deadlines:
                timeout = min(timeout, max(0.0, self._deadlines[op] - now))
                continue
            fd = getattr(op, "fd", None)
            if fd is None:
                continue
            kind = op.kind
            events = _POLLOUT if kind in _WRITES or op in self._connecting else _POLLIN
            if kind == "poll":
                events = op.events  # type: ignore[attr-defined]
            try:
                poller.register(fd, events)
            except (OSError, ValueError):
                return 0.0  # a bad fd: attempt the op to fail it
        poller.poll(math.ceil(timeout * 1000))
        return 0.0

    def _wait_for_progress_select(self, waits: list[Operation], timeout: float) -> float:
        # Windows: select() over sockets (it takes nothing else; file ops
        # never wait, see _attempt).
        rlist = [self._waker._rsock.fileno()]
        wlist: list[int] = []
        now = time.monotonic()
        for op in waits:
            if op in self._deadlines:
                timeout = min(timeout, max(0.0, self._deadlines[op] - now))
                continue
            fd = getattr(op, "fd", None)
            if fd is None:
                continue
            if op.kind in _FILE_KINDS and not _is_socket(fd):
                return 0.0
            events = _POLLOUT if op.kind in _WRITES or op in self._connecting else _POLLIN
            if op.kind == "poll":
                events = op.events  # type: ignore[attr-defined]
            if events & _POLLIN:
                rlist.append(fd)
            if events & _POLLOUT:
                wlist.append(fd)
        try:
            # The except set reports a failed non-blocking connect.
            select.select(rlist, wlist, wlist, timeout)
        except (OSError, ValueError):
            return 0.0  # a bad fd: attempt the op to fail it
        return 0.0

    def close(self) -> None:
        self._deadlines.clear()
        self._connecting.clear()
        FakeKernel.close(self)


_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)


def _with_socket(fd: int, fn: Any, family: int | None = None) -> Any:
    # A temporary socket object over the caller's fd; detached (not closed)
    # afterwards.
    s = _socket_over(fd, family)
    try:
        if _WINDOWS:
            # No MSG_DONTWAIT, and the mode cannot be read back to restore.
            s.setblocking(False)
        return fn(s)
    finally:
        s.detach()


def _socket_over(fd: int, family: int | None = None) -> socket.socket:
    try:
        return socket.socket(fileno=fd)
    except OSError:
        if not _WINDOWS:
            raise
    # Wine cannot describe a socket that is neither bound nor connected
    # (SO_PROTOCOL_INFOW fails with WSAEINVAL): name the family instead (the
    # only thing the calls made here depend on).
    return socket.socket(family or socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd)


def _is_socket(fd: int) -> bool:
    # Windows: C runtime fds (files) and SOCKET handles share the int space.
    try:
        # (Windows' constructor itself rejects what is no socket: WSAENOTSOCK.)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd)
    except OSError:
        return False
    try:
        s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    except OSError:
        return False
    finally:
        s.detach()
    return True


def _ready(fd: int, events: int) -> bool:
    return bool(_poll_mask(fd, events | _READY_ERR))


def _poll_mask(fd: int, events: int) -> int:
    if _WINDOWS:
        return _select_mask(fd, events)
    poller = select.poll()
    poller.register(fd, events)
    result = poller.poll(0)
    if not result:
        return 0
    mask = result[0][1]
    if mask & select.POLLNVAL:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return mask


def _select_mask(fd: int, events: int) -> int:
    # poll()'s answer from select() (Windows): the except set carries a
    # failed connect (POLLERR); a closed socket fails (WSAENOTSOCK).
    try:
        r, w, x = select.select(
            [fd] if events & _POLLIN else [], [fd] if events & _POLLOUT else [], [fd], 0
        )
    except OSError as exc:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from exc
    return (_POLLIN if r else 0) | (_POLLOUT if w else 0) | (_POLLERR if x else 0)


def _is_seekable(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _pread(fd: int, view: Any, offset: int) -> int:
    if _WINDOWS:
        if _is_socket(fd):
            n: int = _with_socket(fd, lambda s: s.recv_into(view))
            return n
        return pread_into(fd, view, offset if offset >= 0 and _is_seekable(fd) else -1)
    if offset >= 0 and _is_seekable(fd):
        return os.preadv(fd, [view], offset)
    return os.readv(fd, [view])


def _pwrite(fd: int, data: Any, offset: int) -> int:
    if _WINDOWS:
        if _is_socket(fd):
            sent: int = _with_socket(fd, lambda s: s.send(data))
            return sent
        return pwrite_from(fd, data, offset if offset >= 0 and _is_seekable(fd) else -1)
    if offset >= 0 and _is_seekable(fd):
        return os.pwritev(fd, [data], offset)
    return os.writev(fd, [data])
