"""Tests for corral's synchronization primitives (corral/_sync.py)."""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable
from typing import Any, TypeAlias

import pytest

import corral
from corral import (
    CapacityLimiter,
    Condition,
    Event,
    Lock,
    Semaphore,
    StrictFIFOLock,
)
from corral.lowlevel import current_task
from corral.testing import assert_checkpoints, wait_all_tasks_blocked

# ---------------------------------------------------------------- Event


async def test_event_basics() -> None:
    e = Event()
    assert not e.is_set()
    assert e.statistics() == corral.EventStatistics(tasks_waiting=0)
    with pytest.raises(
        NotImplementedError,
        match=r"^corral events cannot be treated as bools; consider using "
        r"`event\.is_set\(\)` instead\.$",
    ):
        bool(e)
    e.set()
    assert e.is_set()
    e.set()  # idempotent
    assert e.is_set()
    with assert_checkpoints():
        await e.wait()


async def test_event_wakes_all_waiters_in_order() -> None:
    e = Event()
    record: list[str] = []

    async def waiter(name: str) -> None:
        record.append(f"sleep {name}")
        await e.wait()
        record.append(f"woke {name}")

    async with corral.open_nursery() as nursery:
        for name in "abc":
            nursery.start_soon(waiter, name)
        await wait_all_tasks_blocked()
        assert record == ["sleep a", "sleep b", "sleep c"]
        assert e.statistics().tasks_waiting == 3
        e.set()
        assert e.statistics().tasks_waiting == 0
        await wait_all_tasks_blocked()
    assert record[3:] == ["woke a", "woke b", "woke c"]


async def test_event_wait_cancelled() -> None:
    e = Event()
    with corral.CancelScope() as scope:
        scope.cancel()
        with assert_checkpoints():
            await e.wait()
    assert scope.cancelled_caught
    assert e.statistics().tasks_waiting == 0

    async with corral.open_nursery() as nursery:
        nursery.start_soon(e.wait)
        await wait_all_tasks_blocked()
        assert e.statistics().tasks_waiting == 1
        nursery.cancel_scope.cancel()
    assert e.statistics().tasks_waiting == 0
    assert not e.is_set()


# ---------------------------------------------------------------- CapacityLimiter


async def test_capacity_limiter_errors() -> None:
    assert CapacityLimiter(0).total_tokens == 0
    with pytest.raises(TypeError, match=r"^total_tokens must be an int or math\.inf$"):
        CapacityLimiter(1.0)
    with pytest.raises(ValueError, match=r"^total_tokens must be >= 0$"):
        CapacityLimiter(-1)
    c = CapacityLimiter(2)
    with pytest.raises(TypeError, match=r"^total_tokens must be an int or math\.inf$"):
        c.total_tokens = 1.0
    with pytest.raises(ValueError, match=r"^total_tokens must be >= 0$"):
        c.total_tokens = -10
    assert c.total_tokens == 2
    assert repr(c).startswith("<corral.CapacityLimiter at 0x")
    assert repr(c).endswith(", 0/2 with 0 waiting>")


async def test_capacity_limiter_basics() -> None:
    c = CapacityLimiter(2)
    assert (c.total_tokens, c.borrowed_tokens, c.available_tokens) == (2, 0, 2)
    with pytest.raises(
        RuntimeError, match=r"^this borrower isn't holding any of this CapacityLimiter's tokens$"
    ):
        c.release()
    c.acquire_nowait()
    assert (c.borrowed_tokens, c.available_tokens) == (1, 1)
    assert c.statistics() == corral.CapacityLimiterStatistics(
        borrowed_tokens=1, total_tokens=2, borrowers=[current_task()], tasks_waiting=0
    )
    message = r"^this borrower is already holding one of this CapacityLimiter's tokens$"
    with pytest.raises(RuntimeError, match=message):
        c.acquire_nowait()
    with pytest.raises(RuntimeError, match=message):
        await c.acquire()
    assert c.borrowed_tokens == 1

    c.acquire_on_behalf_of_nowait("x")
    assert c.available_tokens == 0
    with pytest.raises(corral.WouldBlock):
        c.acquire_on_behalf_of_nowait("y")

    record: list[str] = []

    async def borrow(name: str) -> None:
        record.append(f"wait {name}")
        async with c:
            record.append(f"got {name}")
            await corral.sleep_forever()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(borrow, "a")
        await wait_all_tasks_blocked()
        assert c.statistics().tasks_waiting == 1
        c.release()
        # The token went straight to the waiter...
        assert c.borrowed_tokens == 2
        assert c.statistics().tasks_waiting == 0
        # ...so nobody else can take it, even before "a" runs.
        with pytest.raises(corral.WouldBlock):
            c.acquire_on_behalf_of_nowait("z")
        await wait_all_tasks_blocked()
        assert record == ["wait a", "got a"]
        nursery.cancel_scope.cancel()
    # async with released a's token when cancelled.
    assert c.statistics().borrowers == ["x"]
    c.release_on_behalf_of("x")
    assert c.borrowed_tokens == 0


async def test_capacity_limiter_checkpoints() -> None:
    c = CapacityLimiter(1)
    with assert_checkpoints():
        await c.acquire()
    c.release()
    with assert_checkpoints():
        async with c:
            pass
    with assert_checkpoints():
        await c.acquire_on_behalf_of("b")
    # A cancelled acquire does not take a token, even when one is free.
    c.release_on_behalf_of("b")
    with corral.CancelScope() as scope:
        scope.cancel()
        await c.acquire()
    assert scope.cancelled_caught
    assert c.borrowed_tokens == 0


async def test_capacity_limiter_inf() -> None:
    c = CapacityLimiter(math.inf)
    assert c.total_tokens == math.inf
    assert c.available_tokens == math.inf
    for i in range(100):
        c.acquire_on_behalf_of_nowait(i)
    assert c.borrowed_tokens == 100
    assert c.available_tokens == math.inf
    assert repr(c).endswith(", 100/inf with 0 waiting>")


async def test_capacity_limiter_change_total_tokens() -> None:
    c = CapacityLimiter(2)
    async with corral.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(c.acquire_on_behalf_of, i)
            await wait_all_tasks_blocked()
        assert set(c.statistics().borrowers) == {0, 1}
        assert c.statistics().tasks_waiting == 3
        c.total_tokens += 2  # wakes two waiters, in order
        assert set(c.statistics().borrowers) == {0, 1, 2, 3}
        assert c.statistics().tasks_waiting == 1
        c.total_tokens -= 3  # existing borrowers keep their tokens
        assert (c.borrowed_tokens, c.total_tokens, c.available_tokens) == (4, 1, -3)
        c.release_on_behalf_of(0)
        c.release_on_behalf_of(1)
        c.release_on_behalf_of(2)
        assert set(c.statistics().borrowers) == {3}
        assert c.statistics().tasks_waiting == 1
        c.release_on_behalf_of(3)
        assert c.statistics().borrowers == [4]
        assert c.statistics().tasks_waiting == 0
        c.release_on_behalf_of(4)


async def test_capacity_limiter_zero_tokens() -> None:
    c = CapacityLimiter(0)
    with pytest.raises(corral.WouldBlock):
        c.acquire_nowait()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(c.acquire_on_behalf_of, "a")
        nursery.start_soon(c.acquire_on_behalf_of, "b")
        await wait_all_tasks_blocked()
        assert c.statistics().borrowers == []
        assert c.statistics().tasks_waiting == 2
        c.total_tokens = 1
        assert c.statistics().borrowers == ["a"]
        c.total_tokens = 0
        c.release_on_behalf_of("a")
        assert c.statistics().borrowers == []
        assert c.statistics().tasks_waiting == 1
        c.total_tokens = 1
        assert c.statistics().borrowers == ["b"]
        c.release_on_behalf_of("b")


async def test_capacity_limiter_cancelled_waiter_is_forgotten() -> None:
    c = CapacityLimiter(1)
    await c.acquire()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(c.acquire_on_behalf_of, "w")
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert c.statistics().tasks_waiting == 0
    assert c._pending_borrowers == {}
    c.release()
    # The cancelled waiter did not get the token.
    assert c.borrowed_tokens == 0


# ---------------------------------------------------------------- Semaphore


async def test_semaphore_errors() -> None:
    with pytest.raises(TypeError, match=r"^initial_value must be an int$"):
        Semaphore(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^initial value must be >= 0$"):
        Semaphore(-1)
    with pytest.raises(TypeError, match=r"^max_value must be None or an int$"):
        Semaphore(1, max_value=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_values must be >= initial_value$"):
        Semaphore(2, max_value=1)


async def test_semaphore_basics() -> None:
    s = Semaphore(1)
    assert re.match(r"^<corral\.Semaphore\(1\) at 0x[0-9a-f]+>$", repr(s))
    assert s.value == 1
    assert s.max_value is None
    s.release()
    assert s.value == 2
    assert s.statistics().tasks_waiting == 0
    s.acquire_nowait()
    assert s.value == 1
    with assert_checkpoints():
        await s.acquire()
    assert s.value == 0
    with pytest.raises(corral.WouldBlock):
        s.acquire_nowait()
    s.release()
    with assert_checkpoints():
        async with s:
            assert s.value == 0
    assert s.value == 1
    s.acquire_nowait()

    record: list[str] = []

    async def do_acquire() -> None:
        record.append("started")
        await s.acquire()
        record.append("finished")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(do_acquire)
        await wait_all_tasks_blocked()
        assert record == ["started"]
        assert s.statistics().tasks_waiting == 1
        s.release()
        # Handed to the waiter: the value stays 0 and we cannot take it back.
        assert s.value == 0
        with pytest.raises(corral.WouldBlock):
            s.acquire_nowait()
    assert record == ["started", "finished"]


async def test_semaphore_bounded() -> None:
    bs = Semaphore(1, max_value=1)
    assert bs.max_value == 1
    assert re.match(r"^<corral\.Semaphore\(1, max_value=1\) at 0x[0-9a-f]+>$", repr(bs))
    with pytest.raises(ValueError, match=r"^semaphore released too many times$"):
        bs.release()
    assert bs.value == 1
    bs.acquire_nowait()
    bs.release()
    assert bs.value == 1


async def test_semaphore_cancelled_acquire() -> None:
    s = Semaphore(1)
    with corral.CancelScope() as scope:
        scope.cancel()
        await s.acquire()
    assert scope.cancelled_caught
    assert s.value == 1  # a cancelled acquire does not decrement


# ---------------------------------------------------------------- Lock


@pytest.mark.parametrize("lockcls", [Lock, StrictFIFOLock], ids=lambda c: c.__name__)
async def test_lock_basics(lockcls: type[Lock | StrictFIFOLock]) -> None:
    lock = lockcls()
    assert not lock.locked()
    assert re.match(rf"^<unlocked {lockcls.__name__} object at 0x[0-9a-f]+>$", repr(lock))
    with pytest.raises(RuntimeError, match=r"^can't release a Lock you don't own$"):
        lock.release()
    lock.acquire_nowait()
    assert lock.locked()
    assert re.match(
        rf"^<locked {lockcls.__name__} object at 0x[0-9a-f]+ with 0 waiters>$", repr(lock)
    )
    with pytest.raises(RuntimeError, match=r"^attempt to re-acquire an already held Lock$"):
        lock.acquire_nowait()
    with pytest.raises(RuntimeError, match=r"^attempt to re-acquire an already held Lock$"):
        await lock.acquire()
    lock.release()
    assert not lock.locked()
    with assert_checkpoints():
        await lock.acquire()
    lock.release()
    with assert_checkpoints():
        async with lock:
            assert lock.locked()
    assert lock.statistics() == corral.LockStatistics(locked=False, owner=None, tasks_waiting=0)

    holder: list[corral.lowlevel.Task] = []

    async def holder_task() -> None:
        holder.append(current_task())
        async with lock:
            await corral.sleep_forever()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(holder_task)
        await wait_all_tasks_blocked()
        assert lock.statistics() == corral.LockStatistics(
            locked=True, owner=holder[0], tasks_waiting=0
        )
        # Someone else holds it: release refuses, acquire_nowait blocks.
        with pytest.raises(RuntimeError, match=r"^can't release a Lock you don't own$"):
            lock.release()
        with pytest.raises(corral.WouldBlock):
            lock.acquire_nowait()
        nursery.start_soon(lock.acquire)
        await wait_all_tasks_blocked()
        assert lock.statistics().tasks_waiting == 1
        nursery.cancel_scope.cancel()
    assert lock.statistics().tasks_waiting == 0


async def test_lock_handoff_skips_barging_task() -> None:
    lock = Lock()
    lock.acquire_nowait()
    got: list[str] = []

    async def waiter() -> None:
        await lock.acquire()
        got.append("waiter")
        lock.release()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        lock.release()
        # Ownership moved to the waiter at release time.
        assert lock.locked()
        assert lock.statistics().owner is not current_task()
        with pytest.raises(corral.WouldBlock):
            lock.acquire_nowait()
    assert got == ["waiter"]
    assert not lock.locked()


async def test_lock_owner_exits_without_releasing() -> None:
    lock = Lock()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(lock.acquire)
    # The owner is gone; the lot is broken by it.
    with pytest.raises(
        corral.BrokenResourceError,
        match=r"^Owner of this lock exited without releasing: <Task .*>$",
    ):
        await lock.acquire()


async def test_lock_waiter_sees_owner_exit() -> None:
    lock = Lock()

    async def take_and_leave(task_status: corral.TaskStatus[None]) -> None:
        await lock.acquire()
        task_status.started()
        await corral.lowlevel.checkpoint()

    caught: list[BaseException] = []

    async def waiter() -> None:
        try:
            await lock.acquire()
        except corral.BrokenResourceError as exc:
            caught.append(exc)

    async with corral.open_nursery() as nursery:
        await nursery.start(take_and_leave)
        nursery.start_soon(waiter)
    assert len(caught) == 1
    assert str(caught[0]).startswith("Owner of this lock exited without releasing: ")


# ---------------------------------------------------------------- Condition


async def test_condition_errors() -> None:
    with pytest.raises(TypeError, match=r"^lock must be a corral\.Lock$"):
        Condition(Semaphore(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^lock must be a corral\.Lock$"):
        Condition(StrictFIFOLock())  # type: ignore[arg-type]
    c = Condition()
    with pytest.raises(RuntimeError, match=r"^must hold the lock to wait$"):
        await c.wait()
    with pytest.raises(RuntimeError, match=r"^must hold the lock to notify$"):
        c.notify()
    with pytest.raises(RuntimeError, match=r"^must hold the lock to notify$"):
        c.notify_all()


async def test_condition_lock_methods() -> None:
    lock = Lock()
    c = Condition(lock)
    assert not c.locked()
    c.acquire_nowait()
    assert c.locked() and lock.locked()
    with pytest.raises(RuntimeError, match=r"^attempt to re-acquire an already held Lock$"):
        Condition(lock).acquire_nowait()
    c.release()
    with assert_checkpoints():
        await c.acquire()
    c.release()
    with assert_checkpoints():
        async with c:
            assert c.locked()
    assert not c.locked()


async def test_condition_notify_order_and_statistics() -> None:
    c = Condition()
    finished: list[int] = []

    async def waiter(i: int) -> None:
        async with c:
            await c.wait()
            finished.append(i)

    async with corral.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(waiter, i)
            await wait_all_tasks_blocked()
        assert c.statistics().tasks_waiting == 5
        async with c:
            assert c.statistics().lock_statistics.locked
            c.notify()
            # Notified waiters move to the lock's queue.
            assert c.statistics().tasks_waiting == 4
            assert c.statistics().lock_statistics.tasks_waiting == 1
        await wait_all_tasks_blocked()
        assert finished == [0]
        async with c:
            c.notify(2)
        await wait_all_tasks_blocked()
        assert finished == [0, 1, 2]
        async with c:
            c.notify_all()
            assert c.statistics().tasks_waiting == 0
            assert c.statistics().lock_statistics.tasks_waiting == 2
        await wait_all_tasks_blocked()
        assert finished == [0, 1, 2, 3, 4]
    assert c.statistics() == corral.ConditionStatistics(
        tasks_waiting=0,
        lock_statistics=corral.LockStatistics(locked=False, owner=None, tasks_waiting=0),
    )


async def test_condition_wait_holds_lock_when_cancelled() -> None:
    c = Condition()
    states: list[Any] = []
    scope = corral.CancelScope()

    async def waiter() -> None:
        with scope:
            async with c:
                try:
                    await c.wait()
                except corral.Cancelled:
                    # wait re-took the lock before raising.
                    states.append(c._lock.statistics().owner is current_task())
                    raise

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        # Hold the lock while the waiter is cancelled: it must wait for it.
        await c.acquire()
        scope.cancel()
        await wait_all_tasks_blocked()
        assert states == []
        assert c.statistics().lock_statistics.tasks_waiting == 1
        c.release()
    assert states == [True]
    assert scope.cancelled_caught
    assert not c.locked()


# ---------------------------------------------------------------- generic lock-likes


class ChannelLock1:
    """A lock built from a buffered channel (send to lock, receive to unlock)."""

    def __init__(self, capacity: int) -> None:
        self.s, self.r = corral.open_memory_channel[None](capacity)
        for _ in range(capacity - 1):
            self.s.send_nowait(None)

    def acquire_nowait(self) -> None:
        self.s.send_nowait(None)

    async def acquire(self) -> None:
        await self.s.send(None)

    def release(self) -> None:
        self.r.receive_nowait()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *args: object) -> None:
        self.release()


class ChannelLock2:
    """A lock built from an unbuffered channel (receive to lock)."""

    def __init__(self) -> None:
        self.s, self.r = corral.open_memory_channel[None](10)
        self.s.send_nowait(None)

    def acquire_nowait(self) -> None:
        self.r.receive_nowait()

    async def acquire(self) -> None:
        await self.r.receive()

    def release(self) -> None:
        self.s.send_nowait(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *args: object) -> None:
        self.release()


LockLike: TypeAlias = CapacityLimiter | Semaphore | Lock | StrictFIFOLock | ChannelLock1 | ChannelLock2
LOCK_FACTORIES: dict[str, Callable[[], LockLike]] = {
    "CapacityLimiter(1)": lambda: CapacityLimiter(1),
    "Semaphore(1)": lambda: Semaphore(1),
    "Lock": Lock,
    "StrictFIFOLock": StrictFIFOLock,
    "ChannelLock1(10)": lambda: ChannelLock1(10),
    "ChannelLock1(1)": lambda: ChannelLock1(1),
    "ChannelLock2": ChannelLock2,
}
generic_lock_test = pytest.mark.parametrize(
    "lock_factory", list(LOCK_FACTORIES.values()), ids=list(LOCK_FACTORIES)
)


@generic_lock_test
async def test_generic_lock_exclusion(lock_factory: Callable[[], LockLike]) -> None:
    inside = False
    acquires = 0

    async def worker(lock: LockLike) -> None:
        nonlocal inside, acquires
        for _ in range(10):
            async with lock:
                acquires += 1
                assert not inside
                inside = True
                await corral.lowlevel.checkpoint()
                await corral.lowlevel.checkpoint()
                assert inside
                inside = False

    lock = lock_factory()
    async with corral.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(worker, lock)
    assert acquires == 50


@generic_lock_test
async def test_generic_lock_fifo_fairness(lock_factory: Callable[[], LockLike]) -> None:
    initial_order: list[int] = []
    record: list[int] = []

    async def loopy(name: int, lock: LockLike) -> None:
        initial_order.append(name)
        for _ in range(5):
            async with lock:
                record.append(name)

    lock = lock_factory()
    async with corral.open_nursery() as nursery:
        for name in (1, 2, 3):
            nursery.start_soon(loopy, name, lock)
    # Whatever order the tasks started in, they then alternate in it.
    for i in range(5):
        assert record[3 * i : 3 * (i + 1)] == initial_order


@generic_lock_test
async def test_generic_lock_acquire_nowait_blocks_acquire(
    lock_factory: Callable[[], LockLike],
) -> None:
    lock = lock_factory()
    record: list[str] = []

    async def taker() -> None:
        record.append("started")
        async with lock:
            pass
        record.append("finished")

    async with corral.open_nursery() as nursery:
        lock.acquire_nowait()
        nursery.start_soon(taker)
        await wait_all_tasks_blocked()
        assert record == ["started"]
        lock.release()
    assert record == ["started", "finished"]


def test_statistics_records_are_frozen() -> None:
    stats = corral.EventStatistics(tasks_waiting=1)
    with pytest.raises(AttributeError):
        stats.tasks_waiting = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "factory",
    [Event, lambda: CapacityLimiter(1), lambda: Semaphore(1), Lock, StrictFIFOLock, Condition],
    ids=["Event", "CapacityLimiter", "Semaphore", "Lock", "StrictFIFOLock", "Condition"],
)
def test_primitives_are_weak_referenceable(factory: Callable[[], object]) -> None:
    obj = factory()
    assert weakref.ref(obj)() is obj


async def test_condition_wait_is_a_checkpoint() -> None:
    c = Condition()

    async def notifier() -> None:
        async with c:
            c.notify()

    async with corral.open_nursery() as nursery, c:
        nursery.start_soon(notifier)
        with assert_checkpoints():
            await c.wait()
        assert c.locked()
