"""A deterministic fake kernel: the backend whose completions a test scripts.

Nothing reaches a real kernel. Submitted ops sit in :attr:`FakeKernel.pending`
until the test completes them (:meth:`FakeKernel.complete`, ``fail``,
``enobufs``, ``complete_cancelled``); cancel requests are logged in
:attr:`FakeKernel.cancel_requests` and, unless ``auto_cancel`` is set, are
*not* acted on, so a test decides who wins a cancel/completion race:

* cancel wins: ``kernel.complete_cancelled(op)``;
* completion wins: ``kernel.complete(op, 5, data=b"hello")`` after the
  cancel request;
* both in one turn: cancel the task's scope and script the completion before
  the next loop turn; the completion is delivered (success after cancel).

Scripted completions are queued as CQEs carrying the op's token at the time
of scripting and delivered by the next ``process_events``, in script order.
A CQE whose token is stale (the op completed or was re-submitted since) is
dropped and counted in :attr:`FakeKernel.stale_completions`, as io_uring's
slot + generation user_data would make it.

Ops with ``auto`` handlers (by default: ``nop`` completes with 0) complete
on the next turn without scripting. Timeouts and wakeups are real: the fake
sleeps in ``get_events`` on a socketpair (the core's minimal manager), so
``corral.sleep`` and ``force_wakeup`` work as usual.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from .._core._io_manager import MinimalIOManager
from ._backend import Backend, Capabilities
from ._slots import SlotTable
from .ops import IN_FLIGHT, Operation, RawOp
from .pool import BufferPool, Lease

_CQE_F_BUFFER = 1
_CQE_F_MORE = 2


class FakeKernel(Backend):
    """The scriptable backend. See the module docstring.

    Args:
      pool: the run's pool (default: a small one, 16 buffers of 4 KiB).
      auto_cancel: act on cancel requests by completing with ``-ECANCELED``
        on the next turn (default ``False``: the test decides).
      guest: passed by the run for guest mode.
      install_wakeup_fd: install the signal wakeup socket with
        ``signal.set_wakeup_fd`` (main thread only); ``None`` means ``not
        guest``. The run passes False for a guest whose host uses it.
    """

    name = "fake"

    def __init__(
        self,
        pool: BufferPool | None = None,
        *,
        auto_cancel: bool = False,
        guest: bool = False,
        install_wakeup_fd: bool | None = None,
    ) -> None:
        Backend.__init__(
            self,
            pool if pool is not None else BufferPool(4096, 16),
            Capabilities(
                multishot=True, provided_buffers=True, native_file_ops=True, raw_ops=False
            ),
        )
        self.auto_cancel = auto_cancel
        #: kind -> function(op) returning a result to complete with on the
        #: next turn, or None to leave the op pending.
        self.auto: dict[str, Callable[[Operation], int | None]] = {"nop": lambda op: 0}
        self._table = SlotTable()
        self._waker = MinimalIOManager(guest=guest, install_wakeup_fd=install_wakeup_fd)
        self._cqes: list[tuple[int, int, int, Lease | None]] = []
        #: Every submission, in order: (token, op).
        self.submissions: list[tuple[int, Operation]] = []
        #: Every cancel request that reached the kernel, in order.
        self.cancel_requests: list[Operation] = []
        #: Scripted completions dropped because their token was stale.
        self.stale_completions = 0
        #: Loop turns (get_events calls).
        self.turns = 0

    # -- the test's side -------------------------------------------------

    @property
    def pending(self) -> list[Operation]:
        """Ops in the fake kernel (submitted, no terminal CQE scripted yet)."""
        return [op for op in self._table.values() if not self._scripted_terminal(op)]

    def _scripted_terminal(self, op: Operation) -> bool:
        token = op._token
        return any(t == token and not (f & _CQE_F_MORE) for t, _, f, _ in self._cqes)

    def token(self, op: Operation) -> int:
        """The op's current token (its io_uring user_data equivalent)."""
        return op._token

    def complete(
        self,
        op: Operation,
        res: int | None = None,
        *,
        data: bytes | None = None,
        more: bool = False,
    ) -> None:
        """Script a completion for ``op``'s current submission.

        ``data``: for a buffer-selecting op, a pool buffer is taken (as the
        kernel would pick one from the ring) and filled; if the pool is empty
        the completion becomes ``-ENOBUFS``. For an op with a user buffer
        (``op.buffer``), the data is copied into it. ``res`` defaults to
        ``len(data)``. ``more=True`` makes it a non-terminal multishot
        completion (IORING_CQE_F_MORE).
        """
        if op._state != IN_FLIGHT or op._token == 0:
            raise RuntimeError(f"{op!r} is not in the fake kernel")
        if res is None:
            res = len(data) if data is not None else 0
        flags = _CQE_F_MORE if more else 0
        lease: Lease | None = None
        if data is not None:
            if op.buffer_select:
                lease = self.pool.try_lease(op)
                if lease is None:
                    res, data = -errno.ENOBUFS, None
                    flags = 0
                else:
                    lease.buffer[: len(data)] = data
                    lease.nbytes = len(data)
                    if self.pool.debug:
                        # try_lease verified the whole buffer; nothing else to
                        # check (the kernel would only have written data).
                        pass
                    flags |= _CQE_F_BUFFER
            else:
                buffer = getattr(op, "buffer", None)
                if buffer is None:
                    raise TypeError(f"{op!r} has no buffer to put data into")
                buffer[: len(data)] = data
        self._cqes.append((op._token, res, flags, lease))
        self._waker.force_wakeup()

    def fail(self, op: Operation, err: int) -> None:
        """Script a terminal failure ``-err`` for ``op``."""
        self.complete(op, -err)

    def complete_cancelled(self, op: Operation) -> None:
        """Script "the kernel cancelled it" (``-ECANCELED``)."""
        self.complete(op, -errno.ECANCELED)

    def enobufs(self, op: Operation) -> None:
        """Script "no buffer in the ring" (``-ENOBUFS``) for ``op``."""
        self.complete(op, -errno.ENOBUFS)

    def deliver_raw(self, token: int, res: int, flags: int = 0) -> None:
        """Queue a CQE with an arbitrary token (to test stale tokens)."""
        self._cqes.append((token, res, flags, None))

    # -- the backend's side ------------------------------------------------

    def submit(self, op: Operation) -> None:
        self._check_submit(op)
        if isinstance(op, RawOp):
            raise OSError(errno.ENOSYS, "the fake kernel does not accept raw io_uring ops")
        op._state = IN_FLIGHT
        op._cancel_requested = False
        self._enter(op)

    def _enter(self, op: Operation) -> None:
        token = self._table.add(op)
        op._token = token
        self._submitted += 1
        self.submissions.append((token, op))
        handler = self.auto.get(op.kind)
        if handler is not None:
            res = handler(op)
            if res is not None:
                self._cqes.append((token, res, 0, None))

    def _resubmit(self, op: Operation) -> None:
        self._enter(op)

    def cancel(self, op: Operation) -> None:
        if op._state != IN_FLIGHT or op._cancel_requested:
            return
        op._cancel_requested = True
        self._cancel_requests += 1
        self.cancel_requests.append(op)
        if self._cancel_buffer_wait(op):
            return
        if self.auto_cancel:
            self._cqes.append((op._token, -errno.ECANCELED, 0, None))

    def in_flight_count(self) -> int:
        return self._table.live + len(self._buffer_waits)

    def in_flight_ops(self) -> list[Operation]:
        return self._table.values() + list(self._buffer_waits)

    def get_events(self, timeout: float) -> Any:
        self.turns += 1
        self._kernel_waits += 1
        if self._cqes or self._local:
            timeout = 0
        woke = self._waker.get_events(timeout)
        cqes, self._cqes = self._cqes, []
        return (cqes, woke) if (cqes or woke or self._local) else None

    def process_events(self, events: Any) -> None:
        self._drain_local()
        if not events:
            return
        cqes, woke = events
        if woke:
            self._waker.process_events(woke)
        table = self._table
        for token, res, flags, lease in cqes:
            op = table.get(token)
            if op is None:
                self.stale_completions += 1
                if lease is not None:
                    lease.release()
                continue
            if flags & _CQE_F_MORE:
                self._complete_more(op, res, lease)
                continue
            table.pop(token)
            self._complete(op, res, flags, lease)

    def _forget(self, op: Operation) -> None:
        self._table.pop(op._token)

    def force_wakeup(self) -> None:
        self._waker.force_wakeup()

    def close(self) -> None:
        """Shutdown drain. The fake kernel honours every cancel at once: ops
        still pending get ``-ECANCELED``, scripted completions are delivered
        first (to nobody), then the pool is freed."""
        if self._closed:
            return
        self._closed = True
        try:
            for op in self.in_flight_ops():
                op._task = None
            self.process_events((self._cqes, 0))
            self._cqes = []
            self._drain_local()
            for op in list(self._table.values()):
                op._task = None
                token = op._token
                self._table.pop(token)
                self._complete(op, -errno.ECANCELED, 0, None)
            for op in list(self._buffer_waits):
                self._cancel_buffer_wait(op)
            self._drain_local()
            self._finish_close()
        finally:
            self._waker.close()
