"""ParkingLot: FIFO fairness, counts, repark, cancellation, breaking."""

from __future__ import annotations

import math

import pytest

import corral
import corral.lowlevel as ll
from corral.testing import wait_all_tasks_blocked


async def _park_and_record(lot: ll.ParkingLot, record: list[str], name: str) -> None:
    record.append(f"{name} sleep")
    await lot.park()
    record.append(f"{name} woke")


async def test_fifo_unpark_counts_and_statistics() -> None:
    lot = ll.ParkingLot()
    assert not lot
    assert len(lot) == 0
    assert lot.unpark() == []
    record: list[str] = []
    async with corral.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(_park_and_record, lot, record, str(i))
            await wait_all_tasks_blocked()
        assert len(lot) == 4
        assert lot
        assert lot.statistics().tasks_waiting == 4
        woken = lot.unpark()
        assert len(woken) == 1
        await wait_all_tasks_blocked()
        assert record[-1] == "0 woke"
        assert len(lot.unpark(count=2)) == 2
        await wait_all_tasks_blocked()
        assert record[-2:] == ["1 woke", "2 woke"]
        assert len(lot.unpark_all()) == 1
    assert record[-1] == "3 woke"


async def test_unpark_count_inf_and_bad_float() -> None:
    lot = ll.ParkingLot()
    async with corral.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(lot.park)
        await wait_all_tasks_blocked()
        with pytest.raises(ValueError, match=r"^Cannot pop a non-integer number of tasks.$"):
            lot.unpark(count=1.5)
        assert len(lot.unpark(count=math.inf)) == 3


async def test_park_is_cancellable() -> None:
    lot = ll.ParkingLot()
    with corral.move_on_after(0.01) as cs:
        await lot.park()
    assert cs.cancelled_caught
    assert len(lot) == 0


async def test_repark() -> None:
    lot1 = ll.ParkingLot()
    lot2 = ll.ParkingLot()
    record: list[str] = []
    async with corral.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(_park_and_record, lot1, record, str(i))
            await wait_all_tasks_blocked()
        lot1.repark(lot2)
        assert (len(lot1), len(lot2)) == (2, 1)
        lot1.repark_all(lot2)
        assert (len(lot1), len(lot2)) == (0, 3)
        with pytest.raises(TypeError, match=r"^new_lot must be a ParkingLot$"):
            lot1.repark([])  # type: ignore[arg-type]
        # A reparked task that gets cancelled leaves its *new* lot.
        nursery.cancel_scope.cancel()
    assert len(lot2) == 0
    assert [r for r in record if "woke" in r] == []


async def test_break_lot() -> None:
    lot = ll.ParkingLot()
    errors: list[BaseException] = []

    async def parker() -> None:
        try:
            await lot.park()
        except corral.BrokenResourceError as exc:
            errors.append(exc)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(parker)
        nursery.start_soon(parker)
        await wait_all_tasks_blocked()
        lot.break_lot()
    me = ll.current_task()
    assert [str(e) for e in errors] == [f"Parking lot broken by {me}"] * 2
    assert lot.broken_by == [me]
    with pytest.raises(
        corral.BrokenResourceError, match=r"^Attempted to park in parking lot broken by \[.*\]$"
    ):
        await lot.park()
    lot.break_lot()
    assert lot.broken_by == [me, me]


async def test_parking_lot_breaker_breaks_lot_when_task_exits() -> None:
    lot = ll.ParkingLot()
    breaker_task: list[ll.Task] = []

    async def breaker(task_status: corral.TaskStatus[None]) -> None:
        breaker_task.append(ll.current_task())
        ll.add_parking_lot_breaker(ll.current_task(), lot)
        task_status.started()
        await corral.sleep(0.01)

    async with corral.open_nursery() as nursery:
        await nursery.start(breaker)
        with pytest.raises(corral.BrokenResourceError):
            await lot.park()
    assert lot.broken_by == breaker_task
    with pytest.raises(
        corral.BrokenResourceError, match=r"^Attempted to add already exited task as lot breaker.$"
    ):
        ll.add_parking_lot_breaker(breaker_task[0], lot)


async def test_remove_parking_lot_breaker() -> None:
    lot = ll.ParkingLot()
    me = ll.current_task()
    ll.add_parking_lot_breaker(me, lot)
    ll.remove_parking_lot_breaker(me, lot)
    with pytest.raises(
        RuntimeError,
        match=r"^Attempted to remove task as breaker for a lot it is not registered for$",
    ):
        ll.remove_parking_lot_breaker(me, lot)
