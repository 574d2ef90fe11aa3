"""The ring pool: one page-aligned slab of equal buffers per run, and leases.

Why a pool: the kernel writes received data into memory we choose, and that
memory must stay valid until the op's terminal completion. Pinning an
unbounded number of private buffers is how a server runs out of locked
pages (or non-paged pool on Windows); a pool bounds it. When the pool is
empty, whoever needs a buffer waits (backpressure, counted in
:meth:`BufferPool.statistics`) instead of allocating.

States of a buffer::

    free --lease (app, or the kernel picks it)--> leased --release--> free

On io_uring the free buffers live in a *provided-buffer ring* registered with
the kernel (the backend installs itself as the pool's ``sink``): a receive on
an idle connection holds no buffer; the kernel takes one from the ring only
when data arrives, and the CQE names it (IORING_CQE_F_BUFFER, buffer id in
``cqe->flags >> IORING_CQE_BUFFER_SHIFT``; io_uring_register_buf_ring(3)).
A buffer handed to the kernel ring cannot be taken back by the application,
so on io_uring :meth:`BufferPool.lease` is served from *released* buffers
(waiters take them before they go back to the ring).

Debug mode (``corral.run(debug=True)`` or ``CORRAL_DEBUG=1``) poisons every
released buffer with a canary and checks it when the buffer is leased again:
a mismatch means somebody wrote into a buffer after releasing it, and raises
:class:`BufferCorruptionError` naming the op or holder that last had it. At
the end of the run :meth:`BufferPool.check_leaks` reports every lease not
returned.
"""

from __future__ import annotations

import mmap
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

#: Default geometry: 256 buffers of 16 KiB (4 MiB per run).
DEFAULT_BUFFER_SIZE = 16384
DEFAULT_BUFFER_COUNT = 256

_CANARY_WORD = b"\xde\xad\xbe\xef"


class BufferCorruptionError(RuntimeError):
    """A pool buffer was written after it was released (debug mode)."""


class BufferLeakError(RuntimeError):
    """At the end of a run, leases were still held or ops still in flight."""


@attrs.frozen
class PoolStatistics:
    """A snapshot of the pool.

    Attributes:
      buffer_size: bytes per buffer.
      size: number of buffers in the pool.
      in_use: buffers currently leased (held by ops, stashes or callers).
      waiting: tasks and ops currently waiting for a buffer.
      high_water: the largest ``in_use`` seen in this run.
      backpressure_waits: how many times something had to wait for a buffer.
      debug: whether canaries are checked.
    """

    buffer_size: int
    size: int
    in_use: int
    waiting: int
    high_water: int
    backpressure_waits: int
    debug: bool


class Lease:
    """Exclusive use of one pool buffer until :meth:`release`.

    ``nbytes`` is how many bytes of the buffer hold data (set by a receive);
    :attr:`data` views exactly those. A lease is also a context manager that
    releases on exit. Releasing twice raises ``RuntimeError``; using any view
    after release is a bug that debug mode detects.
    """

    __slots__ = ("_pool", "holder", "index", "nbytes")

    def __init__(self, pool: BufferPool, index: int, nbytes: int, holder: object) -> None:
        self._pool: BufferPool | None = pool
        self.index = index
        self.nbytes = nbytes
        self.holder = holder

    @property
    def buffer(self) -> memoryview:
        """The whole buffer (``pool.buffer_size`` bytes), writable."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("this buffer lease was already released")
        start = self.index * pool.buffer_size
        return pool._view[start : start + pool.buffer_size]

    @property
    def data(self) -> memoryview:
        """The first ``nbytes`` bytes of the buffer."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("this buffer lease was already released")
        start = self.index * pool.buffer_size
        return pool._view[start : start + self.nbytes]

    def __bytes__(self) -> bytes:
        return bytes(self.data)

    def __len__(self) -> int:
        return self.nbytes

    @property
    def released(self) -> bool:
        """True once :meth:`release` was called."""
        return self._pool is None

    def release(self) -> None:
        """Give the buffer back to the pool (or to the kernel's ring).

        After the pool is closed (the run ended) this only marks the lease
        released: the buffer has nowhere to go, and nothing is written into
        the pool's memory or a kernel ring.

        Raises:
          RuntimeError: the lease was already released.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("this buffer lease was already released")
        self._pool = None
        pool._release(self.index)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self.release()

    def __repr__(self) -> str:
        state = "released" if self._pool is None else f"{self.nbytes} bytes"
        return f"<Lease buffer={self.index} {state}>"


class BufferPool:
    """The run's ring pool. Created by the backend at run start.

    Thread-safety: run-thread only.
    """

    def __init__(
        self,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        count: int = DEFAULT_BUFFER_COUNT,
        *,
        debug: bool = False,
    ) -> None:
        if not isinstance(buffer_size, int) or not isinstance(count, int):
            raise TypeError("buffer_size and count must be ints")
        if buffer_size <= 0 or count <= 0:
            raise ValueError(
                f"pool buffer_size and count must be positive, not {buffer_size} and {count}"
            )
        if count > 32768:
            # A provided-buffer ring has at most 32768 entries
            # (io_uring_register_buf_ring(3)); buffer ids are 16 bits.
            raise ValueError(f"pool count must be at most 32768, not {count}")
        self.buffer_size = buffer_size
        self.count = count
        self.debug = debug
        # Anonymous mmap: page-aligned, zero-filled, not on the Python heap.
        self._slab: mmap.mmap | None = mmap.mmap(-1, buffer_size * count)
        self._view = memoryview(self._slab)
        self._free: deque[int] = deque(range(count))
        self._leases: dict[int, Lease] = {}
        #: Callbacks waiting for a buffer, FIFO; each gets a buffer index.
        self._waiters: deque[Callable[[int], None]] = deque()
        #: Where free buffers go. None: the Python free list. io_uring sets
        #: it to a function that re-adds the buffer to the kernel's ring.
        self.sink: Callable[[int], None] | None = None
        self._high_water = 0
        self._backpressure = 0
        self._last_holder: list[str] = [""] * count
        self._canary = b""
        # Set by close(): from then on released buffers go nowhere.
        self._closed = False
        if debug:
            self._canary = (_CANARY_WORD * (buffer_size // 4 + 1))[:buffer_size]
            for i in range(count):
                self._poison(i)

    # -- addresses (for backends) -------------------------------------------

    @property
    def slab(self) -> mmap.mmap:
        """The slab (backends take its address for the kernel)."""
        if self._slab is None:
            raise RuntimeError("the buffer pool is closed")
        return self._slab

    # -- leasing --------------------------------------------------------------

    def try_lease(self, holder: object = None) -> Lease | None:
        """Lease a free buffer now, or return ``None`` if none is free here
        (on io_uring, free buffers sit in the kernel's ring; see the module
        docstring)."""
        if not self._free:
            return None
        index = self._free.popleft()
        if self.debug:
            self._verify(index, 0)
        return self._adopt_checked(index, 0, holder)

    async def lease(self, holder: object = None) -> Lease:
        """Lease a buffer, waiting (backpressure) while the pool is empty.

        Cancellation: a cancelled wait takes no buffer. A buffer handed to
        the waiter in the same turn as the cancellation is given to the next
        waiter (or back to the pool), never lost.
        """
        from .._core import (
            Abort,
            cancel_shielded_checkpoint,
            checkpoint_if_cancelled,
            current_task,
            reschedule,
            wait_task_rescheduled,
        )

        await checkpoint_if_cancelled()
        lease = self.try_lease(holder)
        if lease is not None:
            await cancel_shielded_checkpoint()
            return lease
        task = current_task()
        got: list[int] = []

        def hand(index: int) -> None:
            got.append(index)
            reschedule(task)

        def abort(_: Any) -> Abort:
            self._waiters.remove(hand)
            return Abort.SUCCEEDED

        self._backpressure += 1
        self._waiters.append(hand)
        await wait_task_rescheduled(abort)
        index = got[0]
        if self.debug:
            self._verify(index, 0)
        return self._adopt_checked(index, 0, holder)

    def wait_for_buffer(self, callback: Callable[[int], None]) -> None:
        """Register ``callback(index)`` to receive the next released buffer
        (FIFO with other waiters); counts as a backpressure wait. The buffer
        is the callback's: it must adopt it or hand it on with
        :meth:`_release`. Cancel the wait with :meth:`cancel_wait`."""
        self._backpressure += 1
        self._waiters.append(callback)

    def cancel_wait(self, callback: Callable[[int], None]) -> bool:
        """Withdraw a :meth:`wait_for_buffer` registration; False if it was
        already served."""
        try:
            self._waiters.remove(callback)
        except ValueError:
            return False
        return True

    def adopt(self, index: int, nbytes: int, holder: object) -> Lease:
        """Turn a buffer the kernel picked (io_uring F_BUFFER) into a lease.

        In debug mode the part the kernel did not write (``nbytes`` onward)
        must still hold the canary.
        """
        if nbytes < 0:
            nbytes = 0
        leases = self._leases
        if self.debug or index in leases:
            if self.debug:
                self._verify(index, nbytes)
            return self._adopt_checked(index, nbytes, holder)
        # _adopt_checked, inlined: once per received buffer.
        lease = Lease(self, index, nbytes, holder)
        leases[index] = lease
        if len(leases) > self._high_water:
            self._high_water = len(leases)
        return lease

    def _adopt_checked(self, index: int, nbytes: int, holder: object) -> Lease:
        if index in self._leases:
            from .._core import CorralInternalError

            raise CorralInternalError(
                f"pool buffer {index} leased twice (held by {self._leases[index].holder!r})"
            )
        lease = Lease(self, index, nbytes, holder)
        self._leases[index] = lease
        n = len(self._leases)
        if n > self._high_water:
            self._high_water = n
        return lease

    def _release(self, index: int) -> None:
        lease = self._leases.pop(index)
        if self._closed:
            # Released after the run ended: the kernel ring is unregistered
            # (and the slab maybe unmapped); there is nowhere to return the
            # buffer to, and no canary to write.
            return
        if self.debug:
            self._last_holder[index] = repr(lease.holder)
            self._poison(index)
        # recycle(), inlined: once per received buffer.
        if self._waiters:
            self._waiters.popleft()(index)
        elif self.sink is not None:
            self.sink(index)
        else:
            self._free.append(index)

    def recycle(self, index: int) -> None:
        """A free buffer: hand it to the first waiter, else to the sink (the
        kernel ring) or the free list."""
        if self._waiters:
            self._waiters.popleft()(index)
        elif self.sink is not None:
            self.sink(index)
        else:
            self._free.append(index)

    # -- debug canaries -----------------------------------------------------

    def _poison(self, index: int) -> None:
        start = index * self.buffer_size
        self._view[start : start + self.buffer_size] = self._canary

    def _verify(self, index: int, offset: int) -> None:
        size = self.buffer_size
        start = index * size
        if offset >= size:
            return
        if self._view[start + offset : start + size] != self._canary[offset:]:
            holder = self._last_holder[index] or "nobody (never leased)"
            raise BufferCorruptionError(
                f"corral pool buffer {index} was written after release; "
                f"it was last held by {holder}"
            )

    def verify_free(self) -> None:
        """Debug mode: check the canary of every buffer not leased."""
        if not self.debug:
            return
        for index in range(self.count):
            if index not in self._leases:
                self._verify(index, 0)

    # -- end of run ------------------------------------------------------------

    def statistics(self) -> PoolStatistics:
        """Return a :class:`PoolStatistics` snapshot."""
        return PoolStatistics(
            buffer_size=self.buffer_size,
            size=self.count,
            in_use=len(self._leases),
            waiting=len(self._waiters),
            high_water=self._high_water,
            backpressure_waits=self._backpressure,
            debug=self.debug,
        )

    def leaks(self) -> list[str]:
        """Describe every lease still held."""
        return [
            f"buffer {index} still leased by {lease.holder!r}"
            for index, lease in sorted(self._leases.items())
        ]

    def close(self, *, unmap: bool = True) -> None:
        """Close the pool: leases still held become inert (releasing them
        does nothing), the sink (the kernel ring) is dropped, and no buffer
        can be leased any more. Idempotent.

        With ``unmap`` (the default) the slab is freed too: only do that
        once the kernel holds no op that may write into it. A backend whose
        ops are stuck in the kernel passes ``unmap=False`` and the memory is
        deliberately leaked. Views a caller still holds keep the mapping
        alive."""
        if not self._closed:
            self._closed = True
            self.sink = None
            self._waiters.clear()
            self._free.clear()
        if not unmap or self._slab is None:
            return
        slab, self._slab = self._slab, None
        self._view.release()
        try:
            slab.close()
        except BufferError:
            # A leaked lease's view still exports the mapping; it is unmapped
            # when the last view dies.
            pass
