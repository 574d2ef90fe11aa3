"""The backend interface: the completion contract, in code.

Every backend (io_uring, the epoll adapter, the fake kernel; IOCP and AFD on
Windows) is a subclass of :class:`Backend`. It is the run's I/O manager (the
scheduler calls ``get_events`` / ``process_events`` / ``force_wakeup`` /
``close`` / ``statistics``, see ``docs/internals.md``) and it accepts
operation records (``corral._io.ops``) through ``submit`` and ``cancel``.

The contract (``DESIGN.md``, "The completion contract"); the shared suite in
``tests/_io/test_contract.py`` checks it on every backend:

1. ``submit(op)`` queues. Nothing reaches the kernel before the next
   ``get_events``, which flushes and waits in one step (io_uring: one
   ``io_uring_enter`` per loop turn). ``submit`` raises only for misuse
   (op already in flight, backend closed, op kind unsupported): then the op
   was not submitted and no completion will come.
2. Every submitted op gets exactly one terminal completion, delivered by
   :meth:`Backend._complete` from ``process_events`` (never from inside
   ``submit``, ``cancel`` or an abort callback). Multishot ops get any
   number of non-terminal completions (:meth:`Backend._complete_more`) first.
3. ``cancel(op)`` only *requests* cancellation, at most once per submission,
   and never frees anything. The terminal completion still arrives: the real
   result, or ``-ECANCELED``.
4. Everything the kernel may touch is owned by the op record (see
   ``ops.py``) until the terminal completion; backend-allocated memory hangs
   off ``op._kmem`` and is kept until the op is submitted again or dies
   (results are decoded from it after the terminal completion).
5. A completion after a cancel request is honoured: a success is delivered.
6. Backend tokens (io_uring user_data) are never reused while an op can
   still complete: slot + generation. Every io_uring CQE is checked for a
   selected buffer, errors and cancels included, and the buffer becomes a
   lease or goes back to the pool.
7. ``close()``: request cancellation of everything in flight, reap until
   nothing is in flight, and only then free the pool and the kernel object.
   Ops whose terminal completion arrives during ``close`` are completed
   with nobody waiting: their leases go back to the pool.

Buffer-selecting ops (``op.buffer_select``) that the kernel fails with
``-ENOBUFS`` (pool empty) are not completed: :meth:`Backend._complete`
parks them until a buffer is released, then re-submits them with a new token
(backpressure, counted in the pool statistics). A cancel request while parked
completes them with ``-ECANCELED``, and so does ``-ENOBUFS`` arriving after a
cancel request (the op had no effect either way).

Writing a backend (what ``_select.py`` and the contract suite assume):

* Constructor: ``Cls(pool, *, guest=False, **options)``; raise ``OSError``
  (with the errno) if the backend cannot start, after freeing what it took.
  ``Backend.__init__(self, pool, capabilities)`` first.
* Accept every op class in ``ops.py`` (and subclasses, by their nearest known
  base). ``RawOp`` may be refused with ``OSError(ENOSYS)`` from ``submit``.
  ``CancelFdOp`` completes with the number of in-flight ops on the fd whose
  cancellation it requested (each of those still completes on its own).
  ``PollOp`` completes with the ready mask (``wait_readable`` uses it).
* Results use io_uring's convention everywhere: ``res >= 0`` or ``-errno``;
  a pool buffer used for data is passed as ``lease`` (``pool.try_lease`` /
  ``pool.wait_for_buffer`` on backends without provided buffers), with
  ``lease.nbytes`` set.
* Multishot ops without native support: deliver each result with
  ``_complete_more``, or complete each single-shot round terminally with
  data -- ``_complete`` then re-submits it through ``_resubmit``.
* ``get_events`` returns a falsy batch iff the timeout elapsed with nothing
  to report (the scheduler's idle detection relies on it); ``_local``
  completions make it return at once.
* ``close`` sets ``_closed``, clears ``op._task`` of every op in flight, and
  reaps; ``_finish_close`` then checks leaks and frees the pool.

Delivery, for a terminal completion of op ``op``: ``op.res``, ``op.cqe_flags``
and ``op.lease`` are set, ``op._state`` becomes ``DONE``, then either the
task parked on it (``op._task``) is rescheduled, or ``op._callback(op)`` is
called, or (nobody cares: an orphan) its lease is released.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import outcome

from .ops import DONE, IN_FLIGHT, Operation
from .pool import BufferLeakError, BufferPool, PoolStatistics

if TYPE_CHECKING:
    from .pool import Lease

_ENOBUFS = errno.ENOBUFS
_ECANCELED = errno.ECANCELED


class _Resumed(outcome.Outcome[None]):
    """A reusable ``outcome.Value(None)``: what a backend passes to
    ``reschedule`` when an op's task can go on (the result is on the op).

    ``Value(None)`` is single-use (a second ``unwrap`` raises) so the
    scheduler would build one per completion; this one is shared, and
    :func:`~corral._io.perform.perform` does not even unwrap it. Tasks
    parked in the public ``wait_task_rescheduled`` unwrap it to ``None``.
    """

    __slots__ = ()

    def unwrap(self) -> None:
        return None

    def send(self, gen: Any) -> Any:
        return gen.send(None)

    async def asend(self, agen: Any) -> Any:
        return await agen.asend(None)

    def __repr__(self) -> str:
        return "RESUMED"


#: The shared wake-up value of completed ops (see :class:`_Resumed`).
RESUMED: Any = _Resumed()


@attrs.frozen
class Capabilities:
    """What a backend does natively (all backends accept every op kind in
    ``ops.py`` except :class:`~corral._io.ops.RawOp`; these flags say which
    ones are *efficient*, so upper layers can choose a strategy).

    Attributes:
      multishot: multishot accept/receive are kernel-native (else emulated:
        results still stream, one syscall each).
      provided_buffers: buffer-selecting ops take a pool buffer only when
        data is ready, in the kernel (io_uring provided-buffer ring).
      native_file_ops: file ops (read/write at offset, openat, statx, fsync)
        are asynchronous in the kernel; if False they run synchronously and
        may block the loop (upper layers should prefer a worker thread).
      raw_ops: :class:`~corral._io.ops.RawOp` is accepted.
    """

    multishot: bool
    provided_buffers: bool
    native_file_ops: bool
    raw_ops: bool


@attrs.frozen
class BackendStatistics:
    """A snapshot of a backend, returned by ``statistics()``.

    Attributes:
      backend: ``"io_uring"``, ``"epoll"``, ``"fake"``...
      fallback_reason: why the preferred backend was not used (``None`` if
        it was, or if this backend was requested explicitly).
      in_flight: submitted ops without their terminal completion yet.
      submitted: submissions in this run (re-submissions after ENOBUFS or
        a multishot re-arm included).
      completed: terminal completions delivered.
      cancel_requests: ``cancel()`` calls that reached the backend.
      kernel_waits: calls that waited for events (io_uring_enter,
        epoll_wait...), for the syscalls-per-op figure.
      capabilities: the backend's :class:`Capabilities`.
      features: backend-specific feature names (probed io_uring features).
      pool: the :class:`~corral._io.pool.PoolStatistics` snapshot.
    """

    backend: str
    fallback_reason: str | None
    in_flight: int
    submitted: int
    completed: int
    cancel_requests: int
    kernel_waits: int
    capabilities: Capabilities
    features: tuple[str, ...]
    pool: PoolStatistics


class Backend:
    """Base class of every backend. Subclasses implement the ``abstract``
    methods below; the delivery helpers are shared so that every backend
    completes ops the same way.

    Attributes:
      name: the backend's name (class attribute).
      pool: the run's :class:`~corral._io.pool.BufferPool`.
      capabilities: the backend's :class:`Capabilities`.
      fallback_reason: set by backend selection (``_select.py``).
    """

    name: ClassVar[str] = "abstract"

    def __init__(self, pool: BufferPool, capabilities: Capabilities) -> None:
        self.pool = pool
        self.capabilities = capabilities
        self.fallback_reason: str | None = None
        self.features: tuple[str, ...] = ()
        self._submitted = 0
        self._completed = 0
        self._cancel_requests = 0
        self._kernel_waits = 0
        self._closed = False
        # Ops completed without the kernel (cancelled while parked for a
        # buffer, emulated results): delivered by the next process_events.
        # get_events must not block while this is non-empty.
        self._local: list[tuple[Operation, int]] = []
        # Buffer-selecting ops parked after ENOBUFS -> their pool callback.
        self._buffer_waits: dict[Operation, Any] = {}

    def _reschedule(self, task: Any, value: Any) -> None:
        """Wake ``task`` parked on an op (from ``process_events``). The first
        call binds the fast version for the rest of the run (see
        :meth:`_bind_reschedule`)."""
        self._bind_reschedule()(task, value)

    def _bind_reschedule(self) -> Any:
        """Bind ``self._reschedule`` to the running runner's
        ``reschedule_io``: no public-accessor frame, no asserts, no sleep
        check (a task parked on an op is never in a sleep). The runner does
        not exist yet when the backend is built, hence the late binding.
        Outside a run (a test driving a backend by hand) the public
        ``reschedule`` is used."""
        from .._core._run_context import GLOBAL_RUN_CONTEXT

        runner = getattr(GLOBAL_RUN_CONTEXT, "runner", None)
        fast = getattr(runner, "reschedule_io", None)
        if fast is None:
            # Imported here, not at module level: _core's names load lazily
            # relative to _io (imports point down, but _core is built in
            # parallel with this package).
            from .._core import reschedule

            return reschedule
        # An instance attribute: shadows the method above from now on.
        self._reschedule = fast  # type: ignore[method-assign]
        return fast

    # -- the I/O-manager interface (docs/internals.md) --------------------

    def get_events(self, timeout: float) -> object:  # pragma: no cover - abstract
        """Flush queued submissions, then wait up to ``timeout`` seconds for
        completions or a wakeup (``0`` polls; must not block while
        ``self._local`` is non-empty). Returns a batch that is falsy iff
        nothing happened."""
        raise NotImplementedError

    def process_events(self, events: object) -> None:  # pragma: no cover - abstract
        """Deliver the batch: ``self._drain_local()`` then, per completion,
        :meth:`_complete` or :meth:`_complete_more`."""
        raise NotImplementedError

    def force_wakeup(self) -> None:  # pragma: no cover - abstract
        """Thread-safe and signal-safe: make a blocked ``get_events`` return."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        """Drain (see the module docstring, rule 7), then free. Idempotent.
        Implementations call :meth:`_finish_close` once nothing is in
        flight."""
        raise NotImplementedError

    def statistics(self) -> BackendStatistics:
        """Return a :class:`BackendStatistics` snapshot."""
        return BackendStatistics(
            backend=self.name,
            fallback_reason=self.fallback_reason,
            in_flight=self.in_flight_count(),
            submitted=self._submitted,
            completed=self._completed,
            cancel_requests=self._cancel_requests,
            kernel_waits=self._kernel_waits,
            capabilities=self.capabilities,
            features=self.features,
            pool=self.pool.statistics(),
        )

    # -- the completion contract ------------------------------------------

    def submit(self, op: Operation) -> None:  # pragma: no cover - abstract
        """Queue ``op`` (state ``NEW`` or ``DONE``) for the kernel and mark it
        ``IN_FLIGHT``. Raises ``RuntimeError`` if the op is in flight or the
        backend is closed (then nothing was submitted)."""
        raise NotImplementedError

    def cancel(self, op: Operation) -> None:  # pragma: no cover - abstract
        """Request cancellation of ``op``'s current submission. Idempotent; a
        no-op if the op is not in flight. Never completes the op itself
        synchronously and never frees anything."""
        raise NotImplementedError

    def in_flight_count(self) -> int:  # pragma: no cover - abstract
        """How many ops are in flight (parked for a buffer included)."""
        raise NotImplementedError

    def in_flight_ops(self) -> list[Operation]:  # pragma: no cover - abstract
        """The ops in flight (for shutdown and leak reports)."""
        raise NotImplementedError

    def _resubmit(self, op: Operation) -> None:  # pragma: no cover - abstract
        """Queue an op that is already ``IN_FLIGHT`` again with a new token
        (after ENOBUFS, or a multishot re-arm)."""
        raise NotImplementedError

    # -- shared helpers for subclasses ------------------------------------

    def _check_submit(self, op: Operation) -> None:
        if op._state == IN_FLIGHT:
            raise RuntimeError(f"{op!r} is already in flight")
        if self._closed:
            raise RuntimeError("the I/O backend is closed (the run has ended)")
        if not isinstance(op, Operation):
            raise TypeError(f"expected an operation record, not {type(op).__name__}")

    def _complete_soon(self, op: Operation, res: int) -> None:
        """Complete ``op`` with ``res`` from the next ``process_events``
        (used for completions that need no kernel)."""
        self._local.append((op, res))

    def _drain_local(self) -> None:
        local = self._local
        if local:
            self._local = []
            for op, res in local:
                if op._state == IN_FLIGHT:
                    self._forget(op)
                    self._complete(op, res, 0, None)

    def _forget(self, op: Operation) -> None:
        """Drop the backend's bookkeeping for ``op``'s current token (for a
        completion made by ``_complete_soon``). Default: nothing."""

    def _cancel_buffer_wait(self, op: Operation) -> bool:
        """If ``op`` is parked for a buffer, withdraw it and complete it with
        ``-ECANCELED`` soon. Returns whether it was parked."""
        callback = self._buffer_waits.pop(op, None)
        if callback is None:
            return False
        self.pool.cancel_wait(callback)
        self._complete_soon(op, -_ECANCELED)
        return True

    def _park_for_buffer(self, op: Operation) -> None:
        """ENOBUFS: wait for a released buffer, then re-submit ``op``."""

        def on_buffer(index: int) -> None:
            del self._buffer_waits[op]
            # The buffer goes back where free buffers live (the kernel ring
            # on io_uring) and the op retries; another op may take it first,
            # in which case the retry parks again.
            pool = self.pool
            if pool.sink is not None:
                pool.sink(index)
            else:
                pool._free.append(index)
            self._resubmit(op)

        self._buffer_waits[op] = on_buffer
        self.pool.wait_for_buffer(on_buffer)

    def _complete(self, op: Operation, res: int, flags: int, lease: Lease | None) -> None:
        """Deliver ``op``'s terminal completion (see the module docstring).
        The backend has already dropped its token for the op."""
        if op.buffer_select and res == -_ENOBUFS:
            if lease is not None:  # pragma: no cover - ENOBUFS selects nothing
                lease.release()
                lease = None
            if not op._cancel_requested:
                self._park_for_buffer(op)
                return
            # No buffer, so no data, and our cancel request was on its way:
            # the op had no effect. Report it as cancelled (the waiter gets
            # Cancelled, a multishot stream ends) rather than as an error
            # the caller would see only because of the race.
            res = -_ECANCELED
        if op.multishot:
            self._complete_multishot(op, res, lease)
            return
        self._completed += 1
        op._state = DONE
        op._token = 0
        op.res = res
        op.cqe_flags = flags
        op.lease = lease
        task = op._task
        if task is not None:
            op._task = None
            self._reschedule(task, RESUMED)
        elif op._callback is not None:
            op._callback(op)
        elif lease is not None:
            # An orphan nobody collects: the data has no reader left.
            op.lease = None
            lease.release()

    def _complete_more(self, op: Any, res: int, lease: Lease | None) -> None:
        """Deliver a non-terminal completion of a multishot op."""
        if self._closed and op._callback is None:
            # Shutdown drain: nobody can read the stash any more.
            if lease is not None:
                lease.release()
            return
        op._queue.append((res, lease, False))
        self._wake_multishot(op)

    def _complete_multishot(self, op: Any, res: int, lease: Lease | None) -> None:
        if not op._cancel_requested and not self._closed and op._rearm_after(res):
            # The kernel stopped the stream but nothing is wrong (io_uring
            # clears IORING_CQE_F_MORE e.g. when the CQ was overflowing or a
            # retry budget ran out; io_uring_prep_recv_multishot(3): "the
            # application should re-arm"). Keep the data, re-arm.
            op._queue.append((res, lease, False))
            self._resubmit(op)
            self._wake_multishot(op)
            return
        self._completed += 1
        op._state = DONE
        op._token = 0
        op.res = res
        if self._closed and op._callback is None:
            if lease is not None:
                lease.release()
            while op._queue:
                item_lease = op._queue.popleft()[1]
                if item_lease is not None:
                    item_lease.release()
            return
        op._queue.append((res, lease, True))
        self._wake_multishot(op)

    def _wake_multishot(self, op: Any) -> None:
        task = op._task
        if task is not None:
            op._task = None
            self._reschedule(task, RESUMED)
        elif op._callback is not None:
            op._callback(op)

    def _finish_close(self) -> None:
        """After draining: check for leaks (debug mode), free the pool."""
        leaks: list[str] = []
        stuck = self.in_flight_ops()
        try:
            if stuck:
                leaks.extend(f"{op!r} still in flight" for op in stuck)
            if self.pool.debug:
                self.pool.verify_free()  # raises BufferCorruptionError
                leaks.extend(self.pool.leaks())
        finally:
            # Close the pool whatever the checks found, so that a lease
            # released after the run never reaches the unregistered kernel
            # ring. Never free memory the kernel may still write into: with
            # ops stuck in flight, the slab is deliberately leaked.
            self.pool.close(unmap=not stuck)
        if leaks:
            raise BufferLeakError(
                "corral: at the end of the run, "
                + ", ".join(leaks)
                + "; every lease must be released and every op completed"
            )
