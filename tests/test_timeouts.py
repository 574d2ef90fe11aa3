"""sleep*, move_on_*, fail_*: Trio's semantics, on the autojump clock."""

from __future__ import annotations

from math import inf

import pytest

import corral
import corral.lowlevel as ll
from corral.testing import MockClock, assert_checkpoints


async def test_sleep_advances_time(autojump_clock: MockClock) -> None:
    start = corral.current_time()
    await corral.sleep(3)
    assert corral.current_time() == start + 3
    await corral.sleep_until(start + 10)
    assert corral.current_time() == start + 10
    await corral.sleep_until(start)  # in the past: just a checkpoint
    assert corral.current_time() == start + 10


async def test_sleeps_are_checkpoints() -> None:
    with assert_checkpoints():
        await corral.sleep(0)
    with assert_checkpoints():
        await corral.sleep(0.0001)
    with assert_checkpoints():
        await corral.sleep_until(corral.current_time() - 1)
    with corral.CancelScope() as cs:
        cs.cancel()
        with pytest.raises(corral.Cancelled):
            await corral.sleep(1)
        with pytest.raises(corral.Cancelled):
            await corral.sleep_until(corral.current_time() - 1)


async def test_sleep_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"^`seconds` must be non-negative$"):
        await corral.sleep(-1)
    with pytest.raises(ValueError, match=r"^deadline must not be NaN$"):
        await corral.sleep(float("nan"))
    with pytest.raises(ValueError, match=r"^deadline must not be NaN$"):
        await corral.sleep_until(float("nan"))


async def test_sleep_forever_and_inf(autojump_clock: MockClock) -> None:
    with corral.move_on_after(5) as cs:
        await corral.sleep_forever()
    assert cs.cancelled_caught
    with corral.move_on_after(5) as cs:
        await corral.sleep(inf)
    assert cs.cancelled_caught


async def test_sleep_forever_rescheduled_by_hand_is_an_error() -> None:
    task = ll.current_task()

    async def waker() -> None:
        await corral.testing.wait_all_tasks_blocked()
        ll.reschedule(task)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waker)
        with pytest.raises(RuntimeError, match=r"^Should never have been rescheduled!$"):
            await corral.sleep_forever()


async def test_many_sleepers_wake_in_deadline_order(autojump_clock: MockClock) -> None:
    order = []

    async def sleeper(d: float) -> None:
        await corral.sleep(d)
        order.append(d)

    delays = [5, 1, 4, 2, 3, 0.5]
    async with corral.open_nursery() as nursery:
        for d in delays:
            nursery.start_soon(sleeper, d)
    assert order == sorted(delays)


async def test_cancelled_sleep_leaves_no_timer(autojump_clock: MockClock) -> None:
    with corral.move_on_after(1):
        await corral.sleep(100)
    assert ll.current_statistics().seconds_to_next_deadline == inf


async def test_move_on_after(autojump_clock: MockClock) -> None:
    start = corral.current_time()
    with corral.move_on_after(2) as cs:
        await corral.sleep(10)
    assert cs.cancelled_caught
    assert corral.current_time() == start + 2
    with corral.move_on_after(2) as cs:
        await corral.sleep(1)
    assert not cs.cancelled_caught


async def test_move_on_at(autojump_clock: MockClock) -> None:
    start = corral.current_time()
    with corral.move_on_at(start + 3) as cs:
        await corral.sleep(10)
    assert cs.cancelled_caught
    assert corral.current_time() == start + 3


async def test_fail_after_and_fail_at(autojump_clock: MockClock) -> None:
    with pytest.raises(corral.TooSlowError):
        with corral.fail_after(1):
            await corral.sleep(2)
    with corral.fail_after(2) as cs:
        await corral.sleep(1)
    assert not cs.cancelled_caught
    with pytest.raises(corral.TooSlowError):
        with corral.fail_at(corral.current_time() + 1):
            await corral.sleep(2)


async def test_fail_after_outer_cancel_is_not_too_slow(autojump_clock: MockClock) -> None:
    with corral.move_on_after(1) as outer:
        with corral.fail_after(5):
            await corral.sleep(10)
    assert outer.cancelled_caught


async def test_timeouts_with_shield(autojump_clock: MockClock) -> None:
    with corral.move_on_after(1) as outer:
        with corral.move_on_after(5, shield=True) as inner:
            await corral.sleep(10)
        assert inner.cancelled_caught
        assert corral.current_time() >= 5
    assert outer.cancel_called
    with corral.fail_after(1, shield=True) as cs:
        assert cs.shield
    with corral.fail_at(0, shield=True) as cs:
        assert cs.shield
    assert corral.move_on_at(0, shield=True).shield


def test_timeout_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"^`seconds` must be non-negative$"):
        corral.move_on_after(-1)
    with pytest.raises(ValueError, match=r"^`seconds` must not be NaN$"):
        corral.move_on_after(float("nan"))
    with pytest.raises(ValueError, match=r"^deadline must not be NaN$"):
        corral.move_on_at(float("nan"))
    with pytest.raises(ValueError, match=r"^`seconds` must be non-negative$"):
        with corral.fail_after(-1):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match=r"^deadline must not be NaN$"):
        with corral.fail_at(float("nan")):
            pass  # pragma: no cover


def test_too_slow_error_is_an_exception() -> None:
    assert issubclass(corral.TooSlowError, Exception)
