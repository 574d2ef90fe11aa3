"""The run loop, nurseries and tasks: Trio's semantics, checked on corral."""

from __future__ import annotations

import contextvars
import functools
import gc
import sys
from math import inf

import pytest
import sniffio

import corral
import corral.lowlevel as ll
from corral.testing import MockClock, wait_all_tasks_blocked


def autojump_run(fn, *args, **kwargs):
    return corral.run(fn, *args, clock=MockClock(autojump_threshold=0), **kwargs)


# --------------------------------------------------------------------------
# run()


def test_run_returns_value_and_passes_args() -> None:
    async def main(x: int, y: int) -> int:
        return x + y

    assert corral.run(main, 1, 2) == 3


def test_run_propagates_exception() -> None:
    async def main() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        corral.run(main)


def test_run_refuses_to_nest() -> None:
    async def inner() -> None:
        pass

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"^Attempted to call run\(\) from inside a run\(\)$"):
            corral.run(inner)

    corral.run(main)


def test_run_rejects_non_async() -> None:
    def sync() -> None:
        pass

    with pytest.raises(TypeError, match="appears to be synchronous"):
        corral.run(sync)  # type: ignore[arg-type]

    async def coro_fn() -> None:
        pass

    coro = coro_fn()
    with pytest.raises(TypeError, match="expecting an async function, but instead it got a coroutine"):
        corral.run(coro)  # type: ignore[arg-type]


def test_sniffio_reports_corral() -> None:
    async def main() -> str:
        return sniffio.current_async_library()

    assert corral.run(main) == "corral"
    with pytest.raises(sniffio.AsyncLibraryNotFoundError):
        sniffio.current_async_library()


def test_outside_run_errors() -> None:
    with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
        corral.current_time()
    with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
        ll.current_task()
    assert not ll.in_corral_run()
    assert not ll.in_corral_task()
    assert ll.in_trio_run is ll.in_corral_run


async def test_in_run_and_task() -> None:
    assert ll.in_corral_run()
    assert ll.in_corral_task()
    assert ll.current_root_task() is not None
    assert ll.current_root_task() is not ll.current_task()


def test_unrecognized_yield_message() -> None:
    import types

    @types.coroutine
    def foreign():
        yield "hello"

    async def main() -> None:
        await foreign()

    with pytest.raises(TypeError, match="unrecognized yield message 'hello'"):
        corral.run(main)


def test_system_task_crash_is_internal_error() -> None:
    async def crash() -> None:
        raise KeyError

    async def main() -> None:
        ll.spawn_system_task(crash)
        await corral.sleep_forever()

    with pytest.raises(corral.CorralInternalError) as info:
        corral.run(main)
    group = info.value.__cause__
    assert isinstance(group, BaseExceptionGroup)
    matched, _ = group.split(KeyError)
    assert matched is not None


def test_abort_fn_bad_return_is_internal_error() -> None:
    # The crashed run abandons its coroutines, whose finalizers complain when
    # collected; run it in a child process to keep this process clean.
    import subprocess
    import textwrap

    code = textwrap.dedent(
        """
        import corral, corral.lowlevel as ll
        async def main():
            with corral.CancelScope() as cs:
                cs.cancel()
                await ll.wait_task_rescheduled(lambda _: "nope")
        try:
            corral.run(main)
        except corral.CorralInternalError as exc:
            print("OK:", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "OK: abort function must return Abort enum" in result.stdout


# --------------------------------------------------------------------------
# nurseries


async def test_nursery_waits_for_children() -> None:
    record = []

    async def child(n: int) -> None:
        await corral.sleep(0.001 * n)
        record.append(n)

    async with corral.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(child, i)
        assert len(nursery.child_tasks) == 3
        assert nursery.parent_task is ll.current_task()
    assert sorted(record) == [0, 1, 2]


def test_child_crash_cancels_siblings_and_groups_errors() -> None:
    async def crasher(exc: BaseException) -> None:
        raise exc

    cancelled = []

    async def sleeper() -> None:
        try:
            await corral.sleep_forever()
        except corral.Cancelled as c:
            cancelled.append(c)
            raise

    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            nursery.start_soon(crasher, KeyError("a"))
            nursery.start_soon(crasher, ValueError("b"))

    with pytest.raises(BaseExceptionGroup) as info:
        autojump_run(main)
    group = info.value
    assert str(group).startswith("Exceptions from corral nursery")
    assert sorted(type(e).__name__ for e in group.exceptions) == ["KeyError", "ValueError"]
    assert len(cancelled) == 1
    assert cancelled[0].source == "nursery"
    assert cancelled[0].reason is not None
    assert cancelled[0].reason.startswith("child task raised exception")


def test_single_error_is_wrapped_strictly() -> None:
    async def main() -> None:
        async with corral.open_nursery():
            raise KeyError("body")

    with pytest.raises(BaseExceptionGroup) as info:
        corral.run(main)
    assert isinstance(info.value.exceptions[0], KeyError)


def test_nursery_body_error_cancels_children() -> None:
    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(corral.sleep_forever)
            await ll.checkpoint()
            raise KeyError

    with pytest.raises(BaseExceptionGroup) as info:
        corral.run(main)
    assert [type(e) for e in info.value.exceptions] == [KeyError]


async def test_nursery_cancel_scope_cancels_all() -> None:
    async with corral.open_nursery() as nursery:
        nursery.start_soon(corral.sleep_forever)
        nursery.start_soon(corral.sleep_forever)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert nursery.cancel_scope.cancelled_caught


async def test_closed_nursery_rejects_new_tasks() -> None:
    async with corral.open_nursery() as nursery:
        pass
    with pytest.raises(RuntimeError, match=r"^Nursery is closed to new arrivals$"):
        nursery.start_soon(ll.checkpoint)
    with pytest.raises(RuntimeError, match=r"^Nursery is closed to new arrivals$"):
        await nursery.start(ll.checkpoint)


async def test_nursery_is_not_a_sync_context_manager() -> None:
    with pytest.raises(
        RuntimeError, match=r"^use 'async with open_nursery\(...\)', not 'with open_nursery\(...\)'$"
    ):
        with corral.open_nursery():  # type: ignore[attr-defined]
            pass


async def test_nursery_exit_is_schedule_point_not_cancel_point() -> None:
    task = ll.current_task()
    with corral.CancelScope() as cs:
        cs.cancel()
        before = task._schedule_points
        async with corral.open_nursery():
            pass
        assert task._schedule_points == before + 1
    assert not cs.cancelled_caught


async def test_nursery_and_task_introspection() -> None:
    async def child() -> None:
        me = ll.current_task()
        assert me.parent_nursery is nursery
        assert me.child_nurseries == []
        assert me.eventual_parent_nursery is None
        await corral.sleep(0)

    async with corral.open_nursery() as nursery:
        assert ll.current_task().child_nurseries == [nursery]
        nursery.start_soon(child, name="kid")
        [t] = nursery.child_tasks
        assert t.name == "kid"
        assert repr(t).startswith("<Task 'kid' at ")


async def test_task_names() -> None:
    async def named() -> None:
        pass

    async with corral.open_nursery() as nursery:
        nursery.start_soon(named)
        nursery.start_soon(functools.partial(named))
        nursery.start_soon(named, name=42)
        names = sorted(t.name for t in nursery.child_tasks)
    suffix = "test_task_names.<locals>.named"
    assert names[0] == "42"
    assert names[1].endswith(suffix) and names[2].endswith(suffix)


def test_task_exit_with_open_nursery_is_an_error() -> None:
    async def main() -> None:
        mgr = corral.open_nursery()
        await mgr.__aenter__()

    with pytest.raises(RuntimeError, match=r"^Nursery stack corrupted"):
        corral.run(main)


# --------------------------------------------------------------------------
# Nursery.start


async def test_start_returns_started_value_and_moves_task() -> None:
    async def worker(task_status: corral.TaskStatus[int] = corral.TASK_STATUS_IGNORED) -> None:
        me = ll.current_task()
        assert me.eventual_parent_nursery is nursery
        assert me.parent_nursery is not nursery
        task_status.started(7)
        assert me.parent_nursery is nursery
        assert me.eventual_parent_nursery is None
        await corral.sleep(0)

    async with corral.open_nursery() as nursery:
        assert await nursery.start(worker) == 7


async def test_start_without_started_is_error() -> None:
    async def lazy(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        pass

    async with corral.open_nursery() as nursery:
        with pytest.raises(
            RuntimeError, match=r"^child exited without calling task_status.started\(\)$"
        ):
            await nursery.start(lazy)


async def test_start_error_before_started_comes_out_of_start() -> None:
    async def broken(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        raise KeyError("early")

    async with corral.open_nursery() as nursery:
        with pytest.raises(KeyError, match="early"):
            await nursery.start(broken)


async def test_started_twice() -> None:
    async def twice(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with pytest.raises(RuntimeError, match=r"^called 'started' twice on the same task status$"):
            task_status.started()

    async with corral.open_nursery() as nursery:
        await nursery.start(twice)


async def test_start_cancelled_cancels_child_and_does_not_move_it() -> None:
    record = []

    async def child(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        try:
            await corral.sleep_forever()
        except corral.Cancelled:
            record.append("cancelled")
            task_status.started()
            raise

    async with corral.open_nursery() as nursery:
        with corral.CancelScope() as cs:
            nursery.start_soon(lambda: _cancel_later(cs))
            await nursery.start(child)
        assert cs.cancelled_caught
    assert record == ["cancelled"]


async def _cancel_later(cs: corral.CancelScope) -> None:
    await wait_all_tasks_blocked()
    cs.cancel()


async def test_start_keeps_nursery_open_while_pending() -> None:
    record = []

    async def slow(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        await corral.sleep(0.01)
        task_status.started()
        await corral.sleep(0.01)
        record.append("slow done")

    async with corral.open_nursery() as outer:
        async with corral.open_nursery() as target:
            outer.start_soon(functools.partial(target.start, slow))
            await wait_all_tasks_blocked()
        # The block ended while start() was pending, yet the nursery stayed
        # open, received the task, and waited for it.
        assert record == ["slow done"]


def test_task_status_ignored_repr() -> None:
    assert repr(corral.TASK_STATUS_IGNORED) == "TASK_STATUS_IGNORED"
    corral.TASK_STATUS_IGNORED.started(123)


# --------------------------------------------------------------------------
# checkpoints and traps


async def test_checkpoint_counters() -> None:
    task = ll.current_task()
    c, s = task._cancel_points, task._schedule_points
    await ll.checkpoint()
    assert (task._cancel_points, task._schedule_points) == (c + 1, s + 1)
    await ll.cancel_shielded_checkpoint()
    assert (task._cancel_points, task._schedule_points) == (c + 1, s + 2)
    await ll.checkpoint_if_cancelled()
    assert (task._cancel_points, task._schedule_points) == (c + 2, s + 2)
    await corral.sleep(0.0001)
    assert (task._cancel_points, task._schedule_points) == (c + 3, s + 3)


async def test_checkpoint_if_cancelled_raises_only_when_cancelled() -> None:
    with corral.CancelScope() as cs:
        await ll.checkpoint_if_cancelled()
        cs.cancel()
        with pytest.raises(corral.Cancelled):
            await ll.checkpoint_if_cancelled()
        await ll.cancel_shielded_checkpoint()  # not a cancel point
    assert not cs.cancelled_caught


async def test_reschedule_with_value_and_error() -> None:
    import outcome

    task = ll.current_task()

    async def waker(result: outcome.Outcome[object]) -> None:
        await wait_all_tasks_blocked()
        ll.reschedule(task, result)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(waker, outcome.Value(5))
        assert await ll.wait_task_rescheduled(lambda _: ll.Abort.FAILED) == 5
    async with corral.open_nursery() as nursery:
        nursery.start_soon(waker, outcome.Error(KeyError("x")))
        with pytest.raises(KeyError):
            await ll.wait_task_rescheduled(lambda _: ll.Abort.FAILED)


async def test_delayed_cancel_pattern() -> None:
    # abort returns FAILED: no Cancelled is delivered until someone
    # reschedules the task; they may deliver the cancellation late.
    import outcome

    task = ll.current_task()
    aborts = []

    def abort(raise_cancel: ll.RaiseCancelT) -> ll.Abort:
        aborts.append(raise_cancel)
        return ll.Abort.FAILED

    async def completer() -> None:
        await wait_all_tasks_blocked()
        cs.cancel()
        await wait_all_tasks_blocked()
        assert len(aborts) == 1
        # still parked despite the cancel
        assert task.custom_sleep_data == "parked"
        ll.reschedule(task, outcome.capture(aborts[0]))

    async with corral.open_nursery() as nursery:
        with corral.CancelScope() as cs:
            nursery.start_soon(completer)
            task.custom_sleep_data = "parked"
            await ll.wait_task_rescheduled(abort)
        assert cs.cancelled_caught
        assert task.custom_sleep_data is None

    # FAILED, then a normal completion: the result is returned, and the scope
    # raises at the next checkpoint.
    async def completer2() -> None:
        await wait_all_tasks_blocked()
        cs2.cancel()
        await wait_all_tasks_blocked()
        ll.reschedule(task, outcome.Value("done"))

    async with corral.open_nursery() as nursery:
        with corral.CancelScope() as cs2:
            nursery.start_soon(completer2)
            assert await ll.wait_task_rescheduled(lambda _: ll.Abort.FAILED) == "done"
            reached = 1
            await ll.checkpoint()
            reached = 2  # pragma: no cover
        assert reached == 1
        assert cs2.cancelled_caught


async def test_permanently_detach_refuses_with_open_nursery() -> None:
    import outcome

    async with corral.open_nursery():
        with pytest.raises(
            RuntimeError, match=r"^can't permanently detach a coroutine object with open nurseries$"
        ):
            await ll.permanently_detach_coroutine_object(outcome.Value(None))


# --------------------------------------------------------------------------
# contextvars

_cv: contextvars.ContextVar[str] = contextvars.ContextVar("_cv", default="unset")


async def test_children_inherit_a_copy_of_context() -> None:
    _cv.set("parent")
    seen = []

    async def child() -> None:
        seen.append(_cv.get())
        _cv.set("child")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(child)
    assert seen == ["parent"]
    assert _cv.get() == "parent"


async def test_system_tasks_do_not_inherit_context() -> None:
    _cv.set("parent")
    seen = []

    async def sys_child() -> None:
        seen.append(_cv.get())

    ll.spawn_system_task(sys_child)
    await wait_all_tasks_blocked()
    assert seen == ["unset"]


# --------------------------------------------------------------------------
# statistics and RunVar


async def test_current_statistics() -> None:
    stats = ll.current_statistics()
    assert stats.tasks_living >= 2
    assert stats.seconds_to_next_deadline == inf
    assert stats.io_statistics.backend  # type: ignore[attr-defined]
    with corral.move_on_after(5):
        stats = ll.current_statistics()
        assert 0 < stats.seconds_to_next_deadline <= 5


def test_run_var() -> None:
    v1: ll.RunVar[str] = ll.RunVar("v1")
    v2: ll.RunVar[str] = ll.RunVar("v2", default="d")

    async def main() -> None:
        with pytest.raises(LookupError):
            v1.get()
        assert v1.get("x") == "x"
        assert v2.get() == "d"
        token = v1.set("one")
        assert v1.get() == "one"
        v1.reset(token)
        with pytest.raises(LookupError):
            v1.get()
        with pytest.raises(ValueError, match=r"^token has already been used$"):
            v1.reset(token)
        token2 = v2.set("two")
        with pytest.raises(ValueError, match=r"^token is not for us$"):
            v1.reset(token2)

    corral.run(main)
    corral.run(main)  # values do not leak between runs
    with pytest.raises(RuntimeError, match=r"^Cannot be used outside of a run context$"):
        v1.get()
    assert repr(v1) == "<RunVar name='v1'>"


def test_cancelled_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        corral.Cancelled()


def test_locals_released_promptly_after_cancel() -> None:
    class Marker:
        pass

    import weakref

    ref = None

    async def holder() -> None:
        nonlocal ref
        m = Marker()
        ref = weakref.ref(m)
        await corral.sleep_forever()

    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(holder)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        if sys.implementation.name == "cpython":
            assert ref is not None and ref() is None

    gc.disable()
    try:
        corral.run(main)
    finally:
        gc.enable()


# --------------------------------------------------------------------------
# start(): more edge cases


async def test_started_moves_inner_cancel_scopes_to_new_nursery() -> None:
    record = []

    async def child(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        with corral.CancelScope() as inner:
            task_status.started()
            try:
                await corral.sleep_forever()
            finally:
                record.append(inner.cancel_called)
        record.append("not reached: the outer cancellation passes the inner scope")

    async with corral.open_nursery() as nursery:
        await nursery.start(child)
        # The child's scope now hangs off `nursery`: cancelling it reaches it.
        nursery.cancel_scope.cancel()
    assert record == [False]
    assert nursery.cancel_scope.cancelled_caught


async def test_start_into_nursery_cancelled_meanwhile() -> None:
    async def child(task_status: corral.TaskStatus[str] = corral.TASK_STATUS_IGNORED) -> None:
        task_status.started("hi")
        await corral.sleep_forever()

    async with corral.open_nursery() as nursery:
        nursery.cancel_scope.cancel()
        # start() itself runs in the caller's context (not cancelled here),
        # and the child lands in the cancelled nursery and gets cancelled.
        with corral.CancelScope(shield=True):
            assert await nursery.start(child) == "hi"


async def test_start_passes_args_and_name() -> None:
    async def child(a: int, b: int, task_status: corral.TaskStatus[int]) -> None:
        assert ll.current_task().name == "my-child"
        task_status.started(a + b)

    async with corral.open_nursery() as nursery:
        assert await nursery.start(child, 1, 2, name="my-child") == 3


async def test_start_error_after_started_goes_to_nursery() -> None:
    async def child(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await ll.checkpoint()
        raise ValueError("late")

    with pytest.raises(BaseExceptionGroup) as info:
        async with corral.open_nursery() as nursery:
            await nursery.start(child)
            await corral.sleep_forever()
    assert [type(e) for e in info.value.exceptions] == [ValueError]


async def test_start_child_with_its_own_nursery() -> None:
    async def grandchild(ev: list[str]) -> None:
        await ll.checkpoint()
        ev.append("grandchild")

    async def child(task_status: corral.TaskStatus[None] = corral.TASK_STATUS_IGNORED) -> None:
        ev: list[str] = []
        async with corral.open_nursery() as inner:
            inner.start_soon(grandchild, ev)
            task_status.started()
        assert ev == ["grandchild"]

    async with corral.open_nursery() as nursery:
        await nursery.start(child)


def test_strict_exception_groups_false_collapses_single_error() -> None:
    async def main() -> None:
        async with corral.open_nursery():
            raise KeyError("one")

    with pytest.raises(KeyError), pytest.warns(DeprecationWarning):
        corral.run(main, strict_exception_groups=False)

    async def main2() -> None:
        async with corral.open_nursery(strict_exception_groups=False):
            raise KeyError("one")

    with pytest.raises(KeyError), pytest.warns(DeprecationWarning):
        corral.run(main2)


async def test_iter_await_frames() -> None:
    async def deep() -> None:
        await corral.sleep_forever()

    async def child() -> None:
        await deep()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(child)
        await wait_all_tasks_blocked()
        [task] = nursery.child_tasks
        names = [frame.f_code.co_name for frame, _ in task.iter_await_frames()]
        assert names[:3] == ["child", "deep", "sleep_forever"]
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# coroutine detach / reattach


def test_permanently_detach_coroutine_object() -> None:
    import types

    import outcome

    task: ll.Task | None = None
    pdco_outcome: outcome.Outcome[object] | None = None

    async def detachable_coroutine(
        task_outcome: outcome.Outcome[None], yield_value: object
    ) -> None:
        await ll.checkpoint()
        nonlocal task, pdco_outcome
        task = ll.current_task()
        pdco_outcome = await outcome.acapture(
            ll.permanently_detach_coroutine_object, task_outcome
        )
        await async_yield(yield_value)

    @types.coroutine
    def async_yield(value: object):  # type: ignore[no-untyped-def]
        yield value

    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(detachable_coroutine, outcome.Value(None), "I'm free!")
        # The task exited from corral's point of view; the coroutine is now
        # ours to drive.
        assert task is not None
        assert pdco_outcome is None
        assert task.coro.send("be free!") == "I'm free!"
        assert pdco_outcome == outcome.Value("be free!")
        with pytest.raises(StopIteration):
            task.coro.send(None)

    corral.run(main)


def test_temporarily_detach_and_reattach() -> None:
    import types

    @types.coroutine
    def async_yield(value: object):  # type: ignore[no-untyped-def]
        return (yield value)

    record: list[object] = []

    async def detachable() -> None:
        await ll.checkpoint()
        task = ll.current_task()

        def abort_fn(_: ll.RaiseCancelT) -> ll.Abort:  # pragma: no cover
            return ll.Abort.FAILED

        got = await ll.temporarily_detach_coroutine_object(abort_fn)
        record.append(got)
        # Running under the "foreign" runner now.
        record.append(await async_yield("foreign step"))
        await ll.reattach_detached_coroutine_object(task, "back to corral")
        await ll.checkpoint()
        record.append("done")

    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(detachable)
            await wait_all_tasks_blocked()
            [task] = nursery.child_tasks
            assert task.coro.send("hello") == "foreign step"
            assert task.coro.send("world") == "back to corral"
            # corral resumes it from here.
        with pytest.raises(RuntimeError, match=r"^given task does not match calling coroutine$"):
            await ll.reattach_detached_coroutine_object(task, None)

    corral.run(main)
    assert record == ["hello", "world", "done"]
