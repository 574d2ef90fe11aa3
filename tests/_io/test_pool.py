"""The ring pool after its run: a lease that outlives the pool is harmless."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from iohelpers import run_on

from corral._io.ops import RecvPoolOp
from corral._io.perform import current_backend, perform
from corral._io.pool import BufferCorruptionError, BufferPool, Lease


def test_release_after_close_is_a_no_op() -> None:
    pool = BufferPool(64, 2)
    sunk: list[int] = []
    pool.sink = sunk.append
    lease = pool.try_lease("late")
    assert lease is not None
    pool.close()
    lease.release()
    assert lease.released
    assert sunk == []
    assert pool.statistics().in_use == 0
    # Still a double release.
    with pytest.raises(RuntimeError, match=r"^this buffer lease was already released$"):
        lease.release()


def test_close_without_unmapping_still_detaches_the_pool() -> None:
    # What a backend does when ops are stuck in the kernel: the memory stays
    # mapped (the kernel may still write into it), but nothing goes back to
    # the pool or to a kernel ring any more.
    pool = BufferPool(64, 2)
    sunk: list[int] = []
    pool.sink = sunk.append
    lease = pool.try_lease("late")
    assert lease is not None
    pool.close(unmap=False)
    assert pool.sink is None
    lease.release()
    assert sunk == []
    assert pool.try_lease() is None
    pool.close()  # and later for real: idempotent, then unmapped
    with pytest.raises(RuntimeError, match=r"^the buffer pool is closed$"):
        pool.slab  # noqa: B018


@pytest.mark.parametrize("backend", ["fake", "io_uring", "epoll"])
def test_lease_released_after_a_failed_close_reaches_no_ring(backend: str) -> None:
    # The end-of-run check raises (a free buffer was written after its
    # release) before the pool would have been freed; a lease the caller
    # still holds must not go back to the (unregistered) kernel ring later.
    sunk: list[int] = []
    kept: list[Lease] = []

    async def main() -> None:
        pool = current_backend().pool
        if backend == "fake":
            lease = await pool.lease("kept past the run")
        else:
            # On io_uring free buffers sit in the kernel's ring: get one the
            # way the kernel hands them out, with a receive.
            a, b = socket.socketpair()
            with a, b:
                a.send(b"x")
                lease = await perform(RecvPoolOp(b.fileno()))
        kept.append(lease)
        free = next(i for i in range(pool.count) if i not in pool._leases)
        pool._view[free * pool.buffer_size] ^= 0xFF  # a write after release
        original = pool.sink

        def sink(index: int) -> Any:
            sunk.append(index)
            return original(index) if original is not None else pool._free.append(index)

        pool.sink = sink

    try:
        with pytest.raises(BufferCorruptionError, match=r"was written after release"):
            run_on(backend, main)
    except OSError:  # pragma: no cover
        pytest.skip(f"{backend} is not available here")
    kept[0].release()
    assert sunk == []
