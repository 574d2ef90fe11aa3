"""The epoll adapter: the completion contract over readiness (stdlib only).

Chosen when io_uring is unavailable (``_select.py``). It emulates
completions: an op is *attempted* with a non-blocking syscall; if the kernel
says EAGAIN the op waits for readiness on its fd and is attempted again when
epoll reports it; whatever the syscall returns becomes the op's completion,
delivered like an io_uring CQE. What each op kind does is in
``_epoll_ops.py``.

How this meets the contract (``_backend.py``):

* ``submit`` only queues. The first attempt happens in the next
  ``get_events`` (the *flush*), so completions are only ever delivered by
  ``process_events``. Most sends and many receives succeed at that first
  attempt: they cost one syscall and no ``epoll_ctl`` at all.
* Within a flush, socket receives and accepts are attempted after the other
  ops of the batch (close, shutdown and cancel_fd are barriers that keep
  their order): a receive whose data comes from a send submitted after it
  in the same turn then completes at once, as it does on io_uring, where
  the send wakes the receive's armed poll inside the same
  ``io_uring_enter``.
* All syscalls happen in ``get_events``; their results are collected in a
  batch that ``process_events`` delivers. An op whose syscall has
  succeeded is *ready*: a cancel request no longer affects it and its result
  is delivered (rule 5). An op waiting for readiness or on the timer heap
  is detached at once by ``cancel`` and completes with ``-ECANCELED`` at
  the next ``process_events`` (rule 3: never synchronously). An op still
  queued behaves like an io_uring SQE followed by its cancel in the same
  submission: it gets its one attempt, whose result stands if it completed
  the op; if the op would have to wait, it completes with ``-ECANCELED``.
* Buffer-selecting ops (``recv_pool`` ...) receive into a free pool buffer
  that becomes a lease only if data arrived, so an idle receive pins
  nothing. With the pool empty they wait for readiness and then fail with
  ``-ENOBUFS``, which ``Backend._complete`` turns into backpressure.
* ``close()``: nothing is ever inside the kernel between two turns, so
  draining means delivering the batch not yet processed and completing
  every other op with ``-ECANCELED``, then freeing the pool.

Why EPOLLONESHOT (see "Some facts about epoll" in Trio's
``_core/_io_epoll.py``): an epoll registration is keyed by (fd number, open
file), and epoll holds no reference to the file. If an fd is closed while a
``dup`` of it keeps the file alive, the registration can neither be removed
nor changed (``epoll_ctl`` looks the fd number up in the fd table and finds
another file, or none), yet it keeps reporting events under the old fd
number. Level-triggered, a readable stale registration makes every
``epoll_wait`` return at once: the loop spins forever. One-shot interest
disarms the registration after each event, so a stale one costs at most one
spurious wakeup (the waiting op is attempted, gets EAGAIN and waits again).
The price is one ``epoll_ctl(MOD)`` per wait; the immediate attempt at the
flush avoids most waits, and the re-arm is batched before each
``epoll_wait`` (a registration whose wanted mask did not change is not
touched). Since we cannot know whether an fd we have not seen recently is
still registered (it may have been closed and its number reused), we keep a
best guess (``_registered``) and fall back from MOD to ADD on ENOENT and
from ADD to MOD on EEXIST.

One registration per fd carries the merged interest of everything waiting on
it (``FdWaiters``): EPOLLIN if receives wait, EPOLLOUT if sends wait, plus
the masks of poll ops. Receives (and sends) on one fd form a FIFO line: a
new receive does not jump ahead of one already waiting, and at readiness
only the front op is attempted (the next one only if it completed).
EPOLLERR and EPOLLHUP are reported whatever the mask asks (epoll_ctl(2)):
they wake both lines, whose syscalls then return the error or EOF.

Wakeups (``force_wakeup`` from other threads, signals through
``signal.set_wakeup_fd`` on the main thread) are one byte on a socketpair
whose read end is registered level-triggered (it is ours and never closed
behind our back). An eventfd would do for threads, but ``set_wakeup_fd``
writes single bytes, which an eventfd rejects (eventfd(2)).
"""

from __future__ import annotations

import errno
import heapq
import select
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import attrs

from ._backend import RESUMED, Backend, Capabilities
from ._epoll_ops import (
    AGAIN_LATER,
    DONE,
    IN,
    OUT,
    PARKED,
    Attempts,
    FdWaiters,
    _Proxy,
    ensure_nonblocking,
)
from .ops import (
    DONE as OP_DONE,
)
from .ops import (
    IN_FLIGHT,
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
from .pool import BufferPool, Lease

_ONESHOT = select.EPOLLONESHOT
_ERRHUP = select.EPOLLERR | select.EPOLLHUP
#: Event bits a poll op may ask for (poll(2)'s and epoll's values agree);
#: flag bits such as EPOLLONESHOT / EPOLLET are ours to set.
_POLL_BITS = (
    select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | select.EPOLLERR
    | select.EPOLLHUP | select.EPOLLRDNORM | select.EPOLLRDBAND
    | select.EPOLLWRNORM | select.EPOLLWRBAND | select.EPOLLMSG | select.EPOLLRDHUP
)  # fmt: skip
#: What poll(2) reports for a file without a poll method (a regular file):
#: DEFAULT_POLLMASK in include/linux/poll.h.
_ALWAYS_READY = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDNORM | select.EPOLLWRNORM
_MAX_EVENTS = 1024
_ECANCELED = errno.ECANCELED
_ETIME = errno.ETIME

# Where an in-flight op is (values of EpollBackend._inflight; an op waiting
# for readiness maps to its FdWaiters instead).
_QUEUED = 1  # waiting for its first attempt (or its next, after a budget)
_READY = 2  # its terminal result is in the batch: cancel no longer applies
_TIMER = 3  # on the timer heap

# Order of an op kind in the flush (see _flush).
_DEFER = 1
_BARRIER = 2

#: A kind's entry: (first attempt, attempt at readiness, FIFO line (IN/OUT,
#: 0 for none), needs O_NONBLOCK, order in the flush).
_Entry = tuple[Callable[[Any], int], Callable[[Any], int], int, bool, int]


@attrs.frozen
class EpollStatistics:
    """Counters of the epoll adapter (``EpollBackend.epoll_statistics()``).

    Attributes:
      ctl_calls: ``epoll_ctl`` calls (arming, re-arming, disarming).
      immediate: ops completed by their first attempt, without waiting.
      readiness_waits: times an op had to wait for readiness.
      fds_waited: fds with something waiting for readiness now.
      timers: timeouts pending.
    """

    ctl_calls: int
    immediate: int
    readiness_waits: int
    fds_waited: int
    timers: int


class EpollBackend(Attempts, Backend):
    """The epoll adapter. See the module docstring.

    Args:
      pool: the run's buffer pool.
      guest: guest mode (``get_events`` runs in another thread).
      install_wakeup_fd: install the signal wakeup socket with
        ``signal.set_wakeup_fd`` (main thread only); ``None`` means ``not
        guest``. The run passes False for a guest whose host uses it.

    Raises ``OSError`` at construction if epoll is unavailable.
    """

    name = "epoll"

    def __init__(
        self, pool: BufferPool, *, guest: bool = False, install_wakeup_fd: bool | None = None
    ) -> None:
        Backend.__init__(
            self,
            pool,
            Capabilities(
                # Emulated: one syscall per result, in userspace.
                multishot=False,
                # Emulated too: a pool receive takes a buffer only when data
                # is there, but the kernel does not pick it.
                provided_buffers=False,
                native_file_ops=False,
                raw_ops=False,
            ),
        )
        self.features = ("EPOLLONESHOT", "emulated-multishot", "emulated-buffer-select")
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        #: Ops waiting for their first attempt (flushed by get_events).
        self._queue: list[Operation] = []
        #: Results for the next process_events: (op, res, lease, more).
        self._ready: list[tuple[Operation, int, Lease | None, bool]] = []
        #: The batch get_events returned and process_events has not taken.
        self._unprocessed: Any = None
        #: In-flight op -> where it is (_QUEUED, _READY, _TIMER, FdWaiters).
        self._inflight: dict[Operation, Any] = {}
        self._fds: dict[int, FdWaiters] = {}
        self._dirty: list[FdWaiters] = []
        #: fds we believe hold an epoll registration (a guess; see above).
        self._registered: set[int] = set()
        self._socks: dict[int, _Proxy] = {}
        self._timers: list[tuple[float, int, TimeoutOp]] = []
        self._stale_timers = 0
        self._seq = 0
        self._ctl_calls = 0
        self._immediate = 0
        self._waits = 0
        # type -> (first attempt, attempt at readiness, line, needs
        # O_NONBLOCK, order in the flush)
        self._table: dict[type, _Entry] = {}
        for cls, first, again, line, nonblock, order in (
            (NopOp, self._try_nop, self._try_nop, 0, False, 0),
            (TimeoutOp, self._try_timeout, self._try_timeout, 0, False, 0),
            (PollOp, self._try_poll, self._try_poll, 0, False, 0),
            (RecvOp, self._try_recv, self._try_recv, IN, False, _DEFER),
            (SendOp, self._try_send, self._try_send, OUT, False, 0),
            (RecvmsgOp, self._try_recvmsg, self._try_recvmsg, IN, False, _DEFER),
            (SendmsgOp, self._try_sendmsg, self._try_sendmsg, OUT, False, 0),
            (RecvPoolOp, self._try_pool, self._try_pool_ready, IN, False, _DEFER),
            (ReadPoolOp, self._try_pool, self._try_pool_ready, IN, True, 0),
            (
                RecvMultishotOp,
                self._try_recv_multishot,
                self._try_recv_multishot_ready,
                IN,
                False,
                _DEFER,
            ),
            (AcceptOp, self._try_accept, self._try_accept, IN, True, _DEFER),
            (
                AcceptMultishotOp,
                self._try_accept_multishot,
                self._try_accept_multishot,
                IN,
                True,
                _DEFER,
            ),
            (ConnectOp, self._try_connect, self._try_connect, OUT, True, 0),
            (ShutdownOp, self._try_shutdown, self._try_shutdown, 0, False, _BARRIER),
            (CloseOp, self._try_close, self._try_close, 0, False, _BARRIER),
            (ReadOp, self._try_read, self._try_read, IN, True, 0),
            (WriteOp, self._try_write, self._try_write, OUT, True, 0),
            (ReadvOp, self._try_readv, self._try_readv, IN, True, 0),
            (WritevOp, self._try_writev, self._try_writev, OUT, True, 0),
            (OpenatOp, self._try_openat, self._try_openat, 0, False, 0),
            (StatxOp, self._try_statx, self._try_statx, 0, False, 0),
            (FsyncOp, self._try_fsync, self._try_fsync, 0, False, 0),
            (SpliceOp, self._try_splice, self._try_splice, 0, False, 0),
            (CancelFdOp, self._try_cancel_fd, self._try_cancel_fd, 0, False, _BARRIER),
            (RawOp, self._try_raw, self._try_raw, 0, False, 0),
        ):
            self._table[cls] = (first, again, line, nonblock, order)
        self._old_wakeup_fd: int | None = None
        if install_wakeup_fd is None:
            install_wakeup_fd = not guest
        if install_wakeup_fd and threading.current_thread() is threading.main_thread():
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._wake_w.fileno(), warn_on_full_buffer=False
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

    # -- submission and cancellation ----------------------------------------

    def submit(self, op: Operation) -> None:
        if op._state == IN_FLIGHT or self._closed:
            self._check_submit(op)
        if type(op) not in self._table:
            self._entry_for(op)
        op._state = IN_FLIGHT
        op._cancel_requested = False
        op._kmem = None
        self._enter(op)

    def _entry_for(self, op: Operation) -> Any:
        # A library's subclass of an op record is handled like its base.
        if not isinstance(op, Operation):
            raise TypeError(f"expected an operation record, not {type(op).__name__}")
        for cls in type(op).__mro__:
            entry = self._table.get(cls)
            if entry is not None:
                self._table[type(op)] = entry
                return entry
        raise TypeError(f"the epoll backend cannot perform {type(op).__name__}")

    def _enter(self, op: Operation) -> None:
        self._seq += 1
        op._token = self._seq
        self._submitted += 1
        self._inflight[op] = _QUEUED
        self._queue.append(op)

    def _resubmit(self, op: Operation) -> None:
        self._enter(op)

    def cancel(self, op: Operation) -> None:
        if op._state != IN_FLIGHT or op._cancel_requested:
            return
        op._cancel_requested = True
        self._cancel_requests += 1
        if self._cancel_buffer_wait(op):
            return
        where = self._inflight.get(op)
        if where is None or where == _READY or where == _QUEUED:
            # _READY: its syscall already happened; the result is delivered.
            # _QUEUED: like an io_uring SQE followed by its ASYNC_CANCEL in
            # the same submission, the op still gets its one attempt at the
            # flush; only if it would have to wait is it cancelled there.
            return
        if isinstance(where, FdWaiters):
            where.discard(op)
            self._mark_dirty(where)
        # Timer entries go stale (the token check in _expire_timers).
        elif where == _TIMER:
            self._stale_timers += 1
        self._inflight[op] = _READY
        self._complete_soon(op, -_ECANCELED)

    def _forget(self, op: Operation) -> None:
        self._inflight.pop(op, None)

    def in_flight_count(self) -> int:
        return len(self._inflight) + len(self._buffer_waits)

    def in_flight_ops(self) -> list[Operation]:
        return list(self._inflight) + list(self._buffer_waits)

    # -- results (called by the attempts, in get_events) ------------------------

    def _done(self, op: Operation, res: int, lease: Lease | None = None) -> None:
        self._inflight[op] = _READY
        self._ready.append((op, res, lease, False))

    def _more(self, op: Operation, res: int, lease: Lease | None) -> None:
        self._ready.append((op, res, lease, True))

    def _park(self, fd: int, op: Operation, direction: int) -> None:
        st = self._fds.get(fd)
        if st is None:
            st = self._fds[fd] = FdWaiters(fd)
        if direction == IN:
            st.readers.append(op)
        elif direction == OUT:
            st.writers.append(op)
        else:
            st.pollers.append(op)  # type: ignore[arg-type]  # direction 0: poll ops
        self._inflight[op] = st
        self._waits += 1
        if not st.dirty:
            st.dirty = True
            self._dirty.append(st)

    def _mark_dirty(self, st: FdWaiters) -> None:
        if not st.dirty:
            st.dirty = True
            self._dirty.append(st)

    def _add_timer(self, op: TimeoutOp) -> None:
        heapq.heappush(self._timers, (time.monotonic() + op.seconds, op._token, op))
        self._inflight[op] = _TIMER

    def _fail_waiters(self, fd: int, res: int) -> int:
        """Complete every op waiting for readiness on ``fd`` with ``res``;
        return how many there were."""
        st = self._fds.get(fd)
        if st is None:
            return 0
        ops = st.ops()
        st.readers.clear()
        st.writers.clear()
        st.pollers.clear()
        for op in ops:
            self._done(op, res)
        self._mark_dirty(st)
        return len(ops)

    def _forget_fd(self, fd: int) -> None:
        """``fd`` is about to be closed: drop its registration and proxy."""
        st = self._fds.pop(fd, None)
        if st is not None:
            st.armed = -1
        if fd in self._registered:
            self._registered.discard(fd)
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass
            self._ctl_calls += 1
        sock = self._socks.pop(fd, None)
        if sock is not None:
            sock.detach()

    # -- the loop turn --------------------------------------------------------

    def get_events(self, timeout: float) -> Any:
        """Flush (first attempts), re-arm interest, wait with epoll_wait,
        attempt what became ready, expire timers. Returns the batch of
        results (a list), ``True`` if only a wakeup or pending work
        happened, ``False`` on a plain timeout."""
        if self._queue:
            self._flush()
        for _ in range(4):
            # Re-arming can attempt ops (an fd epoll refuses is always
            # ready), which can park others: arm those too before sleeping.
            if not self._dirty:
                break
            self._rearm()
        ready = self._ready
        if ready or self._local or self._queue or self._dirty:
            timeout = 0
        timers = self._timers
        if timers:
            now = time.monotonic()
            if timers[0][0] - now < timeout:
                timeout = max(timers[0][0] - now, 0.0)
        events = self._epoll.poll(timeout, _MAX_EVENTS)
        self._kernel_waits += 1
        if events:
            fds = self._fds
            wake_fd = self._wake_fd
            for fd, mask in events:
                if fd == wake_fd:
                    self._drain_wakeups()
                    continue
                st = fds.get(fd)
                if st is None:
                    continue  # nobody waits any more (cancelled); now disarmed
                st.armed = -1  # EPOLLONESHOT disarmed it
                self._on_ready(st, mask)
                self._mark_dirty(st)
        if timers:
            self._expire_timers()
        ready = self._ready
        if ready:
            self._ready = []
            self._unprocessed = ready
            return ready
        return bool(events or self._local or self._queue or self._dirty)

    def _flush(self) -> None:
        queue = self._queue
        self._queue = []
        table = self._table
        inflight = self._inflight
        before = len(self._ready)
        # Socket receives and accepts go after the other ops of the batch:
        # on io_uring, a receive whose data comes from a send later in the
        # same submission completes in the same turn (the send wakes its
        # armed poll). Trying it first here would cost an EAGAIN, an
        # epoll_ctl and a wakeup. Ops whose order matters to them (close,
        # shutdown, cancel_fd) are barriers: deferred receives before them
        # are tried first.
        deferred: list[Operation] | None = None
        attempt = self._attempt_first
        for op in queue:
            if inflight.get(op) != _QUEUED:
                continue  # pragma: no cover - defensive: completed meanwhile
            entry = table[type(op)]
            order = entry[4]
            if order:
                if order == _DEFER:
                    if deferred is None:
                        deferred = [op]
                    else:
                        deferred.append(op)
                    continue
                if deferred:
                    for d in deferred:
                        attempt(d, table[type(d)])
                    deferred = None
            attempt(op, entry)
        if deferred:
            for d in deferred:
                attempt(d, table[type(d)])
        self._immediate += len(self._ready) - before

    def _attempt_first(self, op: Operation, entry: _Entry) -> None:
        first, _, line, nonblock, _ = entry
        if line:
            fd = op.fd  # type: ignore[attr-defined]  # every op with a line has an fd
            st = self._fds.get(fd)
            if st is not None and (st.readers if line == IN else st.writers):
                # Keep the line's order: wait behind the ops already there.
                if op._cancel_requested:
                    self._done(op, -_ECANCELED)
                else:
                    self._park(fd, op, line)
                return
            if nonblock and op._kmem is None:
                ensure_nonblocking(fd)
        r = first(op)
        if op._cancel_requested:
            self._cancelled_at_flush(op)
        elif r > 0:
            self._park(op.fd, op, r)  # type: ignore[attr-defined]
        elif r == AGAIN_LATER:
            self._inflight[op] = _QUEUED
            self._queue.append(op)

    def _cancelled_at_flush(self, op: Operation) -> None:
        """``op`` was cancelled while queued and has had its attempt: if that
        produced its terminal result, it stands; if the op would now wait
        (for readiness, a timer, another multishot turn), it is cancelled."""
        where = self._inflight.get(op)
        if where == _READY:
            return
        if isinstance(where, FdWaiters):
            where.discard(op)
            self._mark_dirty(where)
        elif where == _TIMER:
            self._stale_timers += 1
        self._done(op, -_ECANCELED)

    def _on_ready(self, st: FdWaiters, mask: int) -> None:
        if st.readers and mask & (IN | _ERRHUP):
            self._run_line(st.readers)
        if st.writers and mask & (OUT | _ERRHUP):
            self._run_line(st.writers)
        if st.pollers:
            for op in list(st.pollers):
                got = mask & (op.events | _ERRHUP)
                if got:
                    st.pollers.remove(op)
                    self._done(op, got)

    def _run_line(self, line: Any) -> None:
        table = self._table
        while line:
            op = line[0]
            r = table[type(op)][1](op)
            if r == DONE or r == PARKED:
                # PARKED: it moved itself (splice). If it re-parked on this
                # very line, the copy at the end is the one that stays.
                line.popleft()
            elif r == AGAIN_LATER:
                line.popleft()
                self._inflight[op] = _QUEUED
                self._queue.append(op)
            else:
                return

    def _rearm(self) -> None:
        dirty = self._dirty
        self._dirty = []
        fds = self._fds
        for st in dirty:
            st.dirty = False
            if fds.get(st.fd) is not st:
                continue  # forgotten (closed through us)
            if not st:
                del fds[st.fd]
                if st.armed > 0:
                    # Nobody waits: silence it rather than take a wakeup.
                    self._ctl(st, 0)
                continue
            want = (IN if st.readers else 0) | (OUT if st.writers else 0)
            for op in st.pollers:
                want |= op.events & _POLL_BITS
            if want != st.armed:
                self._ctl(st, want)

    def _ctl(self, st: FdWaiters, want: int) -> None:
        fd = st.fd
        flags = want | _ONESHOT
        epoll = self._epoll
        self._ctl_calls += 1
        try:
            if fd in self._registered:
                try:
                    epoll.modify(fd, flags)
                except FileNotFoundError:
                    # Closed and reused behind our back: a new file.
                    self._ctl_calls += 1
                    epoll.register(fd, flags)
            else:
                try:
                    epoll.register(fd, flags)
                except FileExistsError:
                    self._ctl_calls += 1
                    epoll.modify(fd, flags)
                self._registered.add(fd)
        except OSError as exc:
            self._registered.discard(fd)
            self._unpollable(st, exc.errno or errno.EIO)
            return
        st.armed = want

    def _unpollable(self, st: FdWaiters, err: int) -> None:
        """epoll refused the fd. EPERM: the file has no poll method (regular
        files, directories): it is always ready, so attempt everything now;
        an op that still cannot proceed fails with EPERM. Otherwise (EBADF:
        closed fd) every waiter fails with that error."""
        if err == errno.EPERM:
            self._on_ready(st, _ALWAYS_READY)
        for op in st.ops():
            self._done(op, -err)
        st.readers.clear()
        st.writers.clear()
        st.pollers.clear()
        if self._fds.get(st.fd) is st:
            del self._fds[st.fd]

    def _expire_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        inflight = self._inflight
        while timers and timers[0][0] <= now:
            _, token, op = heapq.heappop(timers)
            if op._token == token and inflight.get(op) == _TIMER:
                # IORING_OP_TIMEOUT's result on expiry (io_uring_prep_timeout(3)).
                self._done(op, -_ETIME)
            else:
                self._stale_timers -= 1
        if self._stale_timers > 64 and self._stale_timers > len(timers) // 2:
            # Cancelled timers pile up on the heap otherwise.
            self._timers = [
                t for t in timers if t[2]._token == t[1] and inflight.get(t[2]) == _TIMER
            ]
            heapq.heapify(self._timers)
            self._stale_timers = 0

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def process_events(self, events: Any) -> None:
        if self._local:
            self._drain_local()
        if type(events) is not list:
            return
        self._unprocessed = None
        inflight = self._inflight
        reschedule = self._reschedule
        done = 0
        for op, res, lease, more in events:
            if more:
                if op._state == IN_FLIGHT:
                    self._complete_more(op, res, lease)
                elif lease is not None:  # pragma: no cover - defensive
                    lease.release()
                continue
            inflight.pop(op, None)
            if op.multishot or (res == -errno.ENOBUFS and op.buffer_select):
                self._complete(op, res, 0, lease)
                continue
            # Backend._complete's single-shot path, inlined.
            done += 1
            op._state = OP_DONE
            op._token = 0
            op.res = res
            op.cqe_flags = 0
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
        # The scheduler keeps its reference to the batch until the next turn;
        # the ops in it pin their callers' buffers (a bytearray could not be
        # resized right after its recv_into returned).
        events.clear()

    def force_wakeup(self) -> None:
        try:
            self._wake_w.send(b"\x00")
        except OSError:
            # Full (a wakeup is already pending) or closed (the run ended).
            pass

    # -- shutdown ---------------------------------------------------------------

    def close(self) -> None:
        """Complete everything in flight, then free the pool and the epoll
        object. Nothing is inside the kernel between two turns on epoll, so
        this never waits: results already obtained are delivered (to nobody:
        leases go back to the pool), everything else completes with
        ``-ECANCELED``. Raises :class:`~corral._io.pool.BufferLeakError` in
        debug mode if leases are still held."""
        if self._closed:
            return
        self._closed = True
        try:
            for op in self.in_flight_ops():
                op._task = None
            if self._unprocessed is not None:
                self.process_events(self._unprocessed)
            if self._ready:
                ready, self._ready = self._ready, []
                self.process_events(ready)
            self._drain_local()
            for op in list(self._buffer_waits):
                self._cancel_buffer_wait(op)
            self._drain_local()
            for op in list(self._inflight):
                del self._inflight[op]
                self._complete(op, -_ECANCELED, 0, None)
            self._fds.clear()
            self._timers.clear()
        finally:
            if self._old_wakeup_fd is not None and (
                threading.current_thread() is threading.main_thread()
            ):
                signal.set_wakeup_fd(self._old_wakeup_fd)
            for sock in self._socks.values():
                sock.detach()
            self._socks.clear()
            self._epoll.close()
            self._wake_r.close()
            self._wake_w.close()
        self._finish_close()

    def epoll_statistics(self) -> EpollStatistics:
        """Return the adapter's own counters (:class:`EpollStatistics`)."""
        return EpollStatistics(
            ctl_calls=self._ctl_calls,
            immediate=self._immediate,
            readiness_waits=self._waits,
            fds_waited=len(self._fds),
            timers=len(self._timers) - self._stale_timers,
        )
