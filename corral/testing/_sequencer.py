"""Sequencer: make blocks of code in different tasks run in a fixed order."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, final

from .._core import Cancelled
from .._sync import Event

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Sequencer"]


@final
class Sequencer:
    """Force blocks of code in different tasks to run in one linear order.

    Call the sequencer with a position to get an async context manager:
    ``async with seq(0):`` enters at once, and ``async with seq(n):`` waits
    until the block at position ``n - 1`` has exited (however it exited).
    Each position can be used once.

    If a task waiting for its turn is cancelled, the sequence can no longer
    be honoured: the sequencer becomes *broken*, every task waiting on it
    wakes up, and every later ``seq(n)`` fails. This turns a test that would
    otherwise hang into one that fails loudly.

    Raises (on entering ``seq(n)``):
      RuntimeError: ``"Attempted to reuse sequence point {n}"`` for a
        position already used; ``"sequence broken!"`` once the sequencer is
        broken; ``"Sequencer wait cancelled -- sequence broken"`` in the task
        whose wait was cancelled (the :exc:`~corral.Cancelled` is dropped, as
        the sequence, not the cancellation, is what the test must hear of).

    Example: the numbers 0 to 3 in order, from two tasks::

        async def evens(seq):
            async with seq(0):
                print(0)
            async with seq(2):
                print(2)

        async def odds(seq):
            async with seq(1):
                print(1)
            async with seq(3):
                print(3)

        async def main():
            seq = corral.testing.Sequencer()
            async with corral.open_nursery() as nursery:
                nursery.start_soon(odds, seq)
                nursery.start_soon(evens, seq)
    """

    __slots__ = ("_broken", "_claimed", "_turns")

    def __init__(self) -> None:
        # _turns[n] is set when position n may start. Created on demand by
        # whichever side (waiter or finisher) gets there first.
        self._turns: dict[int, Event] = {}
        self._claimed: set[int] = set()
        self._broken = False

    def __repr__(self) -> str:
        state = "broken" if self._broken else f"{len(self._claimed)} positions used"
        return f"<corral.testing.Sequencer: {state}>"

    def _turn(self, position: int) -> Event:
        event = self._turns.get(position)
        if event is None:
            event = self._turns[position] = Event()
        return event

    def __call__(self, position: int) -> AbstractAsyncContextManager[None]:
        """Return the async context manager for the block at ``position``."""
        return _SequencePoint(self, position)

    async def _enter(self, position: int) -> None:
        if position in self._claimed:
            raise RuntimeError(f"Attempted to reuse sequence point {position}")
        if self._broken:
            raise RuntimeError("sequence broken!")
        self._claimed.add(position)
        if position == 0:
            return
        try:
            await self._turn(position).wait()
        except Cancelled:
            self._break()
            raise RuntimeError("Sequencer wait cancelled -- sequence broken") from None
        if self._broken:
            raise RuntimeError("sequence broken!")

    def _break(self) -> None:
        self._broken = True
        for event in self._turns.values():
            event.set()

    def _exit(self, position: int) -> None:
        self._turn(position + 1).set()


@final
class _SequencePoint:
    """The async context manager returned by ``Sequencer.__call__``."""

    __slots__ = ("_position", "_sequencer")

    def __init__(self, sequencer: Sequencer, position: int) -> None:
        self._sequencer = sequencer
        self._position = position

    async def __aenter__(self) -> None:
        # Entering the same object twice claims its position twice, which
        # _enter reports as a reused sequence point.
        await self._sequencer._enter(self._position)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The next position may start however this block ended.
        self._sequencer._exit(self._position)
