"""start_guest_run: corral as a guest inside another event loop.

The host loop runs corral's scheduler in short *ticks* (callbacks it is
given through ``run_sync_soon_*``); each tick runs the loop generator
(:func:`~corral._core._run.unrolled_run`) up to its next I/O wait. The
wait itself (``io_manager.get_events``) runs in a worker thread
(``start_thread_soon``) so the host keeps running; when it returns, the
worker hands the batch back to the host thread, which runs the next tick.

:class:`GuestState` holds the generator. The Runner must never reference it:
if the host abandons the run, the generator gets garbage collected and its
``GeneratorExit`` handler warns about it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sniffio
from outcome import Error, Outcome, Value, capture

from .._abc import Clock, Instrument
from ._deprecate import warn_loose_exception_groups
from ._exceptions import CorralInternalError
from ._io_manager import IOManager
from ._run import Runner, setup_runner, unrolled_run
from ._thread_cache import start_thread_soon

RetT = TypeVar("RetT")


class GuestState:
    """The callback chain of one guest run (see the module docstring)."""

    def __init__(
        self,
        runner: Runner,
        run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
        run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object],
        done_callback: Callable[[Outcome[Any]], object],
        unrolled_run_gen: Any,
    ) -> None:
        self.runner = runner
        self.run_sync_soon_threadsafe = run_sync_soon_threadsafe
        self.run_sync_soon_not_threadsafe = run_sync_soon_not_threadsafe
        self.done_callback = done_callback
        self.unrolled_run_gen = unrolled_run_gen
        self.unrolled_run_next_send: Outcome[Any] = Value(None)

    def guest_tick(self) -> None:
        prev_library, sniffio.thread_local.name = sniffio.thread_local.name, "corral"
        try:
            timeout = self.unrolled_run_next_send.send(self.unrolled_run_gen)
        except StopIteration:
            assert self.runner.main_task_outcome is not None
            self.done_callback(self.runner.main_task_outcome)
            return
        except BaseException as exc:
            # CorralInternalError, or an error from the runner's cleanup
            # (an I/O manager's close() reporting a leak): the run is over
            # either way, and the host must hear about it.
            self.done_callback(Error(exc))
            return
        finally:
            sniffio.thread_local.name = prev_library

        # Poll first: if something is ready (or we must not block), skip the
        # round trip through a worker thread.
        events_outcome: Outcome[Any] = capture(self.runner.io_manager.get_events, 0)
        if (
            timeout <= 0
            or isinstance(events_outcome, Error)
            or (isinstance(events_outcome, Value) and events_outcome.value)
        ):
            self.unrolled_run_next_send = events_outcome
            self.runner.guest_tick_scheduled = True
            self.run_sync_soon_not_threadsafe(self.guest_tick)
        else:
            self.runner.guest_tick_scheduled = False

            def get_events() -> object:
                return self.runner.io_manager.get_events(timeout)

            def deliver(events_outcome: Outcome[Any]) -> None:
                def in_main_thread() -> None:
                    self.unrolled_run_next_send = events_outcome
                    self.runner.guest_tick_scheduled = True
                    self.guest_tick()

                self.run_sync_soon_threadsafe(in_main_thread)

            start_thread_soon(get_events, deliver, name="corral guest I/O wait")


def start_guest_run(
    async_fn: Callable[..., Awaitable[RetT]],
    *args: object,
    run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
    done_callback: Callable[[Outcome[RetT]], object],
    run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object] | None = None,
    host_uses_signal_set_wakeup_fd: bool = False,
    clock: Clock | None = None,
    instruments: Sequence[Instrument] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
    io_manager_factory: Callable[..., IOManager] | None = None,
) -> None:
    """Start a corral run as a *guest* of another event loop (the *host*)
    and return at once.

    The host keeps running its own loop; corral's scheduler runs in
    callbacks on it, and only the I/O wait happens in a worker thread. One
    guest run per host loop at a time. Let the run finish before stopping
    the host.

    When this returns, sync corral functions (``current_time``,
    ``spawn_system_task``, ``current_corral_token``...) work from the host
    thread. Everything that ``async_fn`` returns or raises goes to
    ``done_callback`` as an :class:`outcome.Outcome`.

    Args:
      run_sync_soon_threadsafe: ``f(fn)`` makes the host call ``fn()`` on
        its next loop pass; must work from any thread.
      done_callback: called with the run's outcome when it finishes.
      run_sync_soon_not_threadsafe: like ``run_sync_soon_threadsafe`` but
        only called from the host thread; optional, a faster variant.
      host_uses_signal_set_wakeup_fd: pass true if the host loop uses
        :func:`signal.set_wakeup_fd` (asyncio does); corral then leaves it
        alone. If false (the default, as in Trio), corral installs its own
        wakeup fd for the run (main thread only) and warns if one was
        already installed.
      Other arguments: as for :func:`corral.run` (``io_manager_factory`` is
        called with ``guest=True``, and ``install_wakeup_fd=True`` unless
        the host uses ``set_wakeup_fd``).

    Raises:
      RuntimeError: already inside a run in this thread.
      corral.CorralInternalError: the run failed while starting.
    """
    if not strict_exception_groups:
        warn_loose_exception_groups(
            "corral.start_guest_run(..., strict_exception_groups=False)"
        )
    runner = setup_runner(
        clock,
        instruments,
        restrict_keyboard_interrupt_to_checkpoints,
        strict_exception_groups,
        io_manager_factory,
        guest=True,
        install_wakeup_fd=not host_uses_signal_set_wakeup_fd,
    )
    runner.is_guest = True
    runner.guest_tick_scheduled = True
    if run_sync_soon_not_threadsafe is None:
        run_sync_soon_not_threadsafe = run_sync_soon_threadsafe
    guest_state = GuestState(
        runner=runner,
        run_sync_soon_threadsafe=run_sync_soon_threadsafe,
        run_sync_soon_not_threadsafe=run_sync_soon_not_threadsafe,
        done_callback=done_callback,
        unrolled_run_gen=unrolled_run(
            runner,
            async_fn,
            args,
            host_uses_signal_set_wakeup_fd=host_uses_signal_set_wakeup_fd,
        ),
    )
    # Run the first few ticks synchronously, so that the system nursery exists
    # when we return. No user code runs yet, so only an internal error can
    # come out of here.
    next_send: Any = None
    for _tick in range(5):
        if runner.system_nursery is not None:
            break
        try:
            timeout = guest_state.unrolled_run_gen.send(next_send)
        except StopIteration:  # pragma: no cover
            raise CorralInternalError(
                "Guest runner exited before system nursery was initialized"
            ) from None
        if timeout != 0:  # pragma: no cover
            guest_state.unrolled_run_gen.throw(
                CorralInternalError("Guest runner blocked before system nursery was initialized")
            )
        # What get_events would return with nothing to report.
        next_send = 0
    else:  # pragma: no cover
        guest_state.unrolled_run_gen.throw(
            CorralInternalError(
                "Guest runner yielded too many times before system nursery was initialized"
            )
        )
    guest_state.unrolled_run_next_send = Value(next_send)
    run_sync_soon_not_threadsafe(guest_state.guest_tick)
