"""The end of a run: whatever goes wrong in the runner's cleanup or in the
I/O wait, the thread is left outside any run, and the error surfaces."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from typing import Any

import pytest
import sniffio

import corral
import corral._core as core
from corral._core._io_manager import MinimalIOManager
from corral._core._run_context import GLOBAL_RUN_CONTEXT


class CloseFailed(Exception):
    pass


class FailingCloseIOManager(MinimalIOManager):
    """The minimal manager, whose close() reports a problem after doing its
    job (as a debug-mode pool does with a leak)."""

    closed = 0

    def close(self) -> None:
        super().close()
        FailingCloseIOManager.closed += 1
        raise CloseFailed("close failed")


def failing_factory(*, guest: bool = False, **_: Any) -> FailingCloseIOManager:
    return FailingCloseIOManager(guest=guest)


def assert_outside_any_run() -> None:
    assert not hasattr(GLOBAL_RUN_CONTEXT, "runner")
    assert not hasattr(GLOBAL_RUN_CONTEXT, "task")
    assert sniffio.thread_local.name is None
    # A new run works.
    assert corral.run(corral.sleep, 0) is None


def test_io_manager_close_error_surfaces_and_run_state_is_cleared() -> None:
    after_run: list[str] = []

    class Recorder(corral.abc.Instrument):
        def after_run(self) -> None:
            after_run.append("after_run")

    async def main() -> int:
        return 42

    with pytest.raises(CloseFailed, match=r"^close failed$") as info:
        core.run(main, io_manager_factory=failing_factory, instruments=[Recorder()])
    # The run's value is lost: the run failed. Nothing else to chain.
    assert info.value.__context__ is None
    # Every cleanup step after the failing one still ran.
    assert after_run == ["after_run"]
    assert_outside_any_run()


def test_io_manager_close_error_chains_the_main_task_error() -> None:
    async def main() -> None:
        raise KeyError("main failed")

    with pytest.raises(CloseFailed, match=r"^close failed$") as info:
        core.run(main, io_manager_factory=failing_factory)
    assert isinstance(info.value.__context__, KeyError)
    assert_outside_any_run()


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_io_manager_close_error_restores_the_sigint_handler() -> None:
    before = signal.getsignal(signal.SIGINT)

    async def main() -> None:
        assert signal.getsignal(signal.SIGINT) is not before

    with pytest.raises(CloseFailed):
        core.run(main, io_manager_factory=failing_factory)
    assert signal.getsignal(signal.SIGINT) is before


def test_buffer_leak_error_at_the_end_of_a_debug_run_leaves_no_run_behind() -> None:
    from corral._io.pool import BufferLeakError

    async def main() -> None:
        pool = core.current_io_manager().pool  # type: ignore[attr-defined]
        await pool.lease(holder="the test")

    with pytest.raises(BufferLeakError, match=r"still leased by 'the test'"):
        corral.run(main, backend="fake", debug=True)
    assert_outside_any_run()


def test_guest_run_delivers_a_close_error_to_done_callback() -> None:
    import queue

    todo: queue.Queue[Any] = queue.Queue()
    done: list[Any] = []

    async def main() -> int:
        return 1

    core.start_guest_run(
        main,
        run_sync_soon_threadsafe=todo.put,
        done_callback=done.append,
        io_manager_factory=failing_factory,
    )
    while not done:
        todo.get(timeout=10)()
    with pytest.raises(CloseFailed, match=r"^close failed$"):
        done[0].unwrap()
    assert_outside_any_run()


# --------------------------------------------------------------------------
# An exception raised by a signal handler during the I/O wait


class Alarm(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
@pytest.mark.parametrize("backend", ["minimal", "io_uring", "epoll", "fake"])
def test_signal_handler_error_during_idle_wait_ends_the_run(backend: str) -> None:
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("signals need the main thread")

    def on_alarm(signum: int, frame: object) -> None:
        raise Alarm("pytest-timeout style alarm")

    async def main() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        await corral.sleep(30)

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with pytest.raises(core.CorralInternalError) as info:
            if backend == "minimal":
                core.run(main)
            else:
                try:
                    corral.run(main, backend=backend)
                except corral.lowlevel.BackendUnavailableError:  # pragma: no cover
                    pytest.skip(f"{backend} is not available here")
        # While the traceback (and with it every frame of the run) is still
        # alive, the thread is already outside the run.
        assert isinstance(info.value.__cause__, Alarm)
        assert not hasattr(GLOBAL_RUN_CONTEXT, "runner")
        assert_outside_any_run()
        del info
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        collect_abandoned_tasks()


def collect_abandoned_tasks() -> None:
    # As in Trio, an internal error abandons the tasks without unwinding
    # them; their coroutines complain when collected. Collect them here,
    # quietly, rather than in some later test.
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        for _ in range(4):
            gc.collect()
    finally:
        sys.unraisablehook = old_hook


def test_signal_handler_error_before_the_loop_starts_leaves_no_run_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stands for a signal handler raising between setup_runner() and the
    # loop's own try/finally: a window no real signal can be aimed at.
    import corral._core._run as run_module

    def unrolled_run(*args: object, **kwargs: object) -> Any:
        raise Alarm("too early")

    monkeypatch.setattr(run_module, "unrolled_run", unrolled_run)
    with pytest.raises(Alarm, match=r"^too early$"):
        core.run(corral.sleep, 0)
    monkeypatch.undo()
    assert_outside_any_run()
