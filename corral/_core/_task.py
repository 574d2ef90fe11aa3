"""Task: one coroutine driven by the runner, plus spawn-time helpers."""

from __future__ import annotations

import collections.abc
import contextvars
import functools
import gc
import inspect
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import sniffio
from outcome import capture

from ._cancel import make_raise_cancel
from ._exceptions import CorralInternalError, _NoPublicConstructor
from ._traps import Abort, RaiseCancelT

if TYPE_CHECKING:
    from ._cancel import CancelScope
    from ._nursery import Nursery
    from ._run import Runner


class Task(metaclass=_NoPublicConstructor):
    """A running coroutine, as the scheduler sees it (``corral.lowlevel.Task``).

    Not constructed directly: tasks come from :meth:`corral.Nursery.start_soon`,
    :meth:`corral.Nursery.start` and :func:`corral.lowlevel.spawn_system_task`.

    Attributes:
      name (str): for debugging and introspection.
      coro: the coroutine object the task drives.
      context (contextvars.Context): the context every step runs in.
      custom_sleep_data: free for blocking code to use while the task is
        parked in :func:`~corral.lowlevel.wait_task_rescheduled`; cleared by
        the runner when the task is rescheduled.

    Checkpoint counters (used by ``corral.testing.assert_checkpoints``):
    ``_schedule_points`` is incremented by the runner every time the task
    yields to it (any trap); ``_cancel_points`` every time the task passes a
    cancel point: the runner counts the checkpoint, sleep and
    wait_task_rescheduled traps, and ``checkpoint_if_cancelled`` counts
    itself when it does not yield.
    """

    __slots__ = (
        "__weakref__",
        "_abort_func",
        "_cancel_points",
        "_cancel_status",
        "_child_nurseries",
        "_coro_send",
        "_eventual_parent_nursery",
        "_ki_protected",
        "_name",
        "_next_send",
        "_next_send_fn",
        "_parent_nursery",
        "_runner",
        "_schedule_points",
        "context",
        "coro",
        "custom_sleep_data",
    )

    def __init__(
        self,
        parent_nursery: Nursery | None,
        coro: types.CoroutineType[Any, Any, Any],
        runner: Runner,
        name: object,
        context: contextvars.Context,
        ki_protected: bool,
    ) -> None:
        self._parent_nursery = parent_nursery
        self.coro = coro
        self._runner = runner
        # Whatever spawn was given (function, partial, string...): turned
        # into a string on first use of `name`, which keeps spawning cheap.
        self._name = name
        self.context = context
        self._ki_protected = ki_protected
        # Bound once: the runner resumes the task through this every step.
        self._coro_send = coro.send
        # Invariant: _next_send_fn is None iff the task is not scheduled.
        # When scheduled, _next_send_fn(_next_send) resumes it: normally
        # coro.send with None or an Outcome; coro.throw with an exception to
        # answer a foreign yield.
        self._next_send_fn: Callable[[Any], Any] | None = None
        self._next_send: Any = None
        self._abort_func: Callable[[RaiseCancelT], Abort] | None = None
        self.custom_sleep_data: Any = None
        self._child_nurseries: list[Nursery] = []
        self._eventual_parent_nursery: Nursery | None = None
        self._cancel_points = 0
        self._schedule_points = 0
        # The innermost active cancel scope; None only for the init task
        # before it opens its first scope.
        self._cancel_status: CancelScope = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Task {self.name!r} at {id(self):#x}>"

    @property
    def name(self) -> str:
        """The task's name, for debugging and introspection (assignable)."""
        name = self._name
        if type(name) is not str:
            name = self._name = _name_of(name)
        return name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def parent_nursery(self) -> Nursery | None:
        """The nursery this task runs in (``None`` for the init task)."""
        return self._parent_nursery

    @property
    def eventual_parent_nursery(self) -> Nursery | None:
        """The nursery this task will move to when it calls
        ``task_status.started()``; ``None`` if it was not spawned by
        :meth:`~corral.Nursery.start` or has already started."""
        return self._eventual_parent_nursery

    @property
    def child_nurseries(self) -> list[Nursery]:
        """The nurseries this task has open, outermost first."""
        return list(self._child_nurseries)

    def iter_await_frames(self) -> Iterator[tuple[types.FrameType, int]]:
        """Yield ``(frame, lineno)`` for each coroutine-like object this task
        is suspended in, from :attr:`coro` inwards (the reverse of
        :func:`traceback.walk_stack`'s order)."""
        coro: Any = self.coro
        while coro is not None:
            if hasattr(coro, "cr_frame"):
                if frame := coro.cr_frame:
                    yield frame, frame.f_lineno
                coro = coro.cr_await
            elif hasattr(coro, "gi_frame"):
                if frame := coro.gi_frame:
                    yield frame, frame.f_lineno
                coro = coro.gi_yieldfrom
            elif coro.__class__.__name__ in ("async_generator_athrow", "async_generator_asend"):
                # The async generator is only reachable through the GC.
                for referent in gc.get_referents(coro):
                    if hasattr(referent, "ag_frame"):
                        yield referent.ag_frame, referent.ag_frame.f_lineno
                        coro = referent.ag_await
                        break
                else:  # pragma: no cover
                    return
            else:  # pragma: no cover
                return

    # ------------------------------------------------------------------
    # Cancellation delivery

    def _activate_cancel_status(self, cancel_status: CancelScope | None) -> None:
        old = self._cancel_status
        if old is not None:
            old._tasks.discard(self)
        self._cancel_status = cancel_status  # type: ignore[assignment]
        if cancel_status is not None:
            cancel_status._tasks.add(self)
            if cancel_status.effectively_cancelled:
                self._attempt_delivery_of_any_pending_cancel()

    def _attempt_abort(self, raise_cancel: RaiseCancelT) -> None:
        abort_func = self._abort_func
        assert abort_func is not None
        success = abort_func(raise_cancel)
        if type(success) is not Abort:
            raise CorralInternalError("abort function must return Abort enum")
        # One abort attempt per blocking call, whatever the answer.
        self._abort_func = None
        if success is Abort.SUCCEEDED:
            self._runner.reschedule(self, capture(raise_cancel))

    def _attempt_delivery_of_any_pending_cancel(self) -> None:
        if self._abort_func is None:
            return
        if not self._cancel_status.effectively_cancelled:
            return
        self._attempt_abort(make_raise_cancel(self._cancel_status._cancel_reason))

    def _attempt_delivery_of_pending_ki(self) -> None:
        assert self._runner.ki_pending
        if self._abort_func is None:
            return
        runner = self._runner

        def raise_cancel() -> Any:
            runner.ki_pending = False
            raise KeyboardInterrupt

        self._attempt_abort(raise_cancel)


def _name_of(obj: object) -> str:
    # Trio's naming rule: a string as is; a partial by its function; else
    # "module.qualname", else repr().
    if isinstance(obj, str):
        return obj
    if isinstance(obj, functools.partial):
        obj = obj.func
    try:
        return f"{obj.__module__}.{obj.__qualname__}"  # type: ignore[attr-defined]
    except AttributeError:
        return repr(obj)


def _looks_like_wrong_library(value: object) -> bool:
    # Legacy @asyncio.coroutine generators, asyncio futures, and (by name)
    # tornado Futures and twisted Deferreds.
    if isinstance(value, collections.abc.Generator):
        return True
    if getattr(value, "_asyncio_future_blocking", None) is not None:
        return True
    return value.__class__.__name__ in ("Future", "Deferred")


def coroutine_or_error(
    async_fn: Callable[..., Awaitable[Any]], *args: object
) -> types.CoroutineType[Any, Any, Any]:
    """Call ``async_fn(*args)`` and return the coroutine, turning the usual
    mistakes (passing a coroutine object, a sync function, an asyncio
    future, an async generator) into a :exc:`TypeError` that explains them."""
    # A sync function that returns a coroutine still sees corral as running
    # (inside a run the name is already set: skip the save/restore).
    prev = sniffio.thread_local.name
    if prev != "corral":
        sniffio.thread_local.name = "corral"
    try:
        coro = async_fn(*args)
    except TypeError:
        if isinstance(async_fn, collections.abc.Coroutine):
            async_fn.close()  # avoid the "never awaited" warning
            name = async_fn.__name__
            raise TypeError(
                "corral was expecting an async function, but instead it got "
                f"a coroutine object {async_fn!r}\n"
                "\n"
                "Probably you did something like:\n"
                "\n"
                f"  corral.run({name}(...))            # incorrect!\n"
                f"  nursery.start_soon({name}(...))  # incorrect!\n"
                "\n"
                "Instead, you want (notice the parentheses!):\n"
                "\n"
                f"  corral.run({name}, ...)            # correct!\n"
                f"  nursery.start_soon({name}, ...)  # correct!",
            ) from None
        if _looks_like_wrong_library(async_fn):
            raise TypeError(
                "corral was expecting an async function, but instead it got "
                f"{async_fn!r} - are you trying to use a library written for "
                "asyncio/twisted/tornado or similar? That won't work "
                "without some sort of compatibility shim.",
            ) from None
        raise
    finally:
        if prev != "corral":
            sniffio.thread_local.name = prev

    if type(coro) is types.CoroutineType:
        return coro
    if not isinstance(coro, collections.abc.Coroutine):
        if _looks_like_wrong_library(coro):
            raise TypeError(
                f"corral got unexpected {coro!r} - are you trying to use a "
                "library written for asyncio/twisted/tornado or similar? "
                "That won't work without some sort of compatibility shim.",
            )
        if inspect.isasyncgen(coro):
            raise TypeError(
                f"start_soon expected an async function but got an async generator {coro!r}",
            )
        raise TypeError(
            "corral expected an async function, but {!r} appears to be synchronous".format(
                getattr(async_fn, "__qualname__", async_fn)
            ),
        )
    # Any coroutine (also a Cython/C one, which spawn_impl wraps).
    return coro  # type: ignore[return-value]
