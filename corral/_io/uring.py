"""The io_uring backend: op records in, CQEs out, over ``_ring.Ring``.

How io_uring fits the completion contract (``_backend.py``), and the kernel
facts this module depends on:

* One ``io_uring_enter`` per loop turn. ``submit`` only fills an SQE
  (``Ring.prep``); ``get_events`` flushes the SQ and waits in the same
  syscall (``Ring.submit_and_wait``, EXT_ARG timeout). With 256 ops in
  flight a turn submits and reaps hundreds of ops per syscall
  (``tests/_io/test_uring.py::test_enter_calls_per_op``).
* user_data is ``generation << 20 | slot`` (``_slots.py``): a CQE for a
  submission that is over can never be delivered to the op now holding the
  slot. Internal requests (ASYNC_CANCEL, the signal-wakeup poll) carry
  user_data with bit 63 set and own no op.
* Cancellation is IORING_OP_ASYNC_CANCEL keyed by user_data. Its own CQE
  says 0 (found and cancelled), -ENOENT (not found: the target already
  completed, or its CQE is about to be reaped) or -EALREADY (the target is
  running in an io-wq worker; it was signalled and will finish soon);
  io_uring_prep_cancel(3). In every case the *target* still posts its own
  terminal CQE, which is the only thing we act on: cancel results are only
  counted. SQEs are consumed in order (io_uring_enter(2)), so a cancel
  prepared after its target's SQE in the same batch always sees it.
* Every CQE is checked for IORING_CQE_F_BUFFER, errors and cancels
  included (io_uring_register_buf_ring(3): a buffer the kernel selected is
  the application's until re-added). The buffer becomes a lease on the op,
  or goes straight back to the ring for a stale CQE.
* A buffer-selecting request finding the ring empty fails with -ENOBUFS;
  ``Backend._complete`` parks it until a lease is released, then it is
  re-submitted with a new user_data.
* Multishot requests post CQEs with IORING_CQE_F_MORE until a final one
  without it (io_uring_prep_recv_multishot(3), io_uring_prep_multishot_accept(3)).
  A final CQE with data means "stopped, re-arm" (e.g. after CQ overflow).
* SQ full: ``prep`` returns SQ_FULL; we flush with ``Ring.submit`` (a
  syscall that does not wait) and retry; if the kernel pushes back
  (EBUSY/EAGAIN: its CQ overflow list is full) the op waits in a backlog
  that the next ``get_events`` prepares first.
* CQ overflow: IORING_FEAT_NODROP (required by ``Ring``) keeps overflowed
  CQEs in a kernel list that ``submit_and_wait`` flushes; nothing is lost
  (``tests/_io/test_contract.py::test_tiny_cq_loses_nothing``).
* Closing the ring fd does not wait for in-flight requests (they are
  cancelled asynchronously by the ring's exit work, which can outlive the
  close): ``close`` cancels everything and reaps until nothing is in
  flight before it unregisters the buffer ring and frees the slab.
"""

from __future__ import annotations

import errno
import signal
import socket
import struct
import threading
import time
import warnings
from collections import deque
from typing import Any

from . import _ring
from ._backend import RESUMED, Backend, Capabilities
from ._slots import INTERNAL, SLOT_BITS, SLOT_MASK, SlotTable
from ._sockaddr import decode_sockaddr
from .ops import (
    DONE,
    IN_FLIGHT,
    NEW,
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
    RawOp,
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
from .pool import BufferPool

Op = _ring.Op
_ffi = _ring._ffi
_SQ_FULL = _ring.SQ_FULL
_F_BUFFER = int(_ring.CqeFlag.BUFFER)
_F_MORE = int(_ring.CqeFlag.MORE)
_BUFFER_SELECT = int(_ring.SqeFlag.BUFFER_SELECT)
_U64_MINUS_1 = (1 << 64) - 1
_ENOBUFS = errno.ENOBUFS
_ECANCELED = errno.ECANCELED
#: Waits at least this long are unbounded (the runner caps its timeout at a
#: day; nanoseconds of a longer one could overflow int64 in C).
_MAX_WAIT = 1e9
# The pointer ring.prep_buf takes (the extension is absent off Linux).
_from_buffer: Any = _ffi.from_buffer if _ffi is not None else None
# Opcodes as plain ints for the hot preppers (an IntEnum member costs an
# attribute lookup and a slower conversion in cffi).
_NOP = int(Op.NOP)
_READ = int(Op.READ)
_WRITE = int(Op.WRITE)
_SEND = int(Op.SEND)
_RECV = int(Op.RECV)
_POLL_ADD = int(Op.POLL_ADD)
_ACCEPT = int(Op.ACCEPT)
_CLOSE = int(Op.CLOSE)
_SHUTDOWN = int(Op.SHUTDOWN)

#: user_data of ASYNC_CANCEL requests and of the signal-wakeup poll.
_UD_CANCEL = INTERNAL | 1
_UD_SIGNAL = INTERNAL | 2
_BGID = 0

# struct iovec { void *base; size_t len; } and struct msghdr (LP64 Linux,
# include/linux/socket.h): name, namelen (+pad), iov, iovlen, control,
# controllen, flags (+pad) -- 56 bytes. struct cmsghdr: size_t len; int
# level; int type; data aligned to sizeof(size_t) (CMSG_ALIGN).
_IOVEC = struct.Struct("=QQ")
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_CMSGHDR = struct.Struct("=Qii")
_TIMESPEC = struct.Struct("=qq")
_NAME_SIZE = 128  # sizeof(struct sockaddr_storage)
_SOCKLEN = struct.Struct("=I")  # socklen_t


def _addr(buf: Any) -> int:
    """The address of a buffer's first byte (the op keeps it pinned)."""
    return int(_ffi.cast("uintptr_t", _ffi.from_buffer(buf)))


def _cmsg_align(n: int) -> int:
    return (n + 7) & ~7


def _iovecs(views: list[memoryview]) -> tuple[bytearray, int]:
    arr = bytearray(_IOVEC.size * len(views))
    for i, v in enumerate(views):
        _IOVEC.pack_into(arr, i * _IOVEC.size, _addr(v) if len(v) else 0, len(v))
    return arr, len(views)


def _encode_cmsgs(ancdata: list[tuple[int, int, bytes]]) -> bytearray:
    out = bytearray()
    for level, type_, data in ancdata:
        length = _CMSGHDR.size + len(data)
        out += _CMSGHDR.pack(length, level, type_) + data
        out += b"\0" * (_cmsg_align(length) - length)
    return out


def _decode_cmsgs(buf: bytearray, length: int) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while pos + _CMSGHDR.size <= length:
        clen, level, type_ = _CMSGHDR.unpack_from(buf, pos)
        if clen < _CMSGHDR.size:
            break
        end = min(pos + clen, length)
        out.append((level, type_, bytes(buf[pos + _CMSGHDR.size : end])))
        pos += _cmsg_align(clen)
    return out


class UringBackend(Backend):
    """The io_uring backend. Raises ``OSError`` at construction when io_uring
    is unavailable (the kernel's errno, or ENOSYS), after which nothing was
    allocated.

    Args:
      pool: the run's buffer pool (registered as the provided-buffer ring).
      entries / cq_entries: ring sizes (the kernel rounds up to powers of 2).
      guest: guest mode (waits happen in another thread: no SINGLE_ISSUER).
      install_wakeup_fd: install the signal wakeup socket with
        ``signal.set_wakeup_fd`` (main thread only); ``None`` means ``not
        guest``. The run passes False for a guest whose host uses it.
      refuse_errno: simulate a refusing kernel (tests).
    """

    name = "io_uring"

    def __init__(
        self,
        pool: BufferPool,
        *,
        entries: int = 256,
        cq_entries: int | None = None,
        guest: bool = False,
        install_wakeup_fd: bool | None = None,
        refuse_errno: int | None = None,
    ) -> None:
        ring = _ring.Ring(
            entries,
            cq_entries,
            single_issuer=not guest,
            refuse_errno=refuse_errno,
        )
        try:
            info = ring.info
            # Native multishot receive needs Linux 6.0 and provided-buffer
            # rings (5.19). There is no probe for the recv flag itself, so we
            # infer it from a feature bit added later: IORING_FEAT_REG_REG_RING
            # (6.3). Older kernels get emulated multishot (one single-shot
            # request per result, re-armed by Backend._complete_multishot).
            multishot = info.buf_ring and bool(info.features & _ring.Feature.REG_REG_RING)
            Backend.__init__(
                self,
                pool,
                Capabilities(
                    multishot=multishot,
                    provided_buffers=info.buf_ring,
                    native_file_ops=True,
                    raw_ops=True,
                ),
            )
            self.features = tuple(
                [f"setup:{f.name}" for f in _ring.SetupFlag if f & info.setup_flags]
                + [f"feature:{f.name}" for f in _ring.Feature if f & info.features]
                + (["buf_ring"] if info.buf_ring else [])
                + (["multishot"] if multishot else [])
            )
            self.ring_info = info
            self._buffer_size = pool.buffer_size
            self._bufring: Any = None
            if info.buf_ring:
                self._bufring = ring.register_buf_ring(
                    _BGID, pool.slab, pool.buffer_size, pool.count, add_all=False
                )
                # Every free buffer goes to the kernel; from now on released
                # buffers go back there too (unless someone waits for one).
                add = self._bufring.add
                free = pool._free
                if free:
                    first = free[0]
                    if list(free) == list(range(first, first + len(free))):
                        self._bufring.add_range(first, len(free))
                    else:
                        for index in free:
                            add(index)
                    free.clear()
                # raw_add skips BufRing.add's Python frame on every released
                # lease. Its errors cannot happen here: the pool hands each
                # buffer id (always < count) back once per lease, and after
                # the ring is gone (-EBADF) the buffer has nowhere to go.
                pool.sink = self._bufring.raw_add
        except BaseException:
            ring.close()
            raise
        self._ring = ring
        self._prep = ring.prep
        self._turn = ring.turn
        self._prep_simple = ring.prep_simple
        self._prep_buf = ring.prep_buf
        self._prep_select = ring.prep_select
        self._table = SlotTable()
        # The table's lists, for the per-op paths (they are never replaced).
        self._ops = self._table.ops
        self._gens = self._table.gens
        self._free = self._table.free
        self._backlog: deque[Operation] = deque()
        #: Cancel requests that found the SQ full and the kernel pushing back.
        self._cancel_backlog: list[int] = []
        self._wakeups_seen = 0
        self._stale = 0
        self._cancel_results: dict[int, int] = {}
        self._guest = guest
        self._preppers: dict[type, Any] = {
            NopOp: self._prep_nop,
            TimeoutOp: self._prep_timeout,
            ReadOp: self._prep_read,
            WriteOp: self._prep_write,
            ReadvOp: self._prep_readv,
            WritevOp: self._prep_writev,
            ReadPoolOp: self._prep_read_pool,
            RecvOp: self._prep_recv,
            RecvPoolOp: self._prep_recv_pool,
            RecvMultishotOp: self._prep_recv_multishot,
            SendOp: self._prep_send,
            RecvmsgOp: self._prep_recvmsg,
            SendmsgOp: self._prep_sendmsg,
            AcceptOp: self._prep_accept,
            AcceptMultishotOp: self._prep_accept_multishot,
            ConnectOp: self._prep_connect,
            ShutdownOp: self._prep_shutdown,
            CloseOp: self._prep_close,
            PollOp: self._prep_poll,
            OpenatOp: self._prep_openat,
            StatxOp: self._prep_statx,
            FsyncOp: self._prep_fsync,
            SpliceOp: self._prep_splice,
            CancelFdOp: self._prep_cancel_fd,
            RawOp: self._prep_raw,
        }
        # Signals: signal.set_wakeup_fd writes one byte, which an eventfd
        # rejects (eventfd(2): writes must be 8 bytes), so signals get their
        # own socketpair, watched by an internal multishot poll.
        self._sig_r, self._sig_w = socket.socketpair()
        self._sig_r.setblocking(False)
        self._sig_w.setblocking(False)
        self._old_wakeup_fd: int | None = None
        if install_wakeup_fd is None:
            install_wakeup_fd = not guest
        if install_wakeup_fd and threading.current_thread() is threading.main_thread():
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._sig_w.fileno(), warn_on_full_buffer=False
            )
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
        self._arm_signal_poll()

    # -- submission ---------------------------------------------------------

    def submit(self, op: Operation) -> None:
        if op._state == IN_FLIGHT or self._closed:
            self._check_submit(op)
        prepper = self._preppers.get(type(op))
        if prepper is None:
            prepper = self._prepper_for(op)
        op._state = IN_FLIGHT
        op._cancel_requested = False
        free = self._free
        if not free or self._backlog:
            self._enter(op, prepper)
            return
        # SlotTable.add, inlined: this is the per-op hot path. (A slot's
        # generation would need 2**43 reuses to wrap into the internal range.)
        slot = free.pop()
        gens = self._gens
        gen = gens[slot] + 1
        gens[slot] = gen
        self._ops[slot] = op
        token = (gen << SLOT_BITS) | slot
        op._token = token
        self._submitted += 1
        try:
            rc = prepper(op, token)
        except BaseException:
            self._unsubmit(op)
            raise
        if rc:
            self._prep_failed(op, rc, prepper)

    def _prepper_for(self, op: Operation) -> Any:
        # A library's subclass of an op record is prepared like its base.
        if not isinstance(op, Operation):
            raise TypeError(f"expected an operation record, not {type(op).__name__}")
        for cls in type(op).__mro__:
            prepper = self._preppers.get(cls)
            if prepper is not None:
                self._preppers[type(op)] = prepper
                return prepper
        raise TypeError(f"the io_uring backend cannot perform {type(op).__name__}")

    def _enter(self, op: Operation, prepper: Any) -> None:
        token = self._table.add(op)
        op._token = token
        self._submitted += 1
        if self._backlog:
            self._backlog.append(op)
            return
        try:
            rc = prepper(op, token)
        except BaseException:
            self._unsubmit(op)
            raise
        if rc:
            self._prep_failed(op, rc, prepper)

    def _unsubmit(self, op: Operation) -> None:
        # Preparing the SQE raised (a value out of its C type's range): the
        # op never reached the kernel, so it may be fixed and submitted again.
        self._table.pop(op._token)
        self._submitted -= 1
        op._state = NEW
        op._token = 0
        op._kmem = None

    def _prep_failed(self, op: Operation, rc: int, prepper: Any) -> None:
        if rc == _SQ_FULL:
            # Flush without waiting and retry once; if the kernel pushes back
            # (it returns 0 on EBUSY/EAGAIN), the op waits in the backlog.
            if self._ring.submit() > 0:
                rc = prepper(op, op._token)
                if rc == 0:
                    return
            if rc == _SQ_FULL:
                self._backlog.append(op)
                return
        # -errno from prep (closed ring, reserved user_data): a bug on our
        # side; fail the op rather than lose it.
        self._complete_soon(op, rc if rc < 0 else -errno.EIO)

    def _resubmit(self, op: Operation) -> None:
        self._enter(op, self._preppers[type(op)])

    def _flush_backlog(self) -> None:
        backlog = self._backlog
        preppers = self._preppers
        while backlog:
            op = backlog[0]
            if op._state != IN_FLIGHT or self._table.get(op._token) is not op:
                backlog.popleft()
                continue
            rc = preppers[type(op)](op, op._token)
            if rc == _SQ_FULL:
                if self._ring.submit() == 0:
                    return
                continue
            backlog.popleft()
            if rc:
                self._complete_soon(op, rc)

    def cancel(self, op: Operation) -> None:
        if op._state != IN_FLIGHT or op._cancel_requested:
            return
        op._cancel_requested = True
        self._cancel_requests += 1
        if self._cancel_buffer_wait(op):
            return
        if op in self._backlog:
            # Never reached the kernel: nothing to cancel there.
            self._backlog.remove(op)
            self._complete_soon(op, -_ECANCELED)
            return
        self._request_cancel(op._token)

    def _request_cancel(self, token: int) -> None:
        rc = self._prep(Op.ASYNC_CANCEL, -1, token, 0, 0, 0, _UD_CANCEL, 0, 0, 0, 0, 0)
        if rc == _SQ_FULL:
            self._ring.submit()
            rc = self._prep(Op.ASYNC_CANCEL, -1, token, 0, 0, 0, _UD_CANCEL, 0, 0, 0, 0, 0)
            if rc == _SQ_FULL:
                # Retried at the next turn (see get_events).
                self._cancel_backlog.append(token)

    def _forget(self, op: Operation) -> None:
        self._table.pop(op._token)

    def in_flight_count(self) -> int:
        return self._table.live + len(self._buffer_waits)

    def in_flight_ops(self) -> list[Operation]:
        return self._table.values() + list(self._buffer_waits)

    # -- the loop turn ----------------------------------------------------

    def get_events(self, timeout: float) -> int:
        """Flush and wait in one ``io_uring_enter``. Returns the number of
        CQEs reaped, or -1 if only a wakeup happened, or 0 on timeout."""
        if self._backlog:
            self._flush_backlog()
            timeout = 0
        if self._cancel_backlog:
            pending, self._cancel_backlog = self._cancel_backlog, []
            for token in pending:
                self._request_cancel(token)
        if self._local:
            timeout = 0
        # Ring.submit_and_wait, minus its wrapper (once per loop turn).
        if timeout <= 0:
            ns = 0
        elif timeout < _MAX_WAIT:
            ns = int(timeout * 1e9) or 1
        else:
            ns = -1
        n = self._turn(1, ns)
        if n > 0:
            return n
        if n < 0:
            raise _ring._oserror(n, "io_uring_enter failed")
        # Wakeup CQEs are consumed in C; its counter tells us one happened
        # (the scheduler needs a truthy batch for a wakeup).
        wakeups = self._ring._r.wakeups
        if wakeups != self._wakeups_seen:
            self._wakeups_seen = wakeups
            return -1
        return -1 if self._local else 0

    def process_events(self, events: Any) -> None:
        if self._local:
            self._drain_local()
        n: int = events
        if n <= 0:
            return
        ring = self._ring
        uds = ring.cqe_user_data
        ress = ring.cqe_res
        flgs = ring.cqe_flags
        ops = self._ops
        gens = self._gens
        free = self._free
        pool = self.pool
        reschedule = self._reschedule
        done = 0
        for i in range(n):
            ud = uds[i]
            res = ress[i]
            fl = flgs[i]
            if ud >= INTERNAL:
                self._internal_cqe(ud, res, fl)
                continue
            slot = ud & SLOT_MASK
            op = ops[slot]
            if op is None or gens[slot] != ud >> SLOT_BITS:
                # Stale: cannot happen unless the kernel repeats a CQE. Never
                # deliver it; a buffer it carries goes back to the ring.
                self._stale += 1
                if fl & _F_BUFFER:
                    pool.recycle(fl >> 16)
                continue
            if fl:
                lease = pool.adopt(fl >> 16, res, op) if fl & _F_BUFFER else None
                if fl & _F_MORE:
                    self._complete_more(op, res, lease)
                    continue
            else:
                lease = None
            ops[slot] = None
            free.append(slot)
            if res == -_ENOBUFS or op.multishot:
                self._complete(op, res, fl, lease)
                continue
            # The single-shot fast path of Backend._complete, inlined.
            done += 1
            op._state = DONE
            op._token = 0
            op.res = res
            op.cqe_flags = fl
            op.lease = lease
            task = op._task
            if task is not None:
                op._task = None
                reschedule(task, RESUMED)
            elif op._callback is not None:
                op._callback(op)
            elif lease is not None:
                op.lease = None
                lease.release()
        self._completed += done

    def _internal_cqe(self, ud: int, res: int, fl: int) -> None:
        if fl & _F_BUFFER:  # pragma: no cover - internal requests select no buffer
            self.pool.recycle(fl >> 16)
        if ud == _UD_CANCEL:
            self._cancel_results[res] = self._cancel_results.get(res, 0) + 1
        elif ud == _UD_SIGNAL:
            try:
                while self._sig_r.recv(4096):
                    pass
            except OSError:
                pass
            if not fl & _F_MORE and not self._closed:
                self._arm_signal_poll()

    def _arm_signal_poll(self) -> None:
        import select

        rc = self._prep(
            Op.POLL_ADD, self._sig_r.fileno(), 0, _ring.POLL_ADD_MULTI, 0,
            select.POLLIN, _UD_SIGNAL, 0, 0, 0, 0, 0,
        )  # fmt: skip
        if rc == _SQ_FULL:
            self._ring.submit()
            self._arm_signal_poll()

    def force_wakeup(self) -> None:
        self._ring.wakeup()

    # -- shutdown -----------------------------------------------------------

    def close(self) -> None:
        """Cancel everything in flight, reap until nothing is, then
        unregister the buffer ring, close the ring and free the pool. Raises
        :class:`~corral._io.pool.BufferLeakError` if an op would not finish
        (its memory is then deliberately leaked, never freed under the
        kernel) or, in debug mode, if leases are still held."""
        if self._closed:
            return
        self._closed = True
        ring = self._ring
        try:
            ops = self.in_flight_ops()
            for op in ops:
                op._task = None
            for op in list(self._backlog):
                self._backlog.remove(op)
                self._table.pop(op._token)
                self._complete(op, -_ECANCELED, 0, None)
            for op in list(self._buffer_waits):
                self._cancel_buffer_wait(op)
            self._drain_local()
            for op in self._table.values():
                self._request_cancel(op._token)
            # ASYNC_CANCEL finds a request wherever it is; one that is
            # running in an io-wq worker gets -EALREADY and finishes soon
            # (io_uring_prep_cancel(3)). Re-request every second.
            deadline = time.monotonic() + 10.0
            next_retry = time.monotonic() + 1.0
            while self._table.live and time.monotonic() < deadline:
                n = ring.submit_and_wait(1, 0.05)
                self._kernel_waits += 1
                self.process_events(n)
                if time.monotonic() > next_retry:
                    next_retry += 1.0
                    for op in self._table.values():
                        self._request_cancel(op._token)
            self._drain_local()
        finally:
            if self._old_wakeup_fd is not None and (
                threading.current_thread() is threading.main_thread()
            ):
                signal.set_wakeup_fd(self._old_wakeup_fd)
            if not self._table.live:
                ring.close()
                self._sig_r.close()
                self._sig_w.close()
            else:
                _LEAKED.append((ring, self.pool))
        self._finish_close()

    def statistics(self) -> Any:
        # The ring counts its io_uring_enter calls exactly (overflow flushes
        # and SQ-full flushes included).
        self._kernel_waits = int(self._ring._r.enter_calls)
        return Backend.statistics(self)

    def ring_statistics(self) -> _ring.RingStatistics:
        """The ring's own counters (enter calls, overflow flushes...)."""
        return self._ring.statistics()

    # -- per-op SQE preparation (one C call each) -----------------------------
    # Arguments of Ring.prep: opcode, fd, addr, len, off, op_flags,
    # user_data, sqe_flags, ioprio, buf_index (or buffer group), file_index
    # (or splice_fd_in / addr_len), addr3.

    def _prep_nop(self, op: NopOp, ud: int) -> int:
        return self._prep_simple(_NOP, -1, 0, 0, 0, 0, ud)

    def _prep_timeout(self, op: TimeoutOp, ud: int) -> int:
        sec = int(op.seconds)
        ts = bytearray(_TIMESPEC.pack(sec, int((op.seconds - sec) * 1e9)))
        op._kmem = ts
        return self._prep(Op.TIMEOUT, -1, _addr(ts), 1, 0, 0, ud, 0, 0, 0, 0, 0)

    def _prep_read(self, op: ReadOp, ud: int) -> int:
        buf = op.buffer
        off = op.offset if op.offset >= 0 else _U64_MINUS_1
        return self._prep_buf(_READ, op.fd, _from_buffer(buf), len(buf), off, 0, ud)

    def _prep_write(self, op: WriteOp, ud: int) -> int:
        buf = op.buffer
        off = op.offset if op.offset >= 0 else _U64_MINUS_1
        return self._prep_buf(_WRITE, op.fd, _from_buffer(buf), len(buf), off, 0, ud)

    def _rwv(self, opcode: int, op: Any, ud: int) -> int:
        iov, count = _iovecs(op.buffers)
        op._kmem = iov
        off = op.offset if op.offset >= 0 else _U64_MINUS_1
        return self._prep(
            opcode, op.fd, _addr(iov) if count else 0, count, off, 0, ud, 0, 0, 0, 0, 0
        )

    def _prep_readv(self, op: ReadvOp, ud: int) -> int:
        return self._rwv(Op.READV, op, ud)

    def _prep_writev(self, op: WritevOp, ud: int) -> int:
        return self._rwv(Op.WRITEV, op, ud)

    def _prep_read_pool(self, op: ReadPoolOp, ud: int) -> int:
        off = op.offset if op.offset >= 0 else _U64_MINUS_1
        return self._prep_select(_READ, op.fd, self._buffer_size, off, 0, ud, 0, _BGID)

    def _prep_recv(self, op: RecvOp, ud: int) -> int:
        buf = op.buffer
        return self._prep_buf(_RECV, op.fd, _from_buffer(buf), len(buf), 0, op.flags, ud)

    def _prep_recv_pool(self, op: RecvPoolOp, ud: int) -> int:
        return self._prep_select(_RECV, op.fd, self._buffer_size, 0, op.flags, ud, 0, _BGID)

    def _prep_recv_multishot(self, op: RecvMultishotOp, ud: int) -> int:
        if not self.capabilities.multishot:
            return self._prep(
                Op.RECV,
                op.fd,
                0,
                self.pool.buffer_size,
                0,
                op.flags,
                ud,
                _BUFFER_SELECT,
                0,
                _BGID,
                0,
                0,
            )
        # Multishot recv requires len == 0 on 6.0-6.x (io_uring/net.c
        # io_recv_prep: -EINVAL otherwise); each CQE fills one whole buffer.
        return self._prep(
            Op.RECV, op.fd, 0, 0, 0, op.flags, ud, _BUFFER_SELECT, _ring.RECV_MULTISHOT, _BGID, 0, 0
        )

    def _prep_send(self, op: SendOp, ud: int) -> int:
        buf = op.buffer
        return self._prep_buf(_SEND, op.fd, _from_buffer(buf), len(buf), 0, op.flags, ud)

    def _prep_recvmsg(self, op: RecvmsgOp, ud: int) -> int:
        iov, count = _iovecs(op.buffers)
        name = bytearray(_NAME_SIZE)
        control = bytearray(op.ancbufsize)
        hdr = bytearray(
            _MSGHDR.pack(
                _addr(name), _NAME_SIZE, _addr(iov) if count else 0, count,
                _addr(control) if op.ancbufsize else 0, op.ancbufsize, 0,
            )
        )  # fmt: skip
        op._kmem = _RecvmsgMemory(iov, name, control, hdr)
        return self._prep(Op.RECVMSG, op.fd, _addr(hdr), 1, 0, op.flags, ud, 0, 0, 0, 0, 0)

    def _prep_sendmsg(self, op: SendmsgOp, ud: int) -> int:
        iov, count = _iovecs(op.buffers)
        name = bytearray(op.sockaddr)
        control = _encode_cmsgs(op.ancdata)
        hdr = bytearray(
            _MSGHDR.pack(
                _addr(name) if name else 0, len(name), _addr(iov) if count else 0, count,
                _addr(control) if control else 0, len(control), 0,
            )
        )  # fmt: skip
        op._kmem = (iov, name, control, hdr)
        return self._prep(Op.SENDMSG, op.fd, _addr(hdr), 1, 0, op.flags, ud, 0, 0, 0, 0, 0)

    def _prep_accept(self, op: AcceptOp, ud: int) -> int:
        # io_uring_prep_accept(3): addr = the sockaddr to fill, addr2 (the
        # off field) = a socklen_t* holding its size, updated to the
        # address's length -- the peer address without a getpeername call.
        mem = _AcceptMemory()
        op._kmem = mem
        op.peer_address = None
        return self._prep_simple(
            _ACCEPT, op.fd, _addr(mem.name), 0, _addr(mem.namelen), op.flags, ud
        )

    def _prep_accept_multishot(self, op: AcceptMultishotOp, ud: int) -> int:
        ioprio = _ring.ACCEPT_MULTISHOT if self.capabilities.multishot else 0
        return self._prep(Op.ACCEPT, op.fd, 0, 0, 0, op.flags, ud, 0, ioprio, 0, 0, 0)

    def _prep_connect(self, op: ConnectOp, ud: int) -> int:
        # io_uring_prep_connect(3): the sockaddr length travels in sqe->off.
        addr = bytearray(op.sockaddr)
        op._kmem = addr
        return self._prep(Op.CONNECT, op.fd, _addr(addr), 0, len(addr), 0, ud, 0, 0, 0, 0, 0)

    def _prep_shutdown(self, op: ShutdownOp, ud: int) -> int:
        return self._prep_simple(_SHUTDOWN, op.fd, 0, op.how, 0, 0, ud)

    def _prep_close(self, op: CloseOp, ud: int) -> int:
        return self._prep_simple(_CLOSE, op.fd, 0, 0, 0, 0, ud)

    def _prep_poll(self, op: PollOp, ud: int) -> int:
        return self._prep_simple(_POLL_ADD, op.fd, 0, 0, 0, op.events, ud)

    def _prep_openat(self, op: OpenatOp, ud: int) -> int:
        return self._prep(
            Op.OPENAT, op.dir_fd, _addr(op.path), op.mode, 0, op.flags, ud, 0, 0, 0, 0, 0
        )

    def _prep_statx(self, op: StatxOp, ud: int) -> int:
        # io_uring_prep_statx(3): addr = path, len = mask, off = statx buffer.
        return self._prep(
            Op.STATX, op.dir_fd, _addr(op.path), op.mask, _addr(op.buf), op.flags, ud, 0, 0, 0, 0, 0
        )

    def _prep_fsync(self, op: FsyncOp, ud: int) -> int:
        flags = _ring.FSYNC_DATASYNC if op.datasync else 0
        return self._prep(Op.FSYNC, op.fd, 0, 0, 0, flags, ud, 0, 0, 0, 0, 0)

    def _prep_splice(self, op: SpliceOp, ud: int) -> int:
        # io_uring_prep_splice(3): fd = fd_out, off = off_out, addr =
        # splice_off_in, splice_fd_in = fd_in; -1 offsets mean "use the file
        # position" and travel as (u64)-1.
        off_in = op.off_in if op.off_in >= 0 else _U64_MINUS_1
        off_out = op.off_out if op.off_out >= 0 else _U64_MINUS_1
        return self._prep(
            Op.SPLICE, op.fd_out, off_in, op.nbytes, off_out, op.flags, ud, 0, 0, 0, op.fd_in, 0
        )

    def _prep_cancel_fd(self, op: CancelFdOp, ud: int) -> int:
        flags = _ring.ASYNC_CANCEL_FD | _ring.ASYNC_CANCEL_ALL
        return self._prep(Op.ASYNC_CANCEL, op.fd, 0, 0, 0, flags, ud, 0, 0, 0, 0, 0)

    def _prep_raw(self, op: RawOp, ud: int) -> int:
        return self._prep(
            op.opcode, op.fd, op.addr, op.len, op.off, op.op_flags, ud,
            op.sqe_flags, 0, op.buf_index, 0, 0,
        )  # fmt: skip


#: Rings and pools whose ops would not finish at close: kept alive for the
#: life of the process rather than freed under the kernel.
_LEAKED: list[tuple[Any, Any]] = []


class _AcceptMemory:
    """The sockaddr and socklen_t an accept hands the kernel; decoded into
    ``op.peer_address`` after the terminal completion (``AcceptOp._result``
    calls ``accept_peer``)."""

    __slots__ = ("name", "namelen")

    def __init__(self) -> None:
        self.name = bytearray(_NAME_SIZE)
        self.namelen = bytearray(_SOCKLEN.pack(_NAME_SIZE))

    def accept_peer(self) -> object:
        # The kernel reports the full length even if it truncated the
        # address (accept(2)); sockaddr_storage never truncates.
        n = min(_SOCKLEN.unpack(self.namelen)[0], _NAME_SIZE)
        return decode_sockaddr(bytes(self.name[:n]))


class _RecvmsgMemory:
    """What a recvmsg hands the kernel; decoded into ``op.out`` after the
    terminal completion (``RecvmsgOp._result`` calls ``fill_recvmsg``)."""

    __slots__ = ("control", "hdr", "iov", "name")

    def __init__(self, iov: bytearray, name: bytearray, control: bytearray, hdr: bytearray) -> None:
        self.iov = iov
        self.name = name
        self.control = control
        self.hdr = hdr

    def fill_recvmsg(self, op: RecvmsgOp) -> None:
        fields = _MSGHDR.unpack(self.hdr)
        namelen, controllen, msg_flags = fields[1], fields[5], fields[6]
        op.out = (
            _decode_cmsgs(self.control, controllen),
            msg_flags,
            bytes(self.name[:namelen]),
        )
