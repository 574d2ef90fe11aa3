"""Nursery, open_nursery, TaskStatus and TASK_STATUS_IGNORED."""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, Protocol, TypeVar

from outcome import Error, Outcome, capture

from ._cancel import CancelReason, CancelScope
from ._deprecate import warn_loose_exception_groups
from ._exceptions import Cancelled, CorralInternalError, _NoPublicConstructor
from ._ki import enable_ki_protection
from ._run_context import GLOBAL_RUN_CONTEXT
from ._traps import Abort, RaiseCancelT, cancel_shielded_checkpoint, wait_task_rescheduled

if TYPE_CHECKING:
    from ._task import Task

StatusT = TypeVar("StatusT")
StatusT_contra = TypeVar("StatusT_contra", contravariant=True)

NONSTRICT_EXCEPTIONGROUP_NOTE = (
    'This is a "loose" ExceptionGroup, and may be collapsed by corral if it only '
    "contains one exception - typically after `Cancelled` has been stripped from it. "
    "Note this has consequences for exception handling, and strict_exception_groups=True "
    "is recommended."
)


class _NoStatus:
    """Sentinel: ``started()`` has not been called yet."""


class TaskStatus(Protocol[StatusT_contra]):
    """What :meth:`Nursery.start` passes to the new task as ``task_status``."""

    def started(self, value: StatusT_contra | None = None) -> None:
        """Report that the task has initialized; :meth:`Nursery.start`
        returns ``value``.

        Raises:
          RuntimeError: if called twice on the same status object.
        """


class _TaskStatus(Generic[StatusT]):
    # Read alongside Nursery.start().
    def __init__(self, old_nursery: Nursery, new_nursery: Nursery) -> None:
        self._old_nursery = old_nursery
        self._new_nursery = new_nursery
        self._value: object = _NoStatus

    def __repr__(self) -> str:
        return f"<Task status object at {id(self):#x}>"

    def started(self, value: StatusT | None = None) -> None:
        if self._value is not _NoStatus:
            raise RuntimeError("called 'started' twice on the same task status")
        self._value = value
        old = self._old_nursery
        new = self._new_nursery
        # If start() is being cancelled, leave the child where it is: it will
        # exit on its own, and moving a task whose Cancelled is propagating
        # under a scope that is not cancelled would let it escape.
        assert old._cancel_status is not None
        if old._cancel_status.effectively_cancelled:
            return
        # start() holds _pending_starts, so the new nursery is still open.
        assert not new._closed
        tasks = old._children
        old._children = set()
        for task in tasks:
            task._parent_nursery = new
            task._eventual_parent_nursery = None
            new._children.add(task)
        # Move everything hanging off the old nursery's cancel node under the
        # new nursery's. Detach everything first: re-attaching under a
        # cancelled node can run abort callbacks, which must not see a
        # half-moved tree.
        old_status = old._cancel_status
        child_statuses = list(old_status._children or ())
        status_tasks = set(old_status._tasks)
        status_tasks.discard(old._parent_task)
        for status in child_statuses:
            status._set_parent(None)
        for task in status_tasks:
            task._activate_cancel_status(None)
        for status in child_statuses:
            status._set_parent(new._cancel_status)
        for task in status_tasks:
            task._activate_cancel_status(new._cancel_status)
        assert not old._children
        old._check_nursery_closed()


class _TaskStatusIgnored:
    def __repr__(self) -> str:
        return "TASK_STATUS_IGNORED"

    def started(self, value: object = None) -> None:
        pass


#: A ``task_status`` whose ``started()`` does nothing: the default for
#: functions that support both ``await fn()`` and ``await nursery.start(fn)``.
TASK_STATUS_IGNORED: Final[TaskStatus[Any]] = _TaskStatusIgnored()


class NurseryManager:
    """The async context manager returned by :func:`open_nursery`.

    Written by hand rather than with ``@asynccontextmanager``, which would
    add frames to every traceback and mishandle StopIteration.
    """

    __slots__ = ("_nursery", "_scope", "strict_exception_groups")

    def __init__(self, strict_exception_groups: bool = True) -> None:
        self.strict_exception_groups = strict_exception_groups

    @enable_ki_protection
    async def __aenter__(self) -> Nursery:
        self._scope = CancelScope()
        self._scope.__enter__()
        nursery: Nursery = Nursery._create(
            GLOBAL_RUN_CONTEXT.task, self._scope, self.strict_exception_groups
        )
        self._nursery = nursery
        return nursery

    @enable_ki_protection
    async def __aexit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        new_exc = await self._nursery._nested_child_finished(exc)
        combined_error_from_nursery = self._scope._close(new_exc)
        if combined_error_from_nursery is None:
            return True
        if combined_error_from_nursery is exc:
            return False
        old_context = combined_error_from_nursery.__context__
        try:
            raise combined_error_from_nursery
        finally:
            _, value, _ = sys.exc_info()
            assert value is combined_error_from_nursery
            value.__context__ = old_context
            del _, combined_error_from_nursery, value, new_exc

    def __enter__(self) -> NoReturn:
        raise RuntimeError(
            "use 'async with open_nursery(...)', not 'with open_nursery(...)'",
        )

    def __exit__(self, *args: object) -> NoReturn:  # pragma: no cover
        raise AssertionError("Never called, but should be defined")


def open_nursery(strict_exception_groups: bool | None = None) -> NurseryManager:
    """Return an async context manager that opens a :class:`Nursery`.

    Entering does not block. Leaving blocks until every child task has
    exited; if there are none left, it is a schedule point but not a cancel
    point, so a nursery only propagates cancellation from its children and
    body, never originates it.

    Args:
      strict_exception_groups: if true (the default, taken from
        :func:`corral.run`), errors always come out wrapped in a
        :exc:`BaseExceptionGroup`, even a single one. Passing False is
        deprecated, as in Trio, and emits a :exc:`DeprecationWarning`
        (leaving it out keeps the run's setting without a warning).
    """
    if strict_exception_groups is not None and not strict_exception_groups:
        warn_loose_exception_groups("open_nursery(strict_exception_groups=False)")
    if strict_exception_groups is None:
        strict_exception_groups = GLOBAL_RUN_CONTEXT.runner.strict_exception_groups
    return NurseryManager(strict_exception_groups=strict_exception_groups)


class Nursery(metaclass=_NoPublicConstructor):
    """A place where child tasks run; create one with :func:`open_nursery`.

    The nursery's ``async with`` block does not end until every child task
    has finished. If a child (or the block itself) raises, the nursery's
    :attr:`cancel_scope` is cancelled, the remaining children are
    cancelled, and all the errors come out together in a
    :exc:`BaseExceptionGroup`.

    Attributes:
      cancel_scope (CancelScope): the scope around the block and all the
        children; cancel it to cancel them all.
    """

    def __init__(
        self, parent_task: Task, cancel_scope: CancelScope, strict_exception_groups: bool
    ) -> None:
        self._parent_task = parent_task
        self._strict_exception_groups = strict_exception_groups
        parent_task._child_nurseries.append(self)
        # The cancel node children inherit: the nursery's own scope.
        self._cancel_status = parent_task._cancel_status
        self.cancel_scope = cancel_scope
        assert self.cancel_scope is self._cancel_status
        self._children: set[Task] = set()
        self._pending_excs: list[BaseException] = []
        # The "nested child" is the body of the `async with` block, which
        # behaves like one more child task.
        self._nested_child_running = True
        self._parent_waiting_in_aexit = False
        self._pending_starts = 0
        self._closed = False

    @property
    def child_tasks(self) -> frozenset[Task]:
        """The child tasks that are still running."""
        return frozenset(self._children)

    @property
    def parent_task(self) -> Task:
        """The task that opened this nursery."""
        return self._parent_task

    def _add_exc(self, exc: BaseException, reason: CancelReason | None) -> None:
        self._pending_excs.append(exc)
        self.cancel_scope._cancel(reason)

    def _check_nursery_closed(self) -> None:
        if not (self._nested_child_running or self._children or self._pending_starts):
            self._closed = True
            if self._parent_waiting_in_aexit:
                self._parent_waiting_in_aexit = False
                GLOBAL_RUN_CONTEXT.runner.reschedule(self._parent_task)

    def _child_finished(self, task: Task, outcome: Outcome[object]) -> None:
        self._children.remove(task)
        if self._closed and not hasattr(self, "_pending_excs"):
            # Abandoned by a misnested nursery: this result has nowhere to go.
            return
        if isinstance(outcome, Error):
            self._add_exc(
                outcome.error,
                CancelReason(
                    source="nursery",
                    source_task=repr(task),
                    reason=f"child task raised exception {outcome.error!r}",
                ),
            )
        self._check_nursery_closed()

    async def _nested_child_finished(
        self, nested_child_exc: BaseException | None
    ) -> BaseException | None:
        if nested_child_exc is not None:
            self._add_exc(
                nested_child_exc,
                CancelReason(
                    source="nursery",
                    source_task=repr(self._parent_task),
                    reason=(
                        "Code block inside nursery contextmanager raised exception "
                        f"{nested_child_exc!r}"
                    ),
                ),
            )
        self._nested_child_running = False
        self._check_nursery_closed()

        if not self._closed:
            # Wait for the children. A KeyboardInterrupt delivered here is
            # kept among the nursery's errors; a Cancelled is not (the
            # children get cancelled and report for themselves).
            def aborted(raise_cancel: RaiseCancelT) -> Abort:
                exn = capture(raise_cancel).error
                if not isinstance(exn, Cancelled):
                    self._add_exc(
                        exn,
                        CancelReason(
                            source="KeyboardInterrupt", source_task=repr(self._parent_task)
                        ),
                    )
                del exn
                return Abort.FAILED

            self._parent_waiting_in_aexit = True
            await wait_task_rescheduled(aborted)
        else:
            # Nothing to wait for: a schedule point that cannot be cancelled;
            # anything else delivered here (KeyboardInterrupt) is kept.
            try:
                await cancel_shielded_checkpoint()
            except BaseException as exc:
                self._add_exc(exc, reason=None)

        popped = self._parent_task._child_nurseries.pop()
        assert popped is self, "Nursery misnesting detected!"
        if self._pending_excs:
            try:
                if not self._strict_exception_groups and len(self._pending_excs) == 1:
                    return self._pending_excs[0]
                exception = BaseExceptionGroup(
                    "Exceptions from corral nursery", self._pending_excs
                )
                if not self._strict_exception_groups:
                    exception.add_note(NONSTRICT_EXCEPTIONGROUP_NOTE)
                return exception
            finally:
                # Break the cycle frame -> exception -> traceback -> frame.
                del self._pending_excs
        return None

    def start_soon(
        self,
        async_fn: Callable[..., Awaitable[object]],
        *args: object,
        name: object = None,
    ) -> None:
        """Create a child task running ``await async_fn(*args)``; return at
        once, before it runs.

        The child inherits the nursery's cancel scopes. ``name`` is for
        debugging (non-strings are converted). Not async: no checkpoint.

        Raises:
          RuntimeError: the nursery is closed (its block has exited and all
            its children are done).
          TypeError: ``async_fn`` is not an async function.
        """
        GLOBAL_RUN_CONTEXT.runner.spawn_impl(async_fn, args, self, name)

    async def start(
        self,
        async_fn: Callable[..., Awaitable[object]],
        *args: object,
        name: object = None,
    ) -> Any:
        """Start a child task and wait until it reports it has initialized.

        ``async_fn`` must accept a ``task_status`` keyword argument and call
        ``task_status.started(value)`` once ready. Until then the child runs
        "under" this call: an exception it raises comes out of
        :meth:`start` (not out of the nursery), and cancelling this call
        cancels it. After ``started()`` it moves into this nursery, and
        :meth:`start` returns ``value``.

        Raises:
          RuntimeError: the nursery is closed, or the child returned without
            calling ``task_status.started()``.
        """
        if self._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        try:
            self._pending_starts += 1
            try:
                # A strict inner nursery, so that we always unwrap exactly
                # its group (pre-started() errors come out bare).
                async with open_nursery(strict_exception_groups=True) as old_nursery:
                    task_status: _TaskStatus[Any] = _TaskStatus(old_nursery, self)
                    thunk = functools.partial(async_fn, task_status=task_status)
                    task = GLOBAL_RUN_CONTEXT.runner.spawn_impl(
                        thunk, args, old_nursery, name
                    )
                    task._eventual_parent_nursery = self
            except BaseExceptionGroup as exc:
                if len(exc.exceptions) == 1:
                    _raise_saving_context(exc.exceptions[0])
                raise CorralInternalError(
                    "Internal nursery should not have multiple tasks. This can be "
                    'caused by the user managing to access the "old" nursery in '
                    "`task_status` and spawning tasks in it.",
                ) from exc
            if task_status._value is _NoStatus:
                raise RuntimeError("child exited without calling task_status.started()")
            return task_status._value
        finally:
            self._pending_starts -= 1
            self._check_nursery_closed()

    def __del__(self) -> None:
        assert not self._children


def _raise_saving_context(exc: BaseException) -> NoReturn:
    # Re-raise `exc` without the current exception clobbering its context.
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context
