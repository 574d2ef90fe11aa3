"""Sequencer: ordering across tasks, and how a broken sequence is reported."""

from __future__ import annotations

import pytest

import corral
from corral.testing import Sequencer, wait_all_tasks_blocked


async def test_blocks_run_in_sequence_order_across_tasks() -> None:
    seq = Sequencer()
    record: list[tuple[str, int]] = []

    async def worker(name: str, positions: list[int]) -> None:
        for position in positions:
            async with seq(position):
                record.append((name, position))
                # Yielding inside a block must not let the next one start.
                await corral.sleep(0)

    async with corral.open_nursery() as nursery:
        # Started in an order unrelated to the sequence.
        nursery.start_soon(worker, "c", [1, 3])
        nursery.start_soon(worker, "b", [2, 5])
        nursery.start_soon(worker, "a", [0, 4])

    assert record == [("a", 0), ("c", 1), ("b", 2), ("c", 3), ("a", 4), ("b", 5)]


async def test_next_block_starts_even_if_previous_block_raised() -> None:
    seq = Sequencer()
    record: list[int] = []

    async def second() -> None:
        async with seq(1):
            record.append(1)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(second)
        with pytest.raises(KeyError):
            async with seq(0):
                record.append(0)
                raise KeyError("block 0 failed")
    assert record == [0, 1]


async def test_reusing_a_position_is_an_error() -> None:
    seq = Sequencer()
    async with seq(0):
        pass
    with pytest.raises(RuntimeError, match=r"^Attempted to reuse sequence point 0$"):
        async with seq(0):
            pass  # pragma: no cover
    async with seq(1):
        pass
    with pytest.raises(RuntimeError, match=r"^Attempted to reuse sequence point 1$"):
        async with seq(1):
            pass  # pragma: no cover


async def test_cancelled_wait_breaks_the_sequence() -> None:
    seq = Sequencer()
    waiter_errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            async with seq(5):
                pass  # pragma: no cover
        except RuntimeError as exc:
            waiter_errors.append(exc)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert waiter_errors == []

        with corral.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(
                RuntimeError, match=r"^Sequencer wait cancelled -- sequence broken$"
            ) as info:
                async with seq(1):
                    pass  # pragma: no cover
        # The cancellation was turned into the RuntimeError, not chained.
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__
        assert not scope.cancelled_caught

    # The task already waiting was woken and told.
    assert [str(exc) for exc in waiter_errors] == ["sequence broken!"]
    # Later entries fail at once, even position 0.
    with pytest.raises(RuntimeError, match=r"^sequence broken!$"):
        async with seq(0):
            pass  # pragma: no cover
    # Reuse is still reported as reuse.
    with pytest.raises(RuntimeError, match=r"^Attempted to reuse sequence point 1$"):
        async with seq(1):
            pass  # pragma: no cover


async def test_waiting_block_is_woken_by_a_break_after_it_queued() -> None:
    # A block whose turn came because the sequence broke must not run.
    seq = Sequencer()
    ran: list[int] = []

    async def late() -> None:
        async with seq(2):
            ran.append(2)  # pragma: no cover

    broken = pytest.RaisesExc(RuntimeError, match=r"^sequence broken!$")
    with pytest.RaisesGroup(broken):
        async with corral.open_nursery() as nursery:
            nursery.start_soon(late)
            await wait_all_tasks_blocked()
            with corral.CancelScope() as scope:
                scope.cancel()
                try:
                    async with seq(1):
                        pass  # pragma: no cover
                except RuntimeError:
                    pass
    assert ran == []


def test_repr() -> None:
    seq = Sequencer()
    assert repr(seq) == "<corral.testing.Sequencer: 0 positions used>"
