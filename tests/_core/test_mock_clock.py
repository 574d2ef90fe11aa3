"""MockClock: rate, jump, autojump (and its interplay with
wait_all_tasks_blocked)."""

from __future__ import annotations

import time
from math import inf

import pytest

import corral
from corral.testing import MockClock, wait_all_tasks_blocked


def test_rate_and_jump() -> None:
    clock = MockClock()
    assert clock.rate == 0
    t0 = clock.current_time()
    time.sleep(0.01)
    assert clock.current_time() == t0
    clock.jump(1.5)
    assert clock.current_time() == t0 + 1.5
    with pytest.raises(ValueError, match=r"^time can't go backwards$"):
        clock.jump(-1)
    with pytest.raises(ValueError, match=r"^rate must be >= 0$"):
        clock.rate = -1
    clock.rate = 100
    t1 = clock.current_time()
    time.sleep(0.01)
    assert clock.current_time() - t1 >= 0.9
    assert repr(clock).startswith("<MockClock, time=")


def test_deadline_to_sleep_time() -> None:
    clock = MockClock()
    now = clock.current_time()
    assert clock.deadline_to_sleep_time(now - 1) == 0
    assert clock.deadline_to_sleep_time(now + 1) == 999999999
    clock.rate = 2
    assert clock.deadline_to_sleep_time(clock.current_time() + 10) == pytest.approx(5, abs=0.01)


def test_autojump() -> None:
    clock = MockClock(autojump_threshold=0)

    async def main() -> float:
        start = corral.current_time()
        await corral.sleep(1000)
        return corral.current_time() - start

    real_start = time.perf_counter()
    assert corral.run(main, clock=clock) == 1000
    assert time.perf_counter() - real_start < 60


def test_autojump_threshold_set_during_run() -> None:
    clock = MockClock()

    async def main() -> None:
        async def sleeper() -> None:
            await corral.sleep(100)

        async with corral.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            await wait_all_tasks_blocked()
            clock.autojump_threshold = 0
        assert clock.current_time() >= 100

    corral.run(main, clock=clock)
    assert clock.autojump_threshold == 0


async def test_wait_all_tasks_blocked_beats_autojump(autojump_clock: MockClock) -> None:
    record = []

    async def sleeper() -> None:
        await corral.sleep(10)
        record.append("slept")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        before = corral.current_time()
        await wait_all_tasks_blocked()
        # woke without the clock jumping
        assert corral.current_time() == before
        assert record == []
    assert record == ["slept"]


async def test_wait_all_tasks_blocked_cushion_order() -> None:
    record = []

    async def waiter(cushion: float, name: str) -> None:
        await wait_all_tasks_blocked(cushion)
        record.append(name)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waiter, 0.02, "slow")
        nursery.start_soon(waiter, 0.0, "fast1")
        nursery.start_soon(waiter, 0.0, "fast2")
    assert sorted(record[:2]) == ["fast1", "fast2"]
    assert record[2] == "slow"


async def test_wait_all_tasks_blocked_is_cancellable() -> None:
    with corral.CancelScope() as cs:
        cs.cancel()
        await wait_all_tasks_blocked()
    assert cs.cancelled_caught


def test_mock_clock_offsets_are_independent() -> None:
    a = MockClock()
    b = MockClock()
    a.jump(5)
    assert a.current_time() - b.current_time() == 5
    assert MockClock(autojump_threshold=inf).autojump_threshold == inf
