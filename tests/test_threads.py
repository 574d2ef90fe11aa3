"""Tests for to_thread / from_thread (corral/_threads.py)."""

from __future__ import annotations

import contextvars
import queue
import re
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import Any, NoReturn

import outcome
import pytest
import sniffio

import corral
from corral import CapacityLimiter, Event, from_thread, to_thread
from corral._core import _thread_cache
from corral.lowlevel import (
    Abort,
    CorralToken,
    current_corral_token,
    current_task,
    currently_ki_protected,
    start_thread_soon,
    wait_task_rescheduled,
)
from corral.testing import (
    active_thread_count,
    assert_checkpoints,
    wait_all_tasks_blocked,
    wait_all_threads_completed,
)


async def _wait_thread(thread: threading.Thread) -> None:
    # Waiting for a foreign thread without blocking the run: poll.
    while thread.is_alive():
        await corral.sleep(0.005)


# ---------------------------------------------------------------- from a foreign thread


async def test_from_foreign_thread_with_token() -> None:
    run_thread = threading.current_thread()
    token = current_corral_token()

    async def check(call: Callable[[], Any], expected: tuple[str, Any]) -> None:
        record: list[tuple[str, Any]] = []

        def thread_fn() -> None:
            try:
                record.append(("got", call()))
            except BaseException as exc:
                record.append(("error", type(exc)))

        thread = threading.Thread(target=thread_fn, daemon=True)
        thread.start()
        await _wait_thread(thread)
        assert record == [expected]

    seen: list[threading.Thread] = []

    def f1() -> int:
        assert not currently_ki_protected()
        seen.append(threading.current_thread())
        return 2

    def f2() -> NoReturn:
        raise ValueError

    async def f3() -> int:
        assert not currently_ki_protected()
        await corral.lowlevel.checkpoint()
        seen.append(threading.current_thread())
        return 3

    async def f4() -> NoReturn:
        await corral.lowlevel.checkpoint()
        raise KeyError

    await check(partial(from_thread.run_sync, f1, corral_token=token), ("got", 2))
    await check(partial(from_thread.run_sync, f2, corral_token=token), ("error", ValueError))
    await check(partial(from_thread.run, f3, corral_token=token), ("got", 3))
    await check(partial(from_thread.run, f4, corral_token=token), ("error", KeyError))
    # trio_token= is accepted for ported code.
    await check(partial(from_thread.run_sync, f1, trio_token=token), ("got", 2))
    assert seen == [run_thread] * 3


def test_from_foreign_thread_errors() -> None:
    def nothing() -> None:  # pragma: no cover
        raise AssertionError

    async def anothing() -> None:  # pragma: no cover
        raise AssertionError

    with pytest.raises(
        RuntimeError, match=r"^this thread wasn't created by corral, pass kwarg corral_token=\.\.\.$"
    ):
        from_thread.run_sync(nothing)
    with pytest.raises(
        RuntimeError, match=r"^this thread wasn't created by corral, pass kwarg corral_token=\.\.\.$"
    ):
        from_thread.run(anothing)
    with pytest.raises(
        RuntimeError, match=r"^Passed kwarg corral_token is not of type CorralToken$"
    ):
        from_thread.run_sync(nothing, corral_token="not a token")  # type: ignore[arg-type]
    with pytest.raises(
        RuntimeError, match=r"^this thread wasn't created by corral, can't check for cancellation$"
    ):
        from_thread.check_cancelled()

    # Also in a cached worker thread that to_thread did not start.
    q: queue.Queue[outcome.Outcome[None]] = queue.Queue()
    start_thread_soon(from_thread.check_cancelled, q.put)
    with pytest.raises(RuntimeError, match=r"^this thread wasn't created by corral"):
        q.get(timeout=10).unwrap()


async def test_from_thread_in_the_run_thread_refuses() -> None:
    def nothing() -> None:  # pragma: no cover
        raise AssertionError

    async def anothing() -> None:  # pragma: no cover
        raise AssertionError

    message = r"^this is a blocking function; call it from a thread$"
    with pytest.raises(RuntimeError, match=message):
        from_thread.run_sync(nothing, corral_token=current_corral_token())
    with pytest.raises(RuntimeError, match=message):
        from_thread.run(anothing, corral_token=current_corral_token())
    # Without a token the missing-token error comes first.
    with pytest.raises(RuntimeError, match=r"^this thread wasn't created by corral"):
        from_thread.run_sync(nothing)


def test_from_thread_run_is_cancelled_when_run_ends() -> None:
    record: list[str] = []
    sleeping = threading.Event()

    async def parked_forever() -> None:
        record.append("sleeping")
        sleeping.set()
        await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)

    def thread_fn(token: CorralToken) -> None:
        try:
            from_thread.run(parked_forever, corral_token=token)
        except corral.Cancelled:
            record.append("cancelled")

    async def main() -> threading.Thread:
        thread = threading.Thread(target=thread_fn, args=(current_corral_token(),))
        thread.start()
        while not sleeping.is_set():
            await corral.sleep(0.005)
        return thread

    thread = corral.run(main)
    thread.join(timeout=10)
    assert record == ["sleeping", "cancelled"]


def test_from_thread_after_run_finished() -> None:
    async def get_token() -> CorralToken:
        return current_corral_token()

    token = corral.run(get_token)

    async def afn() -> None:  # pragma: no cover
        raise AssertionError

    with pytest.raises(corral.RunFinishedError):
        from_thread.run_sync(lambda: None, corral_token=token)
    with pytest.raises(corral.RunFinishedError):
        from_thread.run(afn, corral_token=token)


def test_from_thread_run_during_shutdown() -> None:
    record: list[str] = []
    saved: list[AsyncGenerator[None, None]] = []

    async def agen(token: CorralToken | None) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with corral.CancelScope(shield=True):
                try:
                    await to_thread.run_sync(
                        partial(from_thread.run, corral.sleep, 0, corral_token=token)
                    )
                except corral.RunFinishedError:
                    record.append("finished")
                else:
                    record.append("clean")

    async def main(use_system_task: bool) -> None:
        saved.append(agen(current_corral_token() if use_system_task else None))
        await saved[-1].asend(None)

    # With a token the call needs a new system task: the system nursery is
    # closed by the time async generators are finalized.
    corral.run(main, True)
    # Without one the waiting task runs it: that still works.
    corral.run(main, False)
    assert record == ["finished", "clean"]


# ---------------------------------------------------------------- to_thread


async def test_to_thread_basics() -> None:
    run_thread = threading.current_thread()

    def f(x: int) -> tuple[int, threading.Thread]:
        return x, threading.current_thread()

    x, worker = await to_thread.run_sync(f, 1)
    assert x == 1
    assert worker is not run_thread

    def g() -> NoReturn:
        raise ValueError(threading.current_thread().name)

    with pytest.raises(ValueError) as info:
        await to_thread.run_sync(g)
    assert info.value.args[0] != run_thread.name


async def test_to_thread_checkpoints_and_checks_cancel_first() -> None:
    ran: list[bool] = []
    with corral.CancelScope() as scope:
        scope.cancel()
        await to_thread.run_sync(lambda: ran.append(True))
    assert scope.cancelled_caught
    assert ran == []


async def test_to_thread_rejects_async_function() -> None:
    async def async_fn() -> None:  # pragma: no cover
        pass

    with pytest.raises(
        TypeError,
        match=r"^corral expected a sync function, but '.*async_fn' appears to be asynchronous$",
    ):
        await to_thread.run_sync(async_fn)  # type: ignore[arg-type]


async def test_to_thread_bad_abandon_on_cancel_fails_early() -> None:
    class BadBool:
        def __bool__(self) -> bool:
            raise NotImplementedError

    ran: list[bool] = []
    with pytest.raises(NotImplementedError):
        await to_thread.run_sync(lambda: ran.append(True), abandon_on_cancel=BadBool())  # type: ignore[arg-type]
    assert ran == []
    assert to_thread.current_default_thread_limiter().borrowed_tokens == 0


async def test_to_thread_thread_name() -> None:
    def name() -> str:
        return threading.current_thread().name

    assert await to_thread.run_sync(name, thread_name="my thread") == "my thread"
    expected = f"name from {current_task().name}"
    assert await to_thread.run_sync(name) == expected
    # A callable without __name__.
    assert await to_thread.run_sync(partial(name)) == f"None from {current_task().name}"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, which Windows lacks")
async def test_to_thread_os_thread_name() -> None:
    def os_name() -> str:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()

    assert await to_thread.run_sync(os_name, thread_name="worker-xyz") == "worker-xyz"


async def test_to_thread_cancellation_abandon() -> None:
    release = threading.Event()
    state: list[str] = []
    record: list[str] = []

    def blocker() -> None:
        state.append("blocking")
        release.wait()
        state.append("finished")

    async def child() -> None:
        record.append("start")
        try:
            await to_thread.run_sync(blocker, abandon_on_cancel=True)
        finally:
            record.append("exit")

    limiter = to_thread.current_default_thread_limiter()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        assert record == ["start"]
        nursery.cancel_scope.cancel()
    # The task left; the thread did not, and still holds its token.
    assert record == ["start", "exit"]
    assert "finished" not in state
    assert limiter.borrowed_tokens == 1
    release.set()
    while limiter.borrowed_tokens:
        await corral.sleep(0.005)
    assert state == ["blocking", "finished"]


async def test_to_thread_cancellation_no_abandon() -> None:
    release = threading.Event()
    record: list[str] = []

    def blocker() -> str:
        release.wait()
        return "done"

    async def child() -> None:
        record.append("start")
        try:
            record.append(await to_thread.run_sync(blocker))
            await corral.lowlevel.checkpoint()
        finally:
            record.append("exit")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
        with corral.CancelScope(shield=True):
            for _ in range(10):
                await corral.lowlevel.checkpoint()
        assert record == ["start"]  # still waiting for the thread
        release.set()
    # The result was delivered, then the next checkpoint raised.
    assert record == ["start", "done", "exit"]


def test_to_thread_abandoned_thread_outlives_run(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.01)
    go: queue.Queue[None] = queue.Queue()
    done: queue.Queue[threading.Thread] = queue.Queue()

    def thread_fn() -> None:
        go.get()
        done.put(threading.current_thread())

    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(partial(to_thread.run_sync, thread_fn, abandon_on_cancel=True))
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    corral.run(main)
    go.put(None)
    thread = done.get(timeout=10)
    thread.join(timeout=10)
    out, err = capfd.readouterr()
    assert "Exception" not in out + err


@pytest.mark.parametrize("limit", [3, 5])
@pytest.mark.parametrize("abandon", [False, True])
@pytest.mark.parametrize("use_default_limiter", [False, True])
async def test_to_thread_limiter(limit: int, abandon: bool, use_default_limiter: bool) -> None:
    count = 2 * limit
    gate = threading.Event()
    lock = threading.Lock()
    if use_default_limiter:
        c = to_thread.current_default_thread_limiter()
        original = c.total_tokens
        c.total_tokens = limit
        limiter_arg = None
    else:
        c = CapacityLimiter(limit)
        original = limit
        limiter_arg = c

    class State:
        ran = 0
        running = 0
        high_water = 0
        parked = 0

    token = current_corral_token()

    def thread_fn(scope: corral.CancelScope) -> None:
        # Cancel our own task's scope: abandoning or not must not let more
        # than `limit` threads run at once.
        from_thread.run_sync(scope.cancel, corral_token=token)
        with lock:
            State.ran += 1
            State.running += 1
            State.high_water = max(State.high_water, State.running)
            State.parked += 1
        gate.wait()
        with lock:
            State.parked -= 1
            State.running -= 1

    async def run_thread(finished: Event) -> None:
        with corral.CancelScope() as scope:
            await to_thread.run_sync(
                thread_fn, scope, abandon_on_cancel=abandon, limiter=limiter_arg
            )
        finished.set()

    try:
        async with corral.open_nursery() as nursery:
            events = []
            for _ in range(count):
                events.append(Event())
                nursery.start_soon(run_thread, events[-1])
                await wait_all_tasks_blocked()
            if abandon:
                await events[0].wait()
                await wait_all_tasks_blocked()
            while State.parked != limit or c.statistics().tasks_waiting != limit:
                await corral.sleep(0.005)
            gate.set()
        assert State.high_water == limit
        while c.borrowed_tokens > 0:
            await corral.sleep(0.005)
        assert State.ran == count
        assert State.running == 0
    finally:
        c.total_tokens = original


async def test_default_limiter() -> None:
    limiter = to_thread.current_default_thread_limiter()
    assert isinstance(limiter, CapacityLimiter)
    assert limiter.total_tokens == 40
    assert to_thread.current_default_thread_limiter() is limiter

    def borrowed() -> int:
        return from_thread.run_sync(lambda: limiter.borrowed_tokens)

    assert await to_thread.run_sync(borrowed) == 1
    assert limiter.borrowed_tokens == 0


def test_default_limiter_is_per_run() -> None:
    async def get() -> CapacityLimiter:
        return to_thread.current_default_thread_limiter()

    assert corral.run(get) is not corral.run(get)


async def test_to_thread_custom_limiter() -> None:
    record: list[str] = []

    class CustomLimiter:
        async def acquire_on_behalf_of(self, borrower: object) -> None:
            record.append("acquire")
            self._borrower = borrower

        def release_on_behalf_of(self, borrower: object) -> None:
            record.append("release")
            assert borrower is self._borrower

    await to_thread.run_sync(lambda: None, limiter=CustomLimiter())  # type: ignore[arg-type]
    assert record == ["acquire", "release"]


async def test_to_thread_limiter_release_error() -> None:
    record: list[str] = []

    class BadLimiter:
        async def acquire_on_behalf_of(self, borrower: object) -> None:
            record.append("acquire")

        def release_on_behalf_of(self, borrower: object) -> NoReturn:
            record.append("release")
            raise ValueError("release on behalf")

    bad = BadLimiter()
    with pytest.raises(ValueError, match=r"^release on behalf$") as info:
        await to_thread.run_sync(lambda: None, limiter=bad)  # type: ignore[arg-type]
    assert info.value.__context__ is None
    assert record == ["acquire", "release"]

    d: dict[str, object] = {}
    with pytest.raises(ValueError, match=r"^release on behalf$") as info:
        await to_thread.run_sync(lambda: d["x"], limiter=bad)  # type: ignore[arg-type]
    assert isinstance(info.value.__context__, KeyError)


async def test_to_thread_fail_to_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    def bad_start(self: object, *args: object) -> NoReturn:
        raise RuntimeError("the engines canna take it captain")

    monkeypatch.setattr(_thread_cache.ThreadCache, "start_thread_soon", bad_start)
    limiter = to_thread.current_default_thread_limiter()
    with pytest.raises(RuntimeError, match="engines"):
        await to_thread.run_sync(lambda: None)  # pragma: no cover
    assert limiter.borrowed_tokens == 0


# ---------------------------------------------------------------- contexts


_cvar: contextvars.ContextVar[str] = contextvars.ContextVar("corral_test_cvar")


async def test_to_thread_contextvars() -> None:
    _cvar.set("main")

    def f() -> str:
        value = _cvar.get()
        with pytest.raises(sniffio.AsyncLibraryNotFoundError):
            sniffio.current_async_library()
        _cvar.set("worker")  # stays in the thread's copy
        return value

    assert await to_thread.run_sync(f) == "main"
    assert _cvar.get() == "main"


async def test_worker_thread_context_not_leaked() -> None:
    # A cached worker must not keep a previous job's context variables.
    def set_it() -> None:
        _cvar.set("leaked")

    def get_it() -> str:
        return _cvar.get("unset")

    await to_thread.run_sync(set_it)
    q: queue.Queue[outcome.Outcome[str]] = queue.Queue()
    start_thread_soon(get_it, q.put)
    assert q.get(timeout=10).unwrap() == "unset"


async def test_from_thread_contextvars() -> None:
    _cvar.set("main")

    def thread_fn() -> tuple[str, str, str]:
        _cvar.set("thread")

        def back_in_run_sync() -> str:
            assert sniffio.current_async_library() == "corral"
            value = _cvar.get()
            _cvar.set("back sync")  # does not leak out
            return value

        async def back_in_run() -> str:
            assert sniffio.current_async_library() == "corral"
            value = _cvar.get()
            _cvar.set("back async")
            return value

        a = from_thread.run_sync(back_in_run_sync)
        b = from_thread.run(back_in_run)
        return a, b, _cvar.get()

    assert await to_thread.run_sync(thread_fn) == ("thread", "thread", "thread")
    assert _cvar.get() == "main"


# ---------------------------------------------------------------- round trips


async def test_to_thread_token_is_the_callers() -> None:
    def thread_fn() -> CorralToken:
        return from_thread.run_sync(current_corral_token)

    assert await to_thread.run_sync(thread_fn) == current_corral_token()


async def test_from_thread_reuses_the_waiting_task() -> None:
    task = current_task()

    async def async_current_task() -> corral.lowlevel.Task:
        return current_task()

    assert task is await to_thread.run_sync(from_thread.run_sync, current_task)
    assert task is await to_thread.run_sync(from_thread.run, async_current_task)


async def test_abandonable_thread_uses_system_tasks() -> None:
    task = current_task()

    async def async_current_task() -> corral.lowlevel.Task:
        return current_task()

    other = await to_thread.run_sync(
        partial(from_thread.run, async_current_task), abandon_on_cancel=True
    )
    assert other is not task


async def test_from_thread_run_sync_rejects_async() -> None:
    async def async_fn() -> None:  # pragma: no cover
        pass

    def thread_fn() -> None:
        from_thread.run_sync(async_fn)  # type: ignore[arg-type]

    with pytest.raises(
        TypeError,
        match=r"^corral expected a synchronous function, but '.*async_fn' appears to be asynchronous$",
    ):
        await to_thread.run_sync(thread_fn)


async def test_from_thread_run_rejects_sync() -> None:
    def thread_fn() -> None:
        from_thread.run(lambda: None)  # type: ignore[arg-type, return-value]

    with pytest.raises(TypeError):
        await to_thread.run_sync(thread_fn)


async def test_recursive_to_thread() -> None:
    first: list[int] = []

    def reenter() -> int:
        first.append(threading.get_ident())
        return from_thread.run(to_thread.run_sync, threading.get_ident)

    assert await to_thread.run_sync(reenter) != first[0]


async def test_from_thread_host_cancelled() -> None:
    q: queue.Queue[bool] = queue.Queue()

    def sync_check() -> None:
        from_thread.run_sync(scope.cancel)
        try:
            from_thread.run_sync(bool)
        except corral.Cancelled:  # pragma: no cover
            q.put(True)
        else:
            q.put(False)

    # A sync function has no checkpoint: not cancelled; the scope then is
    # not caught either, since to_thread returned normally without one.
    with corral.CancelScope() as scope:
        await to_thread.run_sync(sync_check)
    assert not scope.cancelled_caught
    assert q.get_nowait() is False

    with corral.CancelScope() as scope:
        await to_thread.run_sync(sync_check, abandon_on_cancel=True)
    assert scope.cancelled_caught
    assert await to_thread.run_sync(partial(q.get, timeout=10)) is False

    async def no_checkpoint() -> bool:
        return True

    def async_check() -> None:
        from_thread.run_sync(scope.cancel)
        try:
            assert from_thread.run(no_checkpoint)
        except corral.Cancelled:  # pragma: no cover
            q.put(True)
        else:
            q.put(False)

    with corral.CancelScope() as scope:
        await to_thread.run_sync(async_check)
    assert not scope.cancelled_caught
    assert q.get_nowait() is False

    async def time_bomb() -> None:
        scope.cancel()
        with corral.fail_after(10):
            await corral.sleep_forever()

    # The function runs inside the waiting task's scopes: cancelling them
    # cancels it.
    with corral.CancelScope() as scope:
        await to_thread.run_sync(from_thread.run, time_bomb)
    assert scope.cancelled_caught


@pytest.mark.parametrize("cancel_the_scope", [False, True])
async def test_check_cancelled_no_abandon(cancel_the_scope: bool) -> None:
    q: queue.Queue[str] = queue.Queue()
    go = threading.Event()
    record: list[str] = []
    scope = corral.CancelScope()

    def f() -> None:
        try:
            from_thread.check_cancelled()
        except corral.Cancelled as e:  # pragma: no cover
            q.put(str(e))
        else:
            q.put("not cancelled")
        go.wait()
        from_thread.check_cancelled()

    async def child() -> None:
        with scope:
            record.append("start")
            try:
                await to_thread.run_sync(f)
            except corral.Cancelled as e:
                record.append(str(e))
                raise
            finally:
                record.append("exit")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        assert q.get(timeout=10) == "not cancelled"
        if cancel_the_scope:
            scope.cancel()
        go.set()
    if not cancel_the_scope:
        assert record == ["start", "exit"]
    else:
        assert scope.cancelled_caught
        assert len(record) == 3
        assert re.fullmatch(r"cancelled due to explicit from task <Task .*>", record[1])
        assert record[2] == "exit"


async def test_check_cancelled_abandon() -> None:
    q: queue.Queue[str] = queue.Queue()
    go = threading.Event()
    record: list[str] = []
    scope = corral.CancelScope()

    def f() -> None:
        go.wait()
        try:
            from_thread.check_cancelled()
        except corral.Cancelled as e:
            q.put(str(e))
        else:  # pragma: no cover
            q.put("not cancelled")

    async def child() -> None:
        with scope:
            record.append("start")
            try:
                await to_thread.run_sync(f, abandon_on_cancel=True)
            finally:
                record.append("exit")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        scope.cancel()
    go.set()
    assert scope.cancelled_caught
    assert record == ["start", "exit"]
    assert re.fullmatch(r"cancelled due to explicit from task <Task .*>", q.get(timeout=10))


async def test_wait_all_threads_completed() -> None:
    done = False
    e1, e2 = Event(), Event()
    exited1, exited2 = Event(), Event()

    async def use_thread(e: Event, exited: Event) -> None:
        await to_thread.run_sync(from_thread.run, e.wait)
        exited.set()

    async def waiter() -> None:
        nonlocal done
        await wait_all_threads_completed()
        done = True

    async with corral.open_nursery() as nursery:
        nursery.start_soon(use_thread, e1, exited1)
        nursery.start_soon(use_thread, e2, exited2)
        await wait_all_tasks_blocked()
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert not done
        assert active_thread_count() == 2
        e1.set()
        await exited1.wait()
        await wait_all_tasks_blocked()
        assert not done
        assert active_thread_count() == 1
        e2.set()
        await exited2.wait()
        await wait_all_tasks_blocked()
        assert done
        assert active_thread_count() == 0


async def test_wait_all_threads_completed_no_threads() -> None:
    await wait_all_threads_completed()
    assert active_thread_count() == 0


async def test_many_threads_round_trip() -> None:
    results: list[int] = []

    def work(i: int) -> int:
        time.sleep(0.001)
        return from_thread.run_sync(lambda: i * 2)

    async def one(i: int) -> None:
        results.append(await to_thread.run_sync(work, i))

    async with corral.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
    assert sorted(results) == [i * 2 for i in range(50)]


async def test_token_is_weak_referenceable() -> None:
    token = current_corral_token()
    assert weakref.ref(token)() is token


async def test_to_thread_and_helpers_are_checkpoints() -> None:
    with assert_checkpoints():
        await to_thread.run_sync(lambda: None)
    with assert_checkpoints():
        await wait_all_threads_completed()
