"""The IOCP backend: Windows I/O completion ports under the completion contract.

How IOCP fits the contract (``_backend.py``), and the Windows facts this
module depends on:

* One completion port per run (``CreateIoCompletionPort`` with no file).
  A handle is *associated* with a port once, for life (there is no way to
  undo it short of ``FileReplaceCompletionInformation``, Windows 8.1+), and
  from then on every overlapped operation on it queues a completion packet
  to that port. corral associates a handle the first time an op on it is
  issued in this run (``_winsock.Associator``).
* An overlapped call (``WSARecv``, ``AcceptEx``, ``ReadFile``...) either
  fails at once -- no packet will ever come, the op completes with the
  error -- or is in the kernel's hands: it returned success or
  ``ERROR_IO_PENDING``. Because corral never sets
  ``FILE_SKIP_COMPLETION_PORT_ON_SUCCESS``, a call that succeeded
  synchronously *also* queues a packet, so both cases wait for the packet.
  (Skip-on-success is unsafe with non-IFS layered providers, and a wrongly
  assumed skip would free an OVERLAPPED the kernel still reports on.)
* The OVERLAPPED is the kernel's handle on the operation. Each submission
  gets its own ``CORRAL_OVERLAPPED`` block (an OVERLAPPED followed by the
  op's token), owned by the op record (``op._kmem``) with every buffer,
  WSABUF array and sockaddr of the call, until the packet is dequeued.
  ``GetQueuedCompletionStatusEx`` hands back the block's address; the token
  stored behind the OVERLAPPED finds the op in the slot table (slot +
  generation, ``_slots.py``), so a packet can never be delivered to a later
  submission.
* Status: the I/O manager writes the final NTSTATUS into
  ``OVERLAPPED.Internal`` and the byte count into ``InternalHigh`` before the
  packet is queued. ``_winerrors`` maps it to an errno (one place).
* Cancellation: ``CancelIoEx(handle, overlapped)`` only *requests*. It
  fails with ``ERROR_NOT_FOUND`` when the operation has already completed
  (its packet is queued or about to be): too late, the real completion
  still comes and is delivered. A cancelled operation completes with
  ``STATUS_CANCELLED`` (``ERROR_OPERATION_ABORTED`` -> ``-ECANCELED``).
  A cancel requested before the op reached the kernel is sent right after
  the op is issued in the next flush (as io_uring orders a cancel SQE after
  its target), so data that is already there is still delivered.
* Wakeups: ``PostQueuedCompletionStatus`` with a key of its own (thread-safe).
  Signals: the C-level signal handler writes a byte to the wakeup socket
  (``signal.set_wakeup_fd``); an internal zero-byte ``WSARecv`` on the other
  end completes on the port, so a signal interrupts a blocked wait.
* Timers (``TimeoutOp``) need no kernel object: a heap of deadlines bounds
  the wait.
* Shutdown: a closed port does not stop the kernel from writing an
  operation's status into its OVERLAPPED when it finishes, so ``close``
  cancels everything and dequeues until every block is reported before it
  closes the port; blocks of operations that never finish are leaked on
  purpose, never freed.

Receives into pool buffers (``RecvPoolOp``, ``RecvMultishotOp``) never pin a
buffer while they wait: a zero-byte ``WSARecv`` waits for data (or EOF),
then a non-blocking ``recv`` fills a pool buffer; see ``_winiocp_ops.py``.
``PollOp`` (``wait_readable``/``wait_writable``) goes to the ``\\Device\\Afd``
poller of ``_winafd.py``.
"""

from __future__ import annotations

import errno
import heapq
import math
import signal
import socket
import threading
import time
import warnings
from typing import Any

import attrs

from . import _windows_ffi as w
from ._backend import Backend, BackendStatistics, Capabilities
from ._slots import INTERNAL, SlotTable
from ._winafd import AfdPoller
from ._winerrors import StatusMapper, errno_from_winerror
from ._winiocp_ops import IocpOps, Submission
from ._winsock import Associator
from .ops import IN_FLIGHT, Operation, PollOp, TimeoutOp
from .pool import BufferPool

_ffi = w.ffi
_ECANCELED = errno.ECANCELED
_ETIME = errno.ETIME

#: Completion keys: overlapped I/O on associated handles, AFD poll handles,
#: and posted wakeups.
KEY_IO = 1
KEY_AFD = 2
KEY_WAKEUP = 3

#: The token of the internal signal-wakeup receive.
_TOKEN_SIGNAL = INTERNAL | 1

#: Completions dequeued per GetQueuedCompletionStatusEx call.
MAX_EVENTS = 256


@attrs.frozen
class IocpStatistics:
    """Which Windows paths ran in this run (``IocpBackend.iocp_statistics``).

    Attributes:
      overlapped_calls: overlapped calls issued (WSARecv, AcceptEx, ...).
      zero_byte_receives: zero-byte WSARecvs issued for pool receives.
      pool_receives: non-blocking receives into pool buffers after one.
      immediate_failures: calls that failed at once (no packet).
      sync_ops: ops done without the kernel's asynchrony (shutdown, close,
        file ops on synchronous handles...).
      cancel_calls: CancelIoEx calls made.
      cancel_too_late: CancelIoEx calls that found nothing (ERROR_NOT_FOUND).
      afd_polls: IOCTL_AFD_POLL operations issued.
      afd_handles: ``\\Device\\Afd`` handles opened.
      wakeups: posted wakeup packets dequeued.
      stale: packets whose token matched no op (must stay 0).
    """

    overlapped_calls: int
    zero_byte_receives: int
    pool_receives: int
    immediate_failures: int
    sync_ops: int
    cancel_calls: int
    cancel_too_late: int
    afd_polls: int
    afd_handles: int
    wakeups: int
    stale: int


class IocpBackend(IocpOps, Backend):
    """The I/O completion port backend. Raises ``OSError`` at construction
    if the port cannot be created (``ENOSYS`` off Windows).

    Args:
      pool: the run's buffer pool.
      guest: guest mode (waits happen in another thread).
      install_wakeup_fd: install the signal wakeup socket with
        ``signal.set_wakeup_fd`` (main thread only); ``None`` means ``not
        guest``. The run passes False for a guest whose host uses it.
      max_events: completions dequeued per wait.
      afd_group_size: sockets per ``\\Device\\Afd`` handle.
    """

    name = "iocp"

    def __init__(
        self,
        pool: BufferPool,
        *,
        guest: bool = False,
        max_events: int = MAX_EVENTS,
        afd_group_size: int = 500,
        install_wakeup_fd: bool | None = None,
    ) -> None:
        libs = w.load()
        self._k32 = libs.kernel32
        self._ws2 = libs.ws2_32
        self._libs = libs
        port = self._k32.CreateIoCompletionPort(
            _ffi.cast("HANDLE", w.INVALID_HANDLE_VALUE), _ffi.NULL, 0, 0
        )
        if port == _ffi.NULL:
            code = self._k32.GetLastError()
            raise OSError(errno_from_winerror(code), f"CreateIoCompletionPort failed ({code})")
        self._port = port
        try:
            Backend.__init__(
                self,
                pool,
                Capabilities(
                    multishot=False,
                    provided_buffers=False,
                    native_file_ops=False,
                    raw_ops=False,
                ),
            )
            self.features = ("iocp", "zero-byte-recv", "acceptex", "connectex", "afd-poll")
            self._status = StatusMapper(libs.ntdll)
            self._assoc = Associator(libs, port, KEY_IO)
            self._table = SlotTable()
            #: Ops submitted but not yet issued to the kernel (flushed by
            #: get_events).
            self._pending: list[Operation] = []
            #: (deadline, token, op) of TimeoutOps.
            self._timers: list[tuple[float, int, Operation]] = []
            self._entries = _ffi.new("OVERLAPPED_ENTRY[]", max_events)
            self._max_events = max_events
            self._nentries = _ffi.new("ULONG *")
            self._expired: list[Operation] = []
            #: Ops a flush finished without the kernel (immediate failures,
            #: synchronous ops, readiness attempts that succeeded at once):
            #: delivered by the next process_events, with any pool lease on
            #: their Submission.
            self._ready: list[tuple[Operation, int]] = []
            self._counts = dict.fromkeys(
                (
                    "overlapped_calls", "zero_byte_receives", "pool_receives",
                    "immediate_failures", "sync_ops", "cancel_calls", "cancel_too_late",
                    "wakeups", "stale",
                ),
                0,
            )  # fmt: skip
            self._afd = AfdPoller(
                libs, port, KEY_AFD, self._status, self._deliver_poll, self._deliver_poll_soon,
                group_size=afd_group_size,
            )  # fmt: skip
            self._init_ops()
            self._guest = guest
            self._old_wakeup_fd: int | None = None
            self._signal_block: Any = None
            self._sig_r: socket.socket | None = None
            self._sig_w: socket.socket | None = None
            self._setup_signal_wakeup(
                guest if install_wakeup_fd is None else not install_wakeup_fd
            )
        except BaseException:
            self._k32.CloseHandle(port)
            raise

    # -- signals -------------------------------------------------------------

    def _setup_signal_wakeup(self, guest: bool) -> None:
        if guest or threading.current_thread() is not threading.main_thread():
            return
        self._sig_r, self._sig_w = socket.socketpair()
        self._sig_r.setblocking(False)
        self._sig_w.setblocking(False)
        rc = self._assoc.associate(self._sig_r.fileno())
        if rc < 0:
            raise OSError(-rc, "cannot watch the signal wakeup socket")
        self._old_wakeup_fd = signal.set_wakeup_fd(self._sig_w.fileno(), warn_on_full_buffer=False)
        if self._old_wakeup_fd != -1:
            warnings.warn(
                RuntimeWarning(
                    "It looks like corral's signal handling code might have "
                    "collided with another library you're using. If you're "
                    "running corral in guest mode, then this might mean you "
                    "should set host_uses_signal_set_wakeup_fd=True. "
                    "Otherwise, file a bug on corral and we'll help you figure "
                    "out what's going on."
                ),
                stacklevel=1,
            )
        self._arm_signal_recv()

    def _arm_signal_recv(self) -> None:
        assert self._sig_r is not None
        block = _ffi.new("CORRAL_OVERLAPPED *")
        block.token = _TOKEN_SIGNAL
        wsabuf = _ffi.new("WSABUF *")
        flags = _ffi.new("DWORD *")
        rc = self._ws2.WSARecv(
            self._sig_r.fileno(), wsabuf, 1, _ffi.NULL, flags,
            _ffi.cast("OVERLAPPED *", block), _ffi.NULL,
        )  # fmt: skip
        if rc != 0 and self._k32.GetLastError() != w.ERROR_IO_PENDING:
            # The wakeup socket failed; signals then wake the loop only when
            # their Python handler runs (force_wakeup from run_sync_soon).
            self._signal_block = None
            return
        self._signal_block = (block, wsabuf, flags)

    def _on_signal_packet(self) -> None:
        self._signal_block = None
        sock = self._sig_r
        if sock is None:
            return
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        if not self._closed:
            self._arm_signal_recv()

    # -- submission ---------------------------------------------------------

    def submit(self, op: Operation) -> None:
        if op._state == IN_FLIGHT or self._closed or not isinstance(op, Operation):
            self._check_submit(op)
        self._starter(op)  # validates the op kind before anything changes
        op._state = IN_FLIGHT
        op._cancel_requested = False
        self._enter(op)

    def _enter(self, op: Operation) -> None:
        token = self._table.add(op)
        op._token = token
        op._kmem = None
        self._submitted += 1
        if type(op) is TimeoutOp:
            heapq.heappush(self._timers, (time.monotonic() + op.seconds, token, op))
            return
        self._pending.append(op)

    def _resubmit(self, op: Operation) -> None:
        self._enter(op)

    def _forget(self, op: Operation) -> None:
        self._table.pop(op._token)
        sub = op._kmem
        if isinstance(sub, Submission) and not sub.in_kernel:
            sub.release()

    def in_flight_count(self) -> int:
        return self._table.live + len(self._buffer_waits)

    def in_flight_ops(self) -> list[Operation]:
        return self._table.values() + list(self._buffer_waits)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        table = self._table
        for op in pending:
            token = op._token
            if op._state != IN_FLIGHT or table.get(token) is not op:
                continue
            if op._cancel_requested and isinstance(op, PollOp):
                continue  # already completed (cancelled) by cancel()
            sub = Submission(token)
            op._kmem = sub
            try:
                res = self._starter(op)(op, sub)
            except BaseException:
                # A bug or bad input that escaped validation: fail the op
                # rather than lose it.
                sub.in_kernel = False
                self._complete_soon(op, -errno.EINVAL)
                raise
            if res is not None:
                sub.in_kernel = False
                self._ready.append((op, res))
            elif op._cancel_requested:
                self._cancel_in_kernel(op, sub)

    # -- cancellation -------------------------------------------------------

    def cancel(self, op: Operation) -> None:
        if op._state != IN_FLIGHT or op._cancel_requested:
            return
        op._cancel_requested = True
        self._cancel_requests += 1
        if self._cancel_buffer_wait(op):
            return
        if type(op) is TimeoutOp:
            self._complete_soon(op, -_ECANCELED)
            return
        if isinstance(op, PollOp):
            # A poll owns no memory of the op's: the waiter leaves at once
            # (the poller keeps the socket's poll block until it reports).
            self._afd.remove(op)
            self._complete_soon(op, -_ECANCELED)
            return
        sub = op._kmem
        if isinstance(sub, Submission) and sub.token == op._token:
            self._cancel_in_kernel(op, sub)
        # else: not issued yet; _flush cancels it right after issuing it.

    def _cancel_in_kernel(self, op: Operation, sub: Submission) -> None:
        if not sub.in_kernel or sub.handle is None:
            return
        sub.cancel_sent = True
        self._counts["cancel_calls"] += 1
        ok = self._k32.CancelIoEx(
            _ffi.cast("HANDLE", sub.handle), _ffi.cast("OVERLAPPED *", sub.block)
        )
        if not ok:
            code = self._k32.GetLastError()
            if code == w.ERROR_NOT_FOUND:
                # Too late: the operation finished; its packet is queued (or
                # about to be) and is what completes the op.
                self._counts["cancel_too_late"] += 1

    # -- the loop -------------------------------------------------------------

    def get_events(self, timeout: float) -> Any:
        self._flush()
        self._afd.flush()  # may queue failures on self._local
        if self._local or self._ready:
            timeout = 0
        timers = self._timers
        if timers:
            now = time.monotonic()
            timeout = max(0.0, min(timeout, timers[0][0] - now))
        ms = 0 if timeout <= 0 else min(math.ceil(timeout * 1000), w.INFINITE - 1)
        self._kernel_waits += 1
        ok = self._k32.GetQueuedCompletionStatusEx(
            self._port, self._entries, self._max_events, self._nentries, ms, 0
        )
        n = self._nentries[0] if ok else 0
        if not ok:
            code = self._k32.GetLastError()
            if code != w.WAIT_TIMEOUT:  # pragma: no cover - a bug or a closed port
                raise OSError(
                    errno_from_winerror(code), f"GetQueuedCompletionStatusEx failed ({code})"
                )
        expired = self._expire_timers()
        if n or expired or self._local or self._ready:
            return (n, expired)
        return None

    def _expire_timers(self) -> list[Operation]:
        timers = self._timers
        if not timers:
            return []
        now = time.monotonic()
        out = []
        table = self._table
        while timers and timers[0][0] <= now:
            _, token, op = heapq.heappop(timers)
            if table.get(token) is op:
                out.append(op)
        return out

    def process_events(self, events: Any) -> None:
        self._drain_local()
        table = self._table
        if self._ready:
            ready, self._ready = self._ready, []
            for op, res in ready:
                if op._state == IN_FLIGHT and table.pop(op._token) is op:
                    sub = op._kmem
                    lease = sub.lease
                    sub.lease = None
                    sub.release()
                    self._complete(op, res, 0, lease)
        if not events:
            return
        n, expired = events
        entries = self._entries
        for i in range(n):
            entry = entries[i]
            key = entry.lpCompletionKey
            if key == KEY_IO:
                block = _ffi.cast("CORRAL_OVERLAPPED *", entry.lpOverlapped)
                token = block.token
                if token == _TOKEN_SIGNAL:
                    self._on_signal_packet()
                    continue
                op = table.get(token)
                if op is None:
                    self._counts["stale"] += 1
                    continue
                sub = op._kmem
                sub.in_kernel = False
                res = sub.finish(op, sub, block.ov.Internal, entry.dwNumberOfBytesTransferred)
                if res is None:
                    continue  # the op went on to its next stage
                table.pop(token)
                lease = sub.lease
                sub.lease = None
                sub.release()
                self._complete(op, res, 0, lease)
            elif key == KEY_AFD:
                self._afd.on_packet(entry.lpOverlapped)
            elif key == KEY_WAKEUP:
                self._counts["wakeups"] += 1
        for op in expired:
            if op._state == IN_FLIGHT and table.pop(op._token) is op:
                self._complete(op, -_ETIME, 0, None)

    def _deliver_poll(self, op: Any, res: int) -> None:
        # Called by the poller from process_events (a poll reported).
        if op._state == IN_FLIGHT and self._table.pop(op._token) is op:
            self._complete(op, res, 0, None)

    def _deliver_poll_soon(self, op: Any, res: int) -> None:
        # Called by the poller when issuing a poll failed (from get_events).
        self._complete_soon(op, res)

    def force_wakeup(self) -> None:
        self._k32.PostQueuedCompletionStatus(self._port, 0, KEY_WAKEUP, _ffi.NULL)

    # -- shutdown -----------------------------------------------------------

    def close(self) -> None:
        """Cancel everything in flight, dequeue until every OVERLAPPED has
        been reported, then close the AFD handles and the port and free the
        pool. Raises :class:`~corral._io.pool.BufferLeakError` if an
        operation never finished (its memory is then kept for the life of
        the process, never freed under the kernel)."""
        if self._closed:
            return
        self._closed = True
        try:
            for op in self.in_flight_ops():
                op._task = None
            for op in list(self._buffer_waits):
                self._cancel_buffer_wait(op)
            # Ops the kernel never saw, and timers, end here.
            for op in self._pending:
                if op._state == IN_FLIGHT and self._table.get(op._token) is op:
                    self._complete_soon(op, -_ECANCELED)
            self._pending = []
            for _, token, op in self._timers:
                if self._table.get(token) is op:
                    self._complete_soon(op, -_ECANCELED)
            self._timers = []
            self.process_events(None)
            for op in self._table.values():
                if isinstance(op, PollOp):
                    self.cancel(op)
                else:
                    sub = op._kmem
                    if isinstance(sub, Submission):
                        self._cancel_in_kernel(op, sub)
            self._afd.cancel_all()
            self.process_events(None)
            if self._signal_block is not None and self._sig_r is not None:
                self._k32.CancelIoEx(
                    _ffi.cast("HANDLE", self._sig_r.fileno()),
                    _ffi.cast("OVERLAPPED *", self._signal_block[0]),
                )
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and (
                self._table.live or self._afd.in_kernel or self._signal_block is not None
            ):
                events = self._wait_for_drain()
                self.process_events(events)
                for op in self._table.values():
                    # Ops that moved to a next stage (a pool receive after its
                    # zero-byte receive) are cancelled again there.
                    sub = op._kmem
                    if isinstance(sub, Submission) and sub.in_kernel and not sub.cancel_sent:
                        self._cancel_in_kernel(op, sub)
            self.process_events(None)
        finally:
            if self._old_wakeup_fd is not None and (
                threading.current_thread() is threading.main_thread()
            ):
                signal.set_wakeup_fd(self._old_wakeup_fd)
            stuck = self._table.live or self._afd.in_kernel or self._signal_block is not None
            if not stuck:
                self._afd.close()
                self._k32.CloseHandle(self._port)
                for sock in (self._sig_r, self._sig_w):
                    if sock is not None:
                        sock.close()
            else:
                _LEAKED.append(self)
        self._finish_close()

    def _wait_for_drain(self) -> Any:
        ok = self._k32.GetQueuedCompletionStatusEx(
            self._port, self._entries, self._max_events, self._nentries, 50, 0
        )
        self._kernel_waits += 1
        n = self._nentries[0] if ok else 0
        return (n, []) if n else None

    # -- statistics ---------------------------------------------------------

    def statistics(self) -> BackendStatistics:
        return Backend.statistics(self)

    def iocp_statistics(self) -> IocpStatistics:
        """Counters that show which Windows paths ran (see
        :class:`IocpStatistics`)."""
        c = self._counts
        return IocpStatistics(
            overlapped_calls=c["overlapped_calls"],
            zero_byte_receives=c["zero_byte_receives"],
            pool_receives=c["pool_receives"],
            immediate_failures=c["immediate_failures"],
            sync_ops=c["sync_ops"],
            cancel_calls=c["cancel_calls"],
            cancel_too_late=c["cancel_too_late"],
            afd_polls=self._afd.polls_issued,
            afd_handles=self._afd.handles_opened,
            wakeups=c["wakeups"],
            stale=c["stale"],
        )


#: Backends whose operations would not finish at close: kept alive (with
#: their OVERLAPPED blocks and buffers) for the life of the process.
_LEAKED: list[Any] = []
