"""ParkingLot: the fair wait queue that corral's synchronization primitives
are built on, and the registry of lot breakers."""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs
from outcome import Error

from ._exceptions import BrokenResourceError
from ._ki import enable_ki_protection
from ._run_context import GLOBAL_RUN_CONTEXT
from ._traps import Abort, RaiseCancelT, wait_task_rescheduled

if TYPE_CHECKING:
    from ._task import Task

#: Task -> lots that the task breaks when it exits (see
#: :meth:`ParkingLot.break_lot`). The runner consults it in task_exited.
GLOBAL_PARKING_LOT_BREAKER: dict[Task, list[ParkingLot]] = {}


def _current_task() -> Task:
    try:
        return GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def add_parking_lot_breaker(task: Task, lot: ParkingLot) -> None:
    """Register ``task`` so that ``lot`` is broken (see
    :meth:`ParkingLot.break_lot`) when the task exits.

    Raises:
      corral.BrokenResourceError: the task has already exited.
    """
    if inspect.getcoroutinestate(task.coro) == inspect.CORO_CLOSED:
        raise BrokenResourceError("Attempted to add already exited task as lot breaker.")
    GLOBAL_PARKING_LOT_BREAKER.setdefault(task, []).append(lot)


def remove_parking_lot_breaker(task: Task, lot: ParkingLot) -> None:
    """Undo :func:`add_parking_lot_breaker`.

    Raises:
      RuntimeError: ``task`` is not registered as a breaker of ``lot``.
    """
    try:
        GLOBAL_PARKING_LOT_BREAKER[task].remove(lot)
    except (KeyError, ValueError):
        raise RuntimeError(
            "Attempted to remove task as breaker for a lot it is not registered for",
        ) from None
    if not GLOBAL_PARKING_LOT_BREAKER[task]:
        del GLOBAL_PARKING_LOT_BREAKER[task]


@attrs.frozen
class ParkingLotStatistics:
    """Statistics of a :class:`ParkingLot`.

    Attributes:
      tasks_waiting: tasks blocked in :meth:`ParkingLot.park`.
    """

    tasks_waiting: int


class ParkingLot:
    """A fair (FIFO) wait queue with cancellation and requeuing.

    Tasks block in :meth:`park` until another task wakes them with
    :meth:`unpark` / :meth:`unpark_all`. ``len(lot)`` is the number of parked
    tasks; a lot is truthy when any task is parked.
    """

    __slots__ = ("_parked", "broken_by")

    def __init__(self) -> None:
        self._parked: OrderedDict[Task, None] = OrderedDict()
        #: Tasks that broke this lot (empty while it is not broken).
        self.broken_by: list[Task] = []

    def __len__(self) -> int:
        """The number of parked tasks."""
        return len(self._parked)

    def __bool__(self) -> bool:
        """Whether any task is parked."""
        return bool(self._parked)

    def __repr__(self) -> str:
        return f"<corral.lowlevel.ParkingLot with {len(self._parked)} parked tasks>"

    @enable_ki_protection
    async def park(self) -> None:
        """Block until woken by :meth:`unpark` or :meth:`unpark_all`.

        A checkpoint; cancellation removes the task from the lot.

        Raises:
          corral.BrokenResourceError: the lot is broken, or breaks while we
            wait.
        """
        if self.broken_by:
            raise BrokenResourceError(
                f"Attempted to park in parking lot broken by {self.broken_by}",
            )
        task = _current_task()
        self._parked[task] = None
        # The lot we are parked in: repark() moves tasks between lots.
        task.custom_sleep_data = self

        def abort_fn(_: RaiseCancelT) -> Abort:
            del task.custom_sleep_data._parked[task]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort_fn)

    def _pop_several(self, count: int | float) -> Iterator[Task]:
        if isinstance(count, float):
            if math.isinf(count):
                count = len(self._parked)
            else:
                raise ValueError("Cannot pop a non-integer number of tasks.")
        else:
            count = min(count, len(self._parked))
        for _ in range(count):
            task, _ = self._parked.popitem(last=False)
            yield task

    @enable_ki_protection
    def unpark(self, *, count: int | float = 1) -> list[Task]:
        """Wake up to ``count`` parked tasks (``math.inf`` for all), oldest
        first; return them. Waking fewer than ``count`` is not an error."""
        tasks = list(self._pop_several(count))
        reschedule = GLOBAL_RUN_CONTEXT.runner.reschedule
        for task in tasks:
            reschedule(task)
        return tasks

    def unpark_all(self) -> list[Task]:
        """Wake every parked task; return them."""
        return self.unpark(count=len(self))

    @enable_ki_protection
    def repark(self, new_lot: ParkingLot, *, count: int | float = 1) -> None:
        """Move up to ``count`` parked tasks (oldest first, order kept) to the
        end of ``new_lot``, without waking them.

        Raises:
          TypeError: ``new_lot`` is not a ParkingLot.
        """
        if not isinstance(new_lot, ParkingLot):
            raise TypeError("new_lot must be a ParkingLot")
        for task in self._pop_several(count):
            new_lot._parked[task] = None
            task.custom_sleep_data = new_lot

    def repark_all(self, new_lot: ParkingLot) -> None:
        """Move every parked task to ``new_lot``; see :meth:`repark`."""
        return self.repark(new_lot, count=len(self))

    def break_lot(self, task: Task | None = None) -> None:
        """Break the lot, recording ``task`` (default: the current task) as
        the breaker: every parked task raises
        :exc:`corral.BrokenResourceError`, and so does every later
        :meth:`park`. ``unpark``/``repark`` then do nothing (the lot is
        empty)."""
        if task is None:
            task = _current_task()
        if self.broken_by:
            self.broken_by.append(task)
            return
        self.broken_by.append(task)
        reschedule = GLOBAL_RUN_CONTEXT.runner.reschedule
        for parked_task in self._parked:
            reschedule(
                parked_task,
                Error(BrokenResourceError(f"Parking lot broken by {task}")),
            )
        self._parked.clear()

    def statistics(self) -> ParkingLotStatistics:
        """Return :class:`ParkingLotStatistics`."""
        return ParkingLotStatistics(tasks_waiting=len(self._parked))
