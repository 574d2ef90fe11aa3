"""The Runner: the run loop, task spawning and exit, and the run-level
``current_*`` accessors.

The loop (:func:`unrolled_run`) is a generator that yields the I/O timeout
and receives the I/O manager's event batch: :func:`run` drives it in one
thread, guest mode (``_guest.py``) drives it from host-loop callbacks with the
I/O wait in a worker thread.
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import suppress
from math import inf
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import sniffio
from outcome import Error, Outcome, Value

from .._abc import Clock, Instrument
from ._asyncgens import AsyncGenerators
from ._cancel import CancelReason, CancelScope, Deadlines
from ._clock import SystemClock
from ._deprecate import warn_loose_exception_groups
from ._entry_queue import CorralToken, EntryQueue
from ._exceptions import Cancelled, CorralInternalError, RunFinishedError
from ._instrumentation import Instruments
from ._io_manager import IOManager, make_io_manager
from ._ki import KIManager, enable_ki_protection
from ._nursery import Nursery, open_nursery
from ._parking_lot import GLOBAL_PARKING_LOT_BREAKER
from ._run_context import GLOBAL_RUN_CONTEXT
from ._task import Task, coroutine_or_error
from ._traps import (
    CANCEL_SHIELDED_CHECKPOINT,
    CHECKPOINT,
    Abort,
    PermanentlyDetachCoroutineObject,
    RaiseCancelT,
    SleepUntil,
    WaitTaskRescheduled,
    wait_task_rescheduled,
)

if TYPE_CHECKING:
    from ..testing._mock_clock import MockClock

__all__ = ["Runner", "RunStatistics", "Task", "run", "setup_runner", "unrolled_run"]

RetT = TypeVar("RetT")

# The I/O wait never exceeds a day: huge timeouts overflow some syscalls.
_MAX_TIMEOUT: Final = 24 * 60 * 60

_IDLE_WAITING = 1
_IDLE_AUTOJUMP = 2


@attrs.frozen
class RunStatistics:
    """Run-loop statistics, from :func:`corral.lowlevel.current_statistics`.

    Attributes:
      tasks_living: tasks spawned and not yet exited.
      tasks_runnable: tasks on the run queue.
      seconds_to_next_deadline: until the next deadline or sleep timer
        (negative if one passed and has not been processed; ``inf`` if
        none).
      io_statistics: the I/O manager's ``statistics()`` (has a ``backend``
        attribute).
      run_sync_soon_queue_size: callbacks queued by
        :meth:`CorralToken.run_sync_soon` and not yet run.
    """

    tasks_living: int
    tasks_runnable: int
    seconds_to_next_deadline: float
    io_statistics: object
    run_sync_soon_queue_size: int


def _cancelled_error(scope: CancelScope) -> Error:
    reason = scope._cancel_reason
    if reason is None:
        exc = Cancelled._create(source="unknown", reason="misnesting")
    else:
        exc = Cancelled._create(
            source=reason.source, reason=reason.reason, source_task=reason.source_task
        )
    return Error(exc)


class Runner:
    """All the state of one run. Lives in ``GLOBAL_RUN_CONTEXT.runner``."""

    def __init__(
        self,
        *,
        clock: Clock,
        instruments: Instruments,
        io_manager: IOManager,
        ki_manager: KIManager,
        system_context: contextvars.Context,
        strict_exception_groups: bool,
    ) -> None:
        self.clock = clock
        self.instruments = instruments
        self.io_manager = io_manager
        self.ki_manager = ki_manager
        self.system_context = system_context
        self.strict_exception_groups = strict_exception_groups
        # Run-local values (RunVar).
        self._locals: dict[Any, object] = {}
        # Tasks to step in the next batch. A list swapped out whole at the
        # start of each batch, so appends during the batch go to the next.
        self.runq: list[Task] = []
        self.tasks: set[Task] = set()
        self.deadlines = Deadlines()
        self.init_task: Task | None = None
        self.system_nursery: Nursery | None = None
        self.main_task: Task | None = None
        self.main_task_outcome: Outcome[Any] | None = None
        self.entry_queue = EntryQueue(io_manager)
        self.corral_token: CorralToken | None = None
        self.asyncgens = AsyncGenerators()
        # If everything is idle this long, autojump the MockClock.
        self.clock_autojump_threshold = inf
        self.is_guest = False
        self.guest_tick_scheduled = False
        self.ki_pending = False
        # (cushion, id(task)) -> task, for wait_all_tasks_blocked.
        self.waiting_for_idle: dict[tuple[float, int], Task] = {}

    def force_guest_tick_asap(self) -> None:
        if self.guest_tick_scheduled:
            return
        self.guest_tick_scheduled = True
        self.io_manager.force_wakeup()

    def close(self) -> None:
        """End the run's resources. Every step runs even if an earlier one
        raises (a debug-mode pool reports leaks by raising from
        ``io_manager.close()``); the first error is re-raised at the end."""
        first_error: BaseException | None = None
        # KI protection ends with ki_manager.close(), so it goes last.
        for step in (
            self.io_manager.close,
            self.entry_queue.close,
            self.asyncgens.close,
            self._call_after_run,
            self.ki_manager.close,
        ):
            try:
                step()
            except BaseException as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            try:
                raise first_error
            finally:
                del first_error

    def _call_after_run(self) -> None:
        if "after_run" in self.instruments:
            self.instruments.call("after_run")

    # ------------------------------------------------------------------
    # Accessors (exposed as module-level functions below)

    def current_statistics(self) -> RunStatistics:
        return RunStatistics(
            tasks_living=len(self.tasks),
            tasks_runnable=len(self.runq),
            seconds_to_next_deadline=self.deadlines.next_deadline() - self.clock.current_time(),
            io_statistics=self.io_manager.statistics(),
            run_sync_soon_queue_size=self.entry_queue.size(),
        )

    def current_corral_token(self) -> CorralToken:
        if self.corral_token is None:
            self.corral_token = CorralToken._create(self.entry_queue)
        return self.corral_token

    # ------------------------------------------------------------------
    # Scheduling

    def reschedule(self, task: Task, next_send: Outcome[Any] | None = None) -> None:
        # ``None`` (the default) means "return None from the trap": every
        # trap accepts it, so the common wake-up allocates no Value(None).
        assert task._runner is self
        assert task._next_send_fn is None
        abort_func = task._abort_func
        if type(abort_func) is SleepUntil and abort_func.task is not None:
            # Woken by someone else while sleeping: drop the timer entry.
            abort_func.task = None
            self.deadlines.active -= 1
        task._next_send_fn = task._coro_send
        task._next_send = next_send
        task._abort_func = None
        task.custom_sleep_data = None
        if not self.runq and self.is_guest:
            self.force_guest_tick_asap()
        self.runq.append(task)
        if self.instruments:
            self.instruments.call("task_scheduled", task)

    def reschedule_io(self, task: Task, next_send: Any) -> None:
        """:meth:`reschedule` for the I/O manager's wake-ups, from
        ``process_events`` (in the run thread, inside the KI-protected run
        loop). It skips what cannot apply there: the sanity asserts, and the
        sleep-timer check (a task parked on an I/O operation waits in
        ``wait_task_rescheduled``, never in a sleep)."""
        task._next_send_fn = task._coro_send
        task._next_send = next_send
        task._abort_func = None
        task.custom_sleep_data = None
        runq = self.runq
        if self.is_guest and not runq:
            self.force_guest_tick_asap()
        runq.append(task)
        if self.instruments:
            self.instruments.call("task_scheduled", task)

    def spawn_impl(
        self,
        async_fn: Callable[..., Awaitable[object]],
        args: tuple[Any, ...],
        nursery: Nursery | None,
        name: object,
        *,
        system_task: bool = False,
        context: contextvars.Context | None = None,
    ) -> Task:
        if nursery is not None and nursery._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        if nursery is None:
            assert self.init_task is None
        if context is None:
            context = self.system_context.copy() if system_task else contextvars.copy_context()
        coro = context.run(coroutine_or_error, async_fn, *args)
        if name is None:
            name = async_fn
        if getattr(coro, "cr_frame", None) is None:
            # Implemented in C or Cython: give it a Python frame, which the
            # KeyboardInterrupt machinery and tracebacks rely on.
            async def python_wrapper(orig_coro: Awaitable[Any]) -> Any:
                return await orig_coro

            coro = python_wrapper(coro)  # type: ignore[assignment]  # a real coroutine
        task: Task = Task._create(nursery, coro, self, name, context, system_task)
        self.tasks.add(task)
        if nursery is not None:
            nursery._children.add(task)
            status = nursery._cancel_status
            task._cancel_status = status
            status._tasks.add(task)
        if self.instruments:
            self.instruments.call("task_spawned", task)
        # First step: send None into the fresh coroutine.
        task._next_send_fn = task._coro_send
        task._next_send = None
        if not self.runq and self.is_guest:
            self.force_guest_tick_asap()
        self.runq.append(task)
        if self.instruments:
            self.instruments.call("task_scheduled", task)
        return task

    def task_exited(self, task: Task, outcome: Outcome[Any]) -> None:
        status = task._cancel_status
        if (
            not task._child_nurseries
            and status is not None
            and not status.abandoned_by_misnesting
            and task is not self.init_task
            and task is not self.main_task
            and not GLOBAL_PARKING_LOT_BREAKER
        ):
            # Fast path: an ordinary task finishing in good order.
            status._tasks.discard(task)
            task._cancel_status = None  # type: ignore[assignment]
            self.tasks.remove(task)
            task._parent_nursery._child_finished(task, outcome)  # type: ignore[union-attr]
            if self.instruments:
                self.instruments.call("task_exited", task)
            return
        if task._child_nurseries:
            for nursery in task._child_nurseries:
                nursery.cancel_scope._cancel(
                    CancelReason(
                        source="nursery",
                        reason=(
                            "Parent Task exited prematurely, abandoning this nursery "
                            "without exiting it properly."
                        ),
                        source_task=repr(task),
                    )
                )
                nursery._closed = True

        lots = GLOBAL_PARKING_LOT_BREAKER.pop(task, None)
        if lots:
            for lot in lots:
                lot.break_lot(task)

        status = task._cancel_status
        if (
            status is not None and status.abandoned_by_misnesting and status._parent is None
        ) or task._child_nurseries:
            reason = "Nursery" if task._child_nurseries else "Cancel scope"
            # The scope around this task's nursery closed before the task
            # exited: fail the task, since nothing else may report it.
            try:
                raise RuntimeError(
                    f"{reason} stack corrupted: {reason} surrounding "
                    f"{task!r} was closed before the task exited\n"
                    f"{_misnesting_advice()}",
                )
            except RuntimeError as new_exc:
                if isinstance(outcome, Error):
                    new_exc.__context__ = outcome.error
                outcome = Error(new_exc)

        task._activate_cancel_status(None)
        self.tasks.remove(task)
        if task is self.init_task:
            # The init task crashing means corral itself is broken; the
            # error becomes a CorralInternalError in unrolled_run.
            outcome.unwrap()
            if self.tasks:  # pragma: no cover
                raise CorralInternalError
        else:
            if task is self.main_task:
                self.main_task_outcome = outcome
                outcome = Value(None)
            assert task._parent_nursery is not None, task
            task._parent_nursery._child_finished(task, outcome)

        if self.instruments:
            self.instruments.call("task_exited", task)

    def spawn_system_task(
        self,
        async_fn: Callable[..., Awaitable[object]],
        *args: object,
        name: object = None,
        context: contextvars.Context | None = None,
    ) -> Task:
        return self.spawn_impl(
            async_fn, args, self.system_nursery, name, system_task=True, context=context
        )

    async def init(self, async_fn: Callable[..., Awaitable[object]], args: tuple[Any, ...]) -> None:
        # The run_sync_soon task lives in the outermost nursery, so it
        # outlives every other task (callbacks may run until the very end).
        async with open_nursery() as run_sync_soon_nursery:
            async with open_nursery() as system_nursery:
                self.system_nursery = system_nursery
                async with open_nursery() as main_task_nursery:
                    try:
                        self.main_task = self.spawn_impl(async_fn, args, main_task_nursery, None)
                    except BaseException as exc:
                        self.main_task_outcome = Error(exc)
                        return
                    self.spawn_impl(
                        self.entry_queue.task,
                        (),
                        run_sync_soon_nursery,
                        "<CorralToken.run_sync_soon task>",
                        system_task=True,
                    )
                system_nursery.cancel_scope._cancel(
                    CancelReason(
                        source="shutdown",
                        reason="main task done, shutting down system tasks",
                        source_task=repr(self.init_task),
                    )
                )
            # Async generators still alive get finalized while the entry task
            # can still run callbacks for them.
            await self.asyncgens.finalize_remaining(self)
            run_sync_soon_nursery.cancel_scope._cancel(
                CancelReason(
                    source="shutdown",
                    reason="main task done, shutting down run_sync_soon callbacks",
                    source_task=repr(self.init_task),
                )
            )

    # ------------------------------------------------------------------
    # KeyboardInterrupt

    def deliver_ki(self) -> None:
        # Called from the SIGINT handler (any bytecode boundary).
        self.ki_pending = True
        with suppress(RunFinishedError):
            self.entry_queue.run_sync_soon(self._deliver_ki_cb)

    def _deliver_ki_cb(self) -> None:
        if not self.ki_pending:
            return
        assert self.main_task is not None
        if self.main_task_outcome is not None:
            # Already exiting; run() checks ki_pending on its way out.
            return
        self.main_task._attempt_delivery_of_pending_ki()

    # ------------------------------------------------------------------
    # Quiescence

    async def wait_all_tasks_blocked(self, cushion: float = 0.0) -> None:
        task = GLOBAL_RUN_CONTEXT.task
        key = (cushion, id(task))
        self.waiting_for_idle[key] = task

        def abort(_: RaiseCancelT) -> Abort:
            del self.waiting_for_idle[key]
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)


def _misnesting_advice() -> str:
    from ._cancel import MISNESTING_ADVICE

    return MISNESTING_ADVICE


def setup_runner(
    clock: Clock | None,
    instruments: Sequence[Instrument],
    restrict_keyboard_interrupt_to_checkpoints: bool,
    strict_exception_groups: bool,
    io_manager_factory: Callable[..., IOManager] | None,
    *,
    guest: bool = False,
    install_wakeup_fd: bool = True,
) -> Runner:
    """Create a Runner and install it as the thread's current run.

    ``install_wakeup_fd``: whether the I/O manager installs its wakeup
    socket with :func:`signal.set_wakeup_fd` (false for a guest run whose
    host uses it; see :func:`~corral._core._io_manager.make_io_manager`)."""
    if hasattr(GLOBAL_RUN_CONTEXT, "runner"):
        raise RuntimeError("Attempted to call run() from inside a run()")
    if clock is None:
        clock = SystemClock()
    instrument_group = Instruments(instruments)
    io_manager = make_io_manager(
        io_manager_factory, guest=guest, install_wakeup_fd=install_wakeup_fd
    )
    ki_manager = KIManager()
    runner = Runner(
        clock=clock,
        instruments=instrument_group,
        io_manager=io_manager,
        ki_manager=ki_manager,
        system_context=contextvars.copy_context(),
        strict_exception_groups=strict_exception_groups,
    )
    runner.asyncgens.install_hooks(runner)
    # KI protection starts here: before any global state changes.
    ki_manager.install(runner.deliver_ki, restrict_keyboard_interrupt_to_checkpoints)
    GLOBAL_RUN_CONTEXT.runner = runner
    return runner


def run(
    async_fn: Callable[..., Awaitable[RetT]],
    *args: object,
    clock: Clock | None = None,
    instruments: Sequence[Instrument] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
    io_manager_factory: Callable[..., IOManager] | None = None,
) -> RetT:
    """Run ``await async_fn(*args)`` in a new corral run and return its
    result (or raise its exception).

    Args:
      clock: ``None`` for the system clock, or a :class:`corral.abc.Clock`
        such as :class:`corral.testing.MockClock`.
      instruments: :class:`corral.abc.Instrument` objects to install.
      restrict_keyboard_interrupt_to_checkpoints: if true, Control-C raises
        :exc:`KeyboardInterrupt` only at checkpoints (like a cancellation);
        if false (default), it interrupts unprotected code at once.
      strict_exception_groups: if true (default), nurseries always wrap
        errors in a :exc:`BaseExceptionGroup`. False is deprecated, as in
        Trio, and emits a :exc:`DeprecationWarning`.
      io_manager_factory: called as ``factory(guest=False)`` to build the
        run's I/O manager (see ``docs/internals.md``); ``None`` for the
        minimal manager that only sleeps and wakes.

    Raises:
      RuntimeError: called from inside a run.
      corral.CorralInternalError: corral itself crashed (a bug).
      KeyboardInterrupt: Control-C was pressed and not handled.
      Anything ``async_fn`` raises.
      Anything the run's cleanup raises (the I/O manager's ``close()``,
        e.g. a debug-mode ``BufferLeakError``), as is: it replaces the
        run's result, and the run's own error, if any, is its
        ``__context__``. The thread is outside the run either way, so the
        next :func:`run` works.
    """
    __tracebackhide__ = True
    if not strict_exception_groups:
        warn_loose_exception_groups("corral.run(..., strict_exception_groups=False)")
    runner = setup_runner(
        clock,
        instruments,
        restrict_keyboard_interrupt_to_checkpoints,
        strict_exception_groups,
        io_manager_factory,
    )
    prev_library, sniffio.thread_local.name = sniffio.thread_local.name, "corral"
    try:
        gen = unrolled_run(runner, async_fn, args, inline_io=True)
        for _ in gen:  # pragma: no cover - inline_io never yields
            raise AssertionError("the inline run loop yielded")
    except BaseException:
        # The loop's own try/finally leaves the run. Only an exception from a
        # signal handler that fires before the loop entered it (or before it
        # was even created) can get here with the run still installed.
        if getattr(GLOBAL_RUN_CONTEXT, "runner", None) is runner:
            with suppress(BaseException):
                runner.close()
            GLOBAL_RUN_CONTEXT.__dict__.clear()
        raise
    finally:
        sniffio.thread_local.name = prev_library
    outcome = runner.main_task_outcome
    if type(outcome) is Value:
        return outcome.value  # type: ignore[no-any-return]
    if type(outcome) is Error:
        raise outcome.error
    raise AssertionError(outcome)  # pragma: no cover


@enable_ki_protection
def unrolled_run(
    runner: Runner,
    async_fn: Callable[..., Awaitable[object]],
    args: tuple[Any, ...],
    host_uses_signal_set_wakeup_fd: bool = False,
    *,
    inline_io: bool = False,
) -> Generator[float, Any, None]:
    """The run loop, as a generator: yields the I/O timeout, receives the
    I/O manager's event batch (guest mode). With ``inline_io`` it calls
    ``get_events`` itself and never yields, which saves a generator round
    trip per loop turn in an ordinary run."""
    __tracebackhide__ = True
    try:
        if "before_run" in runner.instruments:
            runner.instruments.call("before_run")
        runner.clock.start_clock()
        runner.init_task = runner.spawn_impl(
            runner.init, (async_fn, args), None, "<init>", system_task=True
        )

        deadlines = runner.deadlines
        io_manager = runner.io_manager
        get_events = io_manager.get_events
        entry_queue = runner.entry_queue
        clock = runner.clock
        tasks = runner.tasks
        run_ctx = GLOBAL_RUN_CONTEXT
        # Locals: the dispatch below runs once per task step.
        checkpoint_msg = CHECKPOINT
        shielded_checkpoint_msg = CANCEL_SHIELDED_CHECKPOINT
        wait_msg_type = WaitTaskRescheduled
        sleep_msg_type = SleepUntil

        instruments = runner.instruments  # mutated in place, never replaced
        waiting_for_idle = runner.waiting_for_idle  # likewise
        while tasks:
            idle_primed = 0
            if runner.runq:
                timeout: float = 0
            else:
                timeout = clock.deadline_to_sleep_time(deadlines.next_deadline())
                if timeout > _MAX_TIMEOUT:
                    timeout = _MAX_TIMEOUT
                elif timeout < 0:
                    timeout = 0
                if waiting_for_idle:
                    cushion = min(key[0] for key in waiting_for_idle)
                    if cushion < timeout:
                        timeout = cushion
                        idle_primed = _IDLE_WAITING
                elif runner.clock_autojump_threshold < timeout:
                    timeout = runner.clock_autojump_threshold
                    idle_primed = _IDLE_AUTOJUMP

            if instruments and "before_io_wait" in instruments:
                instruments.call("before_io_wait", timeout)

            # Every turn polls for I/O, even with tasks runnable (as Trio
            # does): one checkpoint is always enough for a completion that
            # has arrived to be processed.
            if inline_io:
                events = get_events(timeout)
            else:
                events = yield timeout
            io_manager.process_events(events)
            if entry_queue.parked_task is not None and (
                entry_queue.queue or entry_queue.idempotent_queue
            ):
                parked = entry_queue.parked_task
                entry_queue.parked_task = None
                runner.reschedule(parked)

            if instruments and "after_io_wait" in instruments:
                instruments.call("after_io_wait", timeout)

            # Read the clock only when something could be due, and once.
            heap = deadlines._heap
            if heap:
                now = clock.current_time()
                if heap[0][0] <= now and deadlines.expire(now, runner):
                    idle_primed = 0

            # Idle means: nothing runnable, and the I/O wait ran its whole
            # timeout. In guest mode the two can disagree (the host moved a
            # deadline, or rescheduled a task after the wait), so check both.
            if idle_primed and not runner.runq and not events:
                if idle_primed == _IDLE_WAITING:
                    for key in sorted(waiting_for_idle):
                        if key[0] == cushion:
                            runner.reschedule(waiting_for_idle.pop(key))
                else:
                    mock_clock: MockClock = runner.clock  # type: ignore[assignment]
                    mock_clock._autojump()

            # Step every task that is runnable now; tasks made runnable
            # during the batch wait for the next turn, so I/O is never
            # starved. Order is FIFO.
            batch = runner.runq
            if not batch:
                continue
            next_runq: list[Task] = []
            runner.runq = next_runq
            requeue = next_runq.append
            for task in batch:
                run_ctx.task = task
                if instruments and "before_task_step" in instruments:
                    instruments.call("before_task_step", task)
                send_fn = task._next_send_fn
                send = task._next_send
                task._next_send_fn = None
                task._next_send = None
                if send is checkpoint_msg:
                    # A checkpoint's cancel point comes after its schedule
                    # point, so it sees deadlines processed this turn.
                    send = None
                    if runner.ki_pending and task is runner.main_task:
                        runner.ki_pending = False
                        send = Error(KeyboardInterrupt())
                    elif task._cancel_status.effectively_cancelled:
                        send = _cancelled_error(task._cancel_status)
                final_outcome: Outcome[Any] | None = None
                try:
                    msg = task.context.run(send_fn, send)  # type: ignore[arg-type]
                except StopIteration as stop:
                    final_outcome = Value(stop.value)
                except BaseException as task_exc:
                    # Drop this frame from the traceback.
                    tb = task_exc.__traceback__
                    if tb is not None:
                        tb = tb.tb_next
                    final_outcome = Error(task_exc.with_traceback(tb))
                    del tb
                else:
                    # Dispatch on the trap message, most frequent first.
                    task._schedule_points += 1
                    if msg is checkpoint_msg:
                        task._cancel_points += 1
                        task._next_send_fn = task._coro_send
                        task._next_send = checkpoint_msg
                        requeue(task)
                        if instruments and "task_scheduled" in instruments:
                            instruments.call("task_scheduled", task)
                    elif msg is shielded_checkpoint_msg:
                        task._next_send_fn = task._coro_send
                        requeue(task)
                        if instruments and "task_scheduled" in instruments:
                            instruments.call("task_scheduled", task)
                    elif type(msg) is wait_msg_type:
                        task._cancel_points += 1
                        task._abort_func = msg.abort_func
                        # KeyboardInterrupt is "outside" every cancel scope,
                        # so it goes first.
                        if runner.ki_pending and task is runner.main_task:
                            task._attempt_delivery_of_pending_ki()
                        if task._cancel_status.effectively_cancelled:
                            task._attempt_delivery_of_any_pending_cancel()
                    elif type(msg) is sleep_msg_type:
                        task._cancel_points += 1
                        msg.task = task
                        task._abort_func = msg
                        deadlines.add(msg.deadline, msg)
                        if runner.ki_pending and task is runner.main_task:
                            task._attempt_delivery_of_pending_ki()
                        if task._cancel_status.effectively_cancelled:
                            task._attempt_delivery_of_any_pending_cancel()
                    elif type(msg) is PermanentlyDetachCoroutineObject:
                        runner.task_exited(task, msg.final_outcome)
                    else:
                        exc = TypeError(
                            f"corral.run received unrecognized yield message {msg!r}. "
                            "Are you trying to use a library written for some "
                            "other framework like asyncio? That won't work "
                            "without some kind of compatibility shim.",
                        )
                        # A foreign library will not unwrap an Outcome:
                        # throw the error in directly.
                        runner.reschedule(task, exc)  # type: ignore[arg-type]
                        task._next_send_fn = task.coro.throw
                        del exc
                    del msg
                if final_outcome is not None:
                    # Outside the except blocks, so that the task's error does
                    # not become the __context__ of anything raised here.
                    runner.task_exited(task, final_outcome)
                    final_outcome = None
                if instruments and "after_task_step" in instruments:
                    instruments.call("after_task_step", task)
            del run_ctx.task, task, batch, send, send_fn

    except GeneratorExit:
        # Guest mode: the host dropped the generator without finishing.
        warnings.warn(
            RuntimeWarning(
                "corral guest run got abandoned without properly finishing... "
                "weird stuff might happen",
            ),
            stacklevel=1,
        )
    except CorralInternalError:
        raise
    except BaseException as exc:
        raise CorralInternalError("internal error in corral - please file a bug!") from exc
    finally:
        # The thread leaves the run whatever runner.close() raises: a failed
        # cleanup must not make every later run() in this thread fail with
        # "Attempted to call run() from inside a run()".
        close_error: BaseException | None = None
        try:
            runner.close()
        except BaseException as exc:
            close_error = exc
        GLOBAL_RUN_CONTEXT.__dict__.clear()
        # After runner.close() turned KI protection off, so no KI can set
        # ki_pending after this check.
        if runner.ki_pending:
            ki = KeyboardInterrupt()
            if isinstance(runner.main_task_outcome, Error):
                ki.__context__ = runner.main_task_outcome.error
            runner.main_task_outcome = Error(ki)
        if close_error is not None:
            # As Trio lets an error from its cleanup escape run(): the
            # cleanup error is what run() raises (raw, not wrapped in
            # CorralInternalError: a leak report is about the user's code).
            # The run's own error, if any, stays visible as its context.
            if close_error.__context__ is None and isinstance(runner.main_task_outcome, Error):
                close_error.__context__ = runner.main_task_outcome.error
            try:
                raise close_error
            finally:
                del close_error
