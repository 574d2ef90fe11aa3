"""CancelScope, the cancel-status tree, and the run's deadline heap.

A :class:`CancelScope` is both the user-facing object and, while it is
entered, a node of the *cancel-status tree*: the tree whose shape mirrors the
lexical nesting of active ``with CancelScope()`` blocks across all tasks
(Trio keeps these two roles in separate objects; a scope is entered at most
once, so corral folds them into one and saves an allocation per ``with``).

Each task points at its innermost active scope (``task._cancel_status``).
A node is *effectively cancelled* when its own scope was cancelled, or when
its parent is effectively cancelled and it is not shielded. When a node
becomes effectively cancelled, the change propagates down the tree and every
task attached directly to a changed node gets an abort attempt.

The deadline heap holds two kinds of entries: cancel scopes with a finite
deadline, and sleeping tasks (:class:`~corral._core._traps.SleepUntil`).
Entries are never removed in place: a scope entry is live while its
deadline equals the scope's ``_registered_deadline``, a sleep entry while
its ``task`` is set. Stale entries are dropped when they reach the top, and
the heap is rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable
from itertools import count
from math import inf, isnan
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ._exceptions import Cancelled, CancelReasonLiteral
from ._ki import enable_ki_protection
from ._run_context import GLOBAL_RUN_CONTEXT
from ._traps import SleepUntil

if TYPE_CHECKING:
    from typing import Self

    from ._run import Runner
    from ._task import Task

# Rebuild the heap only once it holds this many stale entries beyond twice
# the live ones, so the amortized cost stays low.
_PRUNE_SLACK = 1000


class CancelReason:
    """Why a scope was cancelled; copied into each :exc:`Cancelled` it
    raises. Internal."""

    __slots__ = ("reason", "source", "source_task")

    def __init__(
        self,
        source: CancelReasonLiteral,
        source_task: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.source = source
        self.source_task = source_task
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"CancelReason(source={self.source!r}, source_task={self.source_task!r}, "
            f"reason={self.reason!r})"
        )


def make_raise_cancel(reason: CancelReason | None) -> Callable[[], NoReturn]:
    """Return the ``raise_cancel`` callback that raises the Cancelled for
    ``reason``."""

    def raise_cancel() -> NoReturn:
        if reason is None:
            raise Cancelled._create(source="unknown", reason="misnesting")
        raise Cancelled._create(
            source=reason.source, reason=reason.reason, source_task=reason.source_task
        )

    return raise_cancel


MISNESTING_ADVICE = """
This is probably a bug in your code, that has caused corral's internal state to
become corrupted. We'll do our best to recover, but from now on there are
no guarantees.

Typically this is caused by one of the following:
  - yielding within a generator or async generator that's opened a cancel
    scope or nursery (unless the generator is a @contextmanager or
    @asynccontextmanager); see https://github.com/python-trio/trio/issues/638
  - manually calling __enter__ or __exit__ on a corral.CancelScope, or
    __aenter__ or __aexit__ on the object returned by corral.open_nursery();
    doing so correctly is difficult and you should use @[async]contextmanager
    instead, or maybe [Async]ExitStack
  - using [Async]ExitStack to interleave the entries/exits of cancel scopes
    and/or nurseries in a way that couldn't be achieved by some nesting of
    'with' and 'async with' blocks
  - using the low-level coroutine object protocol to execute some parts of
    an async function in a different cancel scope/nursery context than
    other parts
If you don't believe you're doing any of these things, please file a bug:
https://github.com/python-trio/trio/issues/new
"""


def _current_task() -> Task:
    try:
        return GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def _current_time() -> float:
    try:
        runner = GLOBAL_RUN_CONTEXT.runner
    except AttributeError:
        raise RuntimeError("must be called from async context") from None
    return runner.clock.current_time()


class Deadlines:
    """The run's heap of cancel-scope deadlines and sleep timers."""

    __slots__ = ("_heap", "_seq", "active")

    def __init__(self) -> None:
        # Entries are (deadline, tiebreak, CancelScope | SleepUntil). The
        # tiebreak keeps entries with equal deadlines in insertion order and
        # means targets are never compared.
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = count().__next__
        #: Number of live entries (scopes with a registered deadline, plus
        #: parked sleepers).
        self.active = 0

    def __len__(self) -> int:
        return self.active

    def add(self, deadline: float, target: CancelScope | SleepUntil) -> None:
        """File ``target`` under ``deadline``."""
        heap = self._heap
        heapq.heappush(heap, (deadline, self._seq(), target))
        self.active += 1
        if len(heap) > 2 * self.active + _PRUNE_SLACK:
            self._prune()

    def next_deadline(self) -> float:
        """Return the earliest live deadline (``inf`` if none), dropping stale
        entries from the top."""
        heap = self._heap
        while heap:
            deadline, _, target = heap[0]
            if type(target) is SleepUntil:
                if target.task is not None:
                    return deadline
            elif deadline == target._registered_deadline:
                return deadline
            heapq.heappop(heap)
        return inf

    def _prune(self) -> None:
        live: list[tuple[float, int, Any]] = []
        seen: set[int] = set()
        for entry in self._heap:
            deadline, _, target = entry
            if type(target) is SleepUntil:
                if target.task is not None:
                    live.append(entry)
            elif deadline == target._registered_deadline and id(target) not in seen:
                # A scope can toggle between the same deadlines and leave
                # several entries that look live; keep one.
                seen.add(id(target))
                live.append(entry)
        heapq.heapify(live)
        self._heap = live

    def expire(self, now: float, runner: Runner) -> bool:
        """Fire everything due at ``now``: wake sleepers, cancel scopes.
        Returns whether anything fired."""
        heap = self._heap
        fired = False
        runq = runner.runq
        while heap and heap[0][0] <= now:
            deadline, _, target = heapq.heappop(heap)
            if type(target) is SleepUntil:
                task = target.task
                if task is None:
                    continue
                target.task = None
                self.active -= 1
                fired = True
                # Wake the sleeper directly: resume it with None, no outcome
                # object, no exception.
                task._next_send_fn = task._coro_send
                task._next_send = None
                task._abort_func = None
                task.custom_sleep_data = None
                runq.append(task)
                if runner.instruments:
                    runner.instruments.call("task_scheduled", task)
            elif deadline == target._registered_deadline:
                fired = True
                # _cancel unregisters the deadline (decrements `active`).
                target._cancel(CancelReason(source="deadline"))
        return fired


class CancelScope:
    """A *cancellation scope*: the link between a unit of cancellable work
    and corral's cancellation system.

    Use it as a context manager around the work::

        with corral.CancelScope() as cancel_scope:
            await long_running_operation()

    Cancelling the scope (:meth:`cancel`, or its :attr:`deadline` passing)
    makes every :ref:`checkpoint <checkpoints>` inside the block raise
    :exc:`corral.Cancelled` (level-triggered: again and again until the block
    is left), and the scope catches that exception when it reaches the
    ``with``. A scope cancelled before it is entered raises at the first
    checkpoint inside it, so a scope can be created in one task and passed
    to another. Each scope can be entered at most once (a second ``with``
    raises :exc:`RuntimeError`).

    Args:
      deadline: absolute clock time at which the scope cancels itself.
      relative_deadline: seconds after *entering* at which it cancels itself.
        At most one of the two may be given.
      shield: if true, cancellations from enclosing scopes do not reach code
        inside this scope.

    Raises:
      ValueError: a NaN deadline, a negative relative deadline, or both
        deadlines given.
    """

    __slots__ = (  # noqa: RUF023 - grouped by role, not sorted
        # Cancel-status tree (meaningful while `_active`).
        "_parent",
        "_children",
        "_tasks",
        "effectively_cancelled",
        "abandoned_by_misnesting",
        # Scope state.
        "_active",
        "_has_been_entered",
        "_registered_deadline",
        "_cancel_called",
        "cancelled_caught",
        "_cancel_reason",
        "_relative_deadline",
        "_deadline",
        "_shield",
        "__weakref__",
    )

    def __init__(
        self,
        *,
        deadline: float = inf,
        relative_deadline: float = inf,
        shield: bool = False,
    ) -> None:
        if isnan(deadline):
            raise ValueError("deadline must not be NaN")
        if isnan(relative_deadline):
            raise ValueError("relative deadline must not be NaN")
        if relative_deadline < 0:
            raise ValueError("timeout must be non-negative")
        if relative_deadline != inf and deadline != inf:
            raise ValueError("Cannot specify both a deadline and a relative deadline")
        self._parent: CancelScope | None = None
        self._children: set[CancelScope] | None = None
        self._tasks: set[Task] = set()
        #: True iff checkpoints of tasks attached here raise Cancelled.
        self.effectively_cancelled = False
        self.abandoned_by_misnesting = False
        self._active = False
        self._has_been_entered = False
        self._registered_deadline = inf
        self._cancel_called = False
        #: Whether this scope caught a :exc:`Cancelled` on exit.
        self.cancelled_caught = False
        self._cancel_reason: CancelReason | None = None
        self._relative_deadline = float(relative_deadline)
        self._deadline = float(deadline)
        self._shield = shield

    # ------------------------------------------------------------------
    # The cancel-status tree

    @property
    def parent(self) -> CancelScope | None:
        return self._parent

    def _set_parent(self, parent: CancelScope | None) -> None:
        old = self._parent
        if old is not None and old._children is not None:
            old._children.discard(self)
        self._parent = parent
        if parent is not None:
            if parent._children is None:
                parent._children = {self}
            else:
                parent._children.add(self)
            self.recalculate()

    @property
    def children(self) -> frozenset[CancelScope]:
        return frozenset(self._children or ())

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset(self._tasks)

    def encloses(self, other: CancelScope | None) -> bool:
        """Whether ``other`` is this node or one of its descendants."""
        while other is not None:
            if other is self:
                return True
            other = other._parent
        return False

    @property
    def parent_cancellation_is_visible_to_us(self) -> bool:
        parent = self._parent
        return parent is not None and not self._shield and parent.effectively_cancelled

    def recalculate(self) -> None:
        """Bring this node and its descendants up to date, delivering aborts
        to tasks that just became cancelled."""
        todo = [self]
        while todo:
            node = todo.pop()
            parent = node._parent
            visible = (
                parent is not None and not node._shield and parent.effectively_cancelled
            )
            new_state = node._cancel_called or visible
            if new_state != node.effectively_cancelled:
                if node._cancel_reason is None and visible:
                    assert parent is not None
                    node._cancel_reason = parent._cancel_reason
                node.effectively_cancelled = new_state
                if new_state:
                    for task in list(node._tasks):
                        task._attempt_delivery_of_any_pending_cancel()
                if node._children:
                    todo.extend(node._children)

    def _mark_abandoned(self) -> None:
        self.abandoned_by_misnesting = True
        for child in self._children or ():
            child._mark_abandoned()

    def _close_status(self) -> None:
        self._set_parent(None)
        if self._tasks or self._children:
            # Scopes were exited out of order. _close() reports the error;
            # here we leave the orphaned subtree detached, cancelled, and
            # marked, so that its scopes can still be exited afterwards.
            self._mark_abandoned()
            self.effectively_cancelled = True
            for task in list(self._tasks):
                task._attempt_delivery_of_any_pending_cancel()
            for child in list(self._children or ()):
                child.recalculate()

    def effective_deadline(self) -> float:
        """The earliest deadline that applies here, taking shields into
        account; ``-inf`` if already cancelled."""
        node = self
        result = inf
        while True:
            if node.effectively_cancelled:
                return -inf
            if node._deadline < result:
                result = node._deadline
            parent = node._parent
            if parent is None or node._shield:
                return result
            node = parent

    # ------------------------------------------------------------------
    # Context manager

    @enable_ki_protection
    def __enter__(self) -> Self:
        try:
            task = GLOBAL_RUN_CONTEXT.task
        except AttributeError:
            raise RuntimeError("must be called from async context") from None
        if self._has_been_entered:
            raise RuntimeError("Each CancelScope may only be used for a single 'with' block")
        self._has_been_entered = True
        if self._relative_deadline != inf:
            self._deadline = task._runner.clock.current_time() + self._relative_deadline
            self._relative_deadline = inf
        if self._deadline != inf and task._runner.clock.current_time() >= self._deadline:
            self._cancel(CancelReason(source="deadline"))
        # Attach under the task's current node (inlined _set_parent and
        # Task._activate_cancel_status: this is the hot path of every `with`).
        parent = task._cancel_status
        self._parent = parent
        self._active = True
        if parent is not None:
            if parent._children is None:
                parent._children = {self}
            else:
                parent._children.add(self)
            parent._tasks.discard(task)
            if self._cancel_called or (not self._shield and parent.effectively_cancelled):
                if self._cancel_reason is None and not self._cancel_called:
                    self._cancel_reason = parent._cancel_reason
                self.effectively_cancelled = True
        elif self._cancel_called:
            self.effectively_cancelled = True
        task._cancel_status = self
        self._tasks.add(task)
        if self._deadline != inf and not self._cancel_called:
            self._registered_deadline = self._deadline
            task._runner.deadlines.add(self._deadline, self)
            if task._runner.is_guest:
                task._runner.force_guest_tick_asap()
        return self

    def _close(self, exc: BaseException | None) -> BaseException | None:
        if not self._active:
            new_exc = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r} "
                "which had already been exited",
            )
            new_exc.__context__ = exc
            return new_exc
        scope_task = _current_task()
        if scope_task._cancel_status is not self:
            # Misnesting: this is not the task's innermost open scope.
            if self.abandoned_by_misnesting:
                # An enclosing scope was already closed around us and has
                # reported the error; a second one would only confuse.
                pass
            elif not self.encloses(scope_task._cancel_status):
                new_exc = RuntimeError(
                    f"Cancel scope stack corrupted: attempted to exit {self!r} "
                    f"from unrelated {scope_task!r}\n{MISNESTING_ADVICE}",
                )
                new_exc.__context__ = exc
                return new_exc
            else:
                new_exc = RuntimeError(
                    f"Cancel scope stack corrupted: attempted to exit {self!r} "
                    f"in {scope_task!r} that's still within its child "
                    f"{scope_task._cancel_status!r}\n{MISNESTING_ADVICE}",
                )
                new_exc.__context__ = exc
                exc = new_exc
                scope_task._activate_cancel_status(self._parent)
        else:
            # Fast path of Task._activate_cancel_status(self._parent).
            self._tasks.discard(scope_task)
            parent = self._parent
            scope_task._cancel_status = parent  # type: ignore[assignment]
            if parent is not None:
                parent._tasks.add(scope_task)
                if parent.effectively_cancelled:
                    scope_task._attempt_delivery_of_any_pending_cancel()
        if (
            exc is not None
            and self.effectively_cancelled
            and not self.parent_cancellation_is_visible_to_us
        ) or (scope_task._cancel_status is not self and self.abandoned_by_misnesting):
            if isinstance(exc, Cancelled):
                self.cancelled_caught = True
                exc = None
            elif isinstance(exc, BaseExceptionGroup):
                matched, exc = exc.split(Cancelled)
                if matched:
                    self.cancelled_caught = True
        # Detach from the tree (inlined _close_status for the common case).
        parent = self._parent
        if parent is not None and parent._children is not None:
            parent._children.discard(self)
        self._parent = None
        if self._tasks or self._children:
            self._mark_abandoned()
            self.effectively_cancelled = True
            for task in list(self._tasks):
                task._attempt_delivery_of_any_pending_cancel()
            for child in list(self._children or ()):
                child.recalculate()
        self._active = False
        if self._registered_deadline != inf:
            self._update_registered_deadline()
        return exc

    @enable_ki_protection
    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # open_nursery's manager calls _close() directly, so __exit__ is only
        # _close() plus adapting the result to the context-manager protocol.
        remaining_error_after_cancel_scope = self._close(exc)
        if remaining_error_after_cancel_scope is None:
            return True
        if remaining_error_after_cancel_scope is exc:
            return False
        # A new exception (a corruption error, or a split group): raise it
        # while preserving the __context__ we chose.
        old_context = remaining_error_after_cancel_scope.__context__
        try:
            raise remaining_error_after_cancel_scope
        finally:
            _, value, _ = sys.exc_info()
            assert value is remaining_error_after_cancel_scope
            value.__context__ = old_context
            # Break reference cycles through this frame.
            del remaining_error_after_cancel_scope, value, _, exc

    def __repr__(self) -> str:
        if self._active:
            binding = "active"
        elif self._has_been_entered:
            binding = "exited"
        else:
            binding = "unbound"
        if self._cancel_called:
            state = ", cancelled"
        elif self._deadline == inf:
            state = ""
        else:
            try:
                now = _current_time()
            except RuntimeError:
                state = ""
            else:
                state = ", deadline is {:.2f} seconds {}".format(
                    abs(self._deadline - now),
                    "from now" if self._deadline >= now else "ago",
                )
        return f"<corral.CancelScope at {id(self):#x}, {binding}{state}>"

    # ------------------------------------------------------------------
    # Deadlines

    def _update_registered_deadline(self) -> None:
        """Keep the heap in sync after the deadline, activity or cancel state
        changed."""
        old = self._registered_deadline
        new = inf if (not self._active or self._cancel_called) else self._deadline
        if old == new:
            return
        self._registered_deadline = new
        runner = GLOBAL_RUN_CONTEXT.runner
        deadlines = runner.deadlines
        if runner.is_guest:
            old_next = deadlines.next_deadline()
        if old != inf:
            deadlines.active -= 1
        if new != inf:
            deadlines.add(new, self)
        if runner.is_guest and deadlines.next_deadline() != old_next:
            runner.force_guest_tick_asap()

    @property
    def deadline(self) -> float:
        """Read-write, :class:`float`: the absolute clock time at which this
        scope cancels itself (:data:`math.inf`, the default, means never).
        Changes take effect at once, entered or not.

        Raises:
          RuntimeError: reading or writing it on an unentered scope created
            with ``relative_deadline=``.
          ValueError: setting NaN.
        """
        if self._relative_deadline != inf:
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline."
            )
        return self._deadline

    @deadline.setter
    def deadline(self, new_deadline: float) -> None:
        if isnan(new_deadline):
            raise ValueError("deadline must not be NaN")
        if self._relative_deadline != inf:
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline."
            )
        self._deadline = float(new_deadline)
        if self._active or self._registered_deadline != inf:
            self._update_registered_deadline()

    @property
    def relative_deadline(self) -> float:
        """Read-write, :class:`float`: seconds from now until the deadline.

        Before entering, it sets the deadline relative to the moment of
        entry; after entering, writing it sets the deadline relative to the
        current time.

        Raises:
          RuntimeError: on an unentered scope created with ``deadline=``.
          ValueError: setting NaN or a negative value.
        """
        if self._has_been_entered:
            return self._deadline - _current_time()
        if self._deadline != inf:
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline",
            )
        return self._relative_deadline

    @relative_deadline.setter
    def relative_deadline(self, new_relative_deadline: float) -> None:
        if isnan(new_relative_deadline):
            raise ValueError("relative deadline must not be NaN")
        if new_relative_deadline < 0:
            raise ValueError("relative deadline must be non-negative")
        if self._has_been_entered:
            self._deadline = _current_time() + float(new_relative_deadline)
            self._update_registered_deadline()
        elif self._deadline != inf:
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline",
            )
        else:
            self._relative_deadline = float(new_relative_deadline)

    @property
    def is_relative(self) -> bool | None:
        """``None`` once entered; otherwise whether the scope was given a
        relative deadline (``False`` when it has no deadline at all)."""
        if self._has_been_entered:
            return None
        return self._relative_deadline != inf

    @property
    def shield(self) -> bool:
        """Read-write, :class:`bool`: while true, cancellations of enclosing
        scopes do not reach code inside this scope (this scope's own
        cancellation and inner scopes' still do).

        Raises:
          TypeError: setting a non-bool.
        """
        return self._shield

    @shield.setter
    @enable_ki_protection
    def shield(self, new_value: bool) -> None:
        if not isinstance(new_value, bool):
            raise TypeError("shield must be a bool")
        self._shield = new_value
        if self._active:
            self.recalculate()

    # ------------------------------------------------------------------
    # Cancelling

    @enable_ki_protection
    def _cancel(self, cancel_reason: CancelReason | None) -> None:
        if self._cancel_called:
            return
        if self._cancel_reason is None:
            self._cancel_reason = cancel_reason
        self._cancel_called = True
        if self._registered_deadline != inf:
            self._update_registered_deadline()
        if self._active:
            self.recalculate()

    @enable_ki_protection
    def cancel(self, reason: str | None = None) -> None:
        """Cancel this scope now (idempotent: later calls do nothing).

        Args:
          reason: a string attached to the resulting :exc:`Cancelled`
            exceptions, to tell where the cancellation came from.
        """
        task = getattr(GLOBAL_RUN_CONTEXT, "task", None)
        self._cancel(
            CancelReason(
                source="explicit",
                reason=reason,
                source_task=None if task is None else repr(task),
            )
        )

    @property
    def cancel_called(self) -> bool:
        """Read-only: whether cancellation was requested, by :meth:`cancel` or
        by the deadline passing. It does not mean a :exc:`Cancelled` was
        raised; see :attr:`cancelled_caught` for that.

        Raises:
          RuntimeError: read outside a run while the scope is not cancelled
            and not yet exited (as in Trio: answering means reading the
            run's clock, even without a deadline).
        """
        if (
            (self._active or not self._has_been_entered)
            and not self._cancel_called
            and _current_time() >= self._deadline
        ):
            # Report a passed deadline even before the run loop notices it.
            self._cancel(CancelReason(source="deadline"))
        return self._cancel_called
