"""Readiness on Windows: ``IOCTL_AFD_POLL`` through ``\\Device\\Afd``.

Windows has no readiness API that reports to a completion port, but the
kernel's socket driver (AFD, "ancillary function driver") has one: open
``\\Device\\Afd`` as a file, associate it with the port, and issue
``DeviceIoControl(IOCTL_AFD_POLL)`` with an ``AFD_POLL_INFO`` block that names
a socket and the events of interest. The operation completes (a packet on the
port, like any overlapped I/O) when one of the events happens, with the block
rewritten to say which. The interface is undocumented but stable: wepoll,
libuv, mio and Trio are built on it. Facts this module depends on:

* The poll must name the *base* socket (``SIO_BASE_HANDLE``; see
  ``_winsock.py``): a layered provider's socket is not an AFD socket.
* Several outstanding polls on the same socket through the same port
  interfere (Trio's notes: a poll for writability may complete when the
  socket becomes readable), so there is **one poll per base socket**, for
  the union of its waiters' events. When a waiter needs events the
  outstanding poll does not cover, that poll is cancelled and a new one is
  issued once the cancelled one has reported.
* Cancelling one poll among N on an AFD handle costs O(N) in the kernel, so
  a program with many waiting sockets that unwinds pays O(N**2): sockets are
  spread over several AFD handles (``group_size`` sockets each; Trio measured
  trouble from about 1000).
* The poll block (OVERLAPPED + AFD_POLL_INFO) is written by the driver until
  the packet is dequeued: the poller owns it until then, whatever happened to
  the waiters (cancelled, socket closed).
* The driver always reports ``AFD_POLL_LOCAL_CLOSE`` when the socket is
  closed, asked or not.

Events are reported in corral's poll bits (Linux's ``POLLIN``... values,
which :class:`~corral._io.ops.PollOp` uses on every platform).
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable
from typing import Any

from . import _windows_ffi as w
from ._winerrors import errno_from_winerror
from .ops import PollOp

_ffi = w.ffi

# corral's poll bits: Linux's values (select.POLL* on Linux; Windows Python's
# select module has no poll, so these are the portable spelling).
POLLIN = 0x001
POLLPRI = 0x002
POLLOUT = 0x004
POLLERR = 0x008
POLLHUP = 0x010
POLLNVAL = 0x020

# AFD_POLL_* event bits (wepoll's afd.h, ReactOS's drivers/afd/shared.h).
AFD_POLL_RECEIVE = 0x0001
AFD_POLL_RECEIVE_EXPEDITED = 0x0002
AFD_POLL_SEND = 0x0004
AFD_POLL_DISCONNECT = 0x0008  # the peer shut down its side (FIN)
AFD_POLL_ABORT = 0x0010  # the connection was reset
AFD_POLL_LOCAL_CLOSE = 0x0020  # the socket was closed here
AFD_POLL_CONNECT = 0x0040
AFD_POLL_ACCEPT = 0x0080
AFD_POLL_CONNECT_FAIL = 0x0100

_WANT_IN = (
    AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT | AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE
)
_WANT_OUT = AFD_POLL_SEND | AFD_POLL_CONNECT_FAIL | AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE
_WANT_PRI = AFD_POLL_RECEIVE_EXPEDITED | AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE
_ALWAYS = POLLERR | POLLHUP | POLLNVAL


def afd_mask(events: int) -> int:
    """The AFD events that answer a wait for corral poll bits ``events``."""
    mask = 0
    if events & POLLIN:
        mask |= _WANT_IN
    if events & POLLOUT:
        mask |= _WANT_OUT
    if events & POLLPRI:
        mask |= _WANT_PRI
    return mask or (AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE)


def poll_bits(afd_events: int) -> int:
    """corral poll bits for the AFD events a poll reported."""
    bits = 0
    if afd_events & (AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT):
        bits |= POLLIN
    if afd_events & AFD_POLL_SEND:
        bits |= POLLOUT
    if afd_events & AFD_POLL_RECEIVE_EXPEDITED:
        bits |= POLLPRI
    if afd_events & AFD_POLL_ABORT:
        bits |= POLLIN | POLLOUT | POLLERR | POLLHUP
    if afd_events & AFD_POLL_CONNECT_FAIL:
        bits |= POLLOUT | POLLERR
    if afd_events & AFD_POLL_LOCAL_CLOSE:
        bits |= POLLNVAL
    return bits


class _Group:
    """One ``\\Device\\Afd`` handle and how many sockets poll through it."""

    __slots__ = ("handle", "size")

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.size = 0


class _SocketPolls:
    """The waiters on one base socket and its one outstanding poll."""

    __slots__ = ("base", "block", "group", "mask", "waiters")

    def __init__(self, base: int) -> None:
        self.base = base
        self.waiters: list[Any] = []
        self.block: Any = None
        self.mask = 0
        self.group: _Group | None = None

    def wanted(self) -> int:
        mask = 0
        for waiter in self.waiters:
            mask |= afd_mask(waiter.events)
        return mask


class AfdPoller:
    """Poll sockets through ``\\Device\\Afd`` handles associated with a port.

    Waiters are :class:`~corral._io.ops.PollOp` records (anything with
    ``events``). ``deliver(op, res)`` is called from :meth:`on_packet` with
    the ready poll bits (or ``-errno``); the poller forgets the waiter first.
    A poll that fails while :meth:`flush` issues it is reported through
    ``deliver_soon(op, res)`` instead (the backend completes it from its next
    ``process_events``: never from inside ``get_events``).

    Args:
      libs: the loaded DLLs.
      port: the completion port.
      key: the completion key AFD handles are associated with.
      status: the backend's NTSTATUS mapper.
      deliver: ``deliver(op, res)``.
      deliver_soon: ``deliver_soon(op, res)``.
      group_size: sockets per AFD handle.
    """

    def __init__(
        self,
        libs: w.Libraries,
        port: Any,
        key: int,
        status: Any,
        deliver: Callable[[Any, int], None],
        deliver_soon: Callable[[Any, int], None],
        *,
        group_size: int = 500,
    ) -> None:
        self._k32 = libs.kernel32
        self._port = port
        self._key = key
        self._status = status
        self._deliver = deliver
        self._deliver_soon = deliver_soon
        self._group_size = group_size
        self._groups: list[_Group] = []
        self._sockets: dict[int, _SocketPolls] = {}
        self._by_waiter: dict[Any, _SocketPolls] = {}
        #: token -> (socket record, block) of every poll the driver holds.
        self._blocks: dict[int, tuple[_SocketPolls, Any]] = {}
        self._dirty: dict[int, _SocketPolls] = {}
        self._tokens = itertools.count(1)
        self.polls_issued = 0
        self.handles_opened = 0

    @property
    def in_kernel(self) -> int:
        """Polls the driver still holds (their blocks are kept until then)."""
        return len(self._blocks)

    @property
    def waiting(self) -> int:
        """Waiters registered."""
        return len(self._by_waiter)

    # -- waiters ----------------------------------------------------------

    def add(self, waiter: Any, base: int) -> None:
        """Wait for ``waiter.events`` on base socket ``base``; the poll is
        issued (or widened) by the next :meth:`flush`."""
        sp = self._sockets.get(base)
        if sp is None:
            sp = self._sockets[base] = _SocketPolls(base)
        sp.waiters.append(waiter)
        self._by_waiter[waiter] = sp
        if sp.block is None or sp.wanted() & ~sp.mask:
            self._dirty[base] = sp

    def remove(self, waiter: Any) -> bool:
        """Stop waiting (cancellation). Returns whether ``waiter`` was
        registered. The socket's poll is cancelled if nobody else waits;
        its block stays owned until the driver reports it."""
        sp = self._by_waiter.pop(waiter, None)
        if sp is None:
            return False
        sp.waiters.remove(waiter)
        if not sp.waiters:
            if sp.block is not None:
                self._cancel_block(sp)
            else:
                self._release(sp)
        return True

    def cancel_all(self) -> None:
        """Drop every waiter and cancel every outstanding poll (shutdown)."""
        self._by_waiter.clear()
        self._dirty.clear()
        for sp in list(self._sockets.values()):
            sp.waiters.clear()
            if sp.block is not None:
                self._cancel_block(sp)
            else:
                self._release(sp)

    # -- the driver ---------------------------------------------------------

    def flush(self) -> None:
        """Issue the polls that :meth:`add` or a completion asked for."""
        if not self._dirty:
            return
        dirty = list(self._dirty.values())
        self._dirty.clear()
        for sp in dirty:
            if not sp.waiters:
                continue
            if sp.block is not None:
                if sp.wanted() & ~sp.mask:
                    # Widen: cancel, re-issue when the cancelled poll reports
                    # (never two polls on one socket).
                    self._cancel_block(sp)
                continue
            self._issue(sp)

    def _group(self) -> _Group | int:
        for group in self._groups:
            if group.size < self._group_size:
                return group
        # "\\.\GLOBALROOT" reaches the NT object namespace from a Win32 path;
        # the name after \Device\Afd is free-form (wepoll uses \Wepoll).
        name = _ffi.new("wchar_t[]", "\\\\.\\GLOBALROOT\\Device\\Afd\\Corral")
        handle = self._k32.CreateFileW(
            name, w.SYNCHRONIZE, w.FILE_SHARE_READ | w.FILE_SHARE_WRITE, _ffi.NULL,
            w.OPEN_EXISTING, w.FILE_FLAG_OVERLAPPED, _ffi.NULL,
        )  # fmt: skip
        if w.address(handle) == w.INVALID_HANDLE_VALUE:
            return -errno_from_winerror(self._k32.GetLastError())
        if self._k32.CreateIoCompletionPort(handle, self._port, self._key, 0) == _ffi.NULL:
            code = self._k32.GetLastError()
            self._k32.CloseHandle(handle)
            return -errno_from_winerror(code)
        group = _Group(handle)
        self._groups.append(group)
        self.handles_opened += 1
        return group

    def _issue(self, sp: _SocketPolls) -> None:
        group = sp.group
        if group is None:
            got = self._group()
            if isinstance(got, int):
                self._fail(sp, got, soon=True)
                return
            group = sp.group = got
            group.size += 1
        mask = sp.wanted()
        block = _ffi.new("CORRAL_AFD_POLL *")
        token = next(self._tokens)
        block.token = token
        info = block.info
        info.Timeout = 2**63 - 1  # never
        info.NumberOfHandles = 1
        info.Exclusive = 0
        info.Handles[0].Handle = _ffi.cast("HANDLE", sp.base)
        info.Handles[0].Events = mask
        info.Handles[0].Status = 0
        size = _ffi.sizeof("AFD_POLL_INFO")
        pinfo = _ffi.addressof(info)
        self.polls_issued += 1
        ok = self._k32.DeviceIoControl(
            group.handle, w.IOCTL_AFD_POLL, pinfo, size, pinfo, size, _ffi.NULL,
            _ffi.cast("OVERLAPPED *", block),
        )  # fmt: skip
        if not ok:
            code = self._k32.GetLastError()
            if code != w.ERROR_IO_PENDING:
                # The socket is gone (closed behind our back) or not an AFD
                # socket: no packet will come.
                self._fail(sp, -errno_from_winerror(code), soon=True)
                return
        sp.block = block
        sp.mask = mask
        self._blocks[token] = (sp, block)

    def _cancel_block(self, sp: _SocketPolls) -> None:
        assert sp.group is not None
        self._k32.CancelIoEx(sp.group.handle, _ffi.cast("OVERLAPPED *", sp.block))

    def _fail(self, sp: _SocketPolls, res: int, *, soon: bool = False) -> None:
        waiters = sp.waiters
        sp.waiters = []
        for waiter in waiters:
            self._by_waiter.pop(waiter, None)
        self._release(sp)
        deliver = self._deliver_soon if soon else self._deliver
        for waiter in waiters:
            deliver(waiter, res)

    def _release(self, sp: _SocketPolls) -> None:
        if self._sockets.get(sp.base) is sp:
            del self._sockets[sp.base]
        self._dirty.pop(sp.base, None)
        if sp.group is not None:
            sp.group.size -= 1
            sp.group = None

    def on_packet(self, overlapped: Any) -> None:
        """A poll reported (called by the backend for this poller's key)."""
        block = _ffi.cast("CORRAL_AFD_POLL *", overlapped)
        entry = self._blocks.pop(block.token, None)
        if entry is None:  # pragma: no cover - a packet we never asked for
            return
        sp, block = entry
        if sp.block is block:
            sp.block = None
            sp.mask = 0
        status = block.ov.Internal
        ready = 0
        failure = 0
        if status == 0:
            info = block.info
            if info.NumberOfHandles >= 1:
                ready = poll_bits(info.Handles[0].Events)
        elif self._status.errno(status) != errno.ECANCELED:
            failure = -self._status.errno(status)
        if failure:
            self._fail(sp, failure)
            return
        if ready:
            keep = []
            done = []
            for waiter in sp.waiters:
                got = ready & (waiter.events | _ALWAYS)
                if got:
                    done.append((waiter, got))
                else:
                    keep.append(waiter)
            sp.waiters = keep
            for waiter, _ in done:
                self._by_waiter.pop(waiter, None)
            for waiter, got in done:
                self._deliver(waiter, got)
        if sp.waiters:
            if sp.block is None:
                self._dirty[sp.base] = sp
        elif sp.block is None:
            self._release(sp)

    def close(self) -> None:
        """Close the AFD handles (only once :attr:`in_kernel` is 0)."""
        for group in self._groups:
            self._k32.CloseHandle(group.handle)
        self._groups.clear()


__all__ = ["POLLERR", "POLLHUP", "POLLIN", "POLLNVAL", "POLLOUT", "POLLPRI", "AfdPoller", "PollOp"]
