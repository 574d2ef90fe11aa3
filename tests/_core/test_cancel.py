"""CancelScope: levels, shields, deadlines, reasons and corruption errors."""

from __future__ import annotations

import re
from math import inf

import pytest

import corral
import corral.lowlevel as ll
from corral.testing import MockClock, wait_all_tasks_blocked


def norm(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x?", text)


async def test_cancel_is_level_triggered() -> None:
    with corral.CancelScope() as cs:
        cs.cancel()
        for _ in range(3):
            with pytest.raises(corral.Cancelled):
                await ll.checkpoint()
    assert cs.cancel_called
    assert not cs.cancelled_caught  # pytest.raises swallowed every Cancelled


async def test_cancelled_caught_and_reason() -> None:
    with corral.CancelScope() as cs:
        cs.cancel(reason="why not")
        try:
            await ll.checkpoint()
        except corral.Cancelled as exc:
            assert exc.source == "explicit"
            assert exc.reason == "why not"
            assert exc.source_task == repr(ll.current_task())
            assert str(exc) == (
                f"cancelled due to explicit with reason 'why not' from task {exc.source_task}"
            )
            raise
    assert cs.cancelled_caught


async def test_cancel_before_enter_applies_on_first_checkpoint() -> None:
    cs = corral.CancelScope()
    cs.cancel()
    record = []
    with cs:
        record.append("entered")  # no checkpoint yet: not raised
        await ll.checkpoint()
        record.append("unreachable")  # pragma: no cover
    assert record == ["entered"]
    assert cs.cancelled_caught


async def test_cancel_after_last_checkpoint_is_not_caught() -> None:
    with corral.CancelScope() as cs:
        await ll.checkpoint()
        cs.cancel()
    assert cs.cancel_called
    assert not cs.cancelled_caught


async def test_outer_cancel_passes_inner_scope() -> None:
    with corral.CancelScope() as outer:
        with corral.CancelScope() as inner:
            outer.cancel()
            await ll.checkpoint()
    assert outer.cancelled_caught
    assert not inner.cancelled_caught


async def test_cancel_reason_is_inherited_from_outer_scope() -> None:
    with corral.CancelScope() as outer:
        with corral.CancelScope():
            outer.cancel(reason="outer said so")
            with pytest.raises(corral.Cancelled) as info:
                await ll.checkpoint()
            assert info.value.reason == "outer said so"
            raise info.value


async def test_shield_blocks_outer_cancel_until_lifted() -> None:
    with corral.CancelScope() as outer:
        outer.cancel()
        with corral.CancelScope(shield=True) as shield:
            await ll.checkpoint()  # shielded: no Cancelled
            assert corral.current_effective_deadline() == inf
            shield.shield = False
            with pytest.raises(corral.Cancelled):
                await ll.checkpoint()
            shield.shield = True
            await ll.checkpoint()
        assert not shield.cancelled_caught
    assert not outer.cancelled_caught


async def test_shield_does_not_block_own_cancel() -> None:
    with corral.CancelScope(shield=True) as cs:
        cs.cancel()
        await ll.checkpoint()
    assert cs.cancelled_caught


async def test_shield_wakes_blocked_task_when_lifted() -> None:
    scopes: list[corral.CancelScope] = []

    async def sleeper() -> None:
        with corral.CancelScope() as outer:
            with corral.CancelScope(shield=True) as shield:
                scopes.extend([outer, shield])
                await corral.sleep_forever()
        assert outer.cancelled_caught

    async with corral.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await wait_all_tasks_blocked()
        outer, shield = scopes
        outer.cancel()
        await wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 1  # still shielded
        shield.shield = False
        await wait_all_tasks_blocked()
        assert not nursery.child_tasks


async def test_cancel_wakes_blocked_tasks_in_nested_scopes() -> None:
    woken = []

    async def child(i: int) -> None:
        with corral.CancelScope():
            try:
                await corral.sleep_forever()
            except corral.Cancelled:
                woken.append(i)
                raise

    async with corral.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(child, i)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert sorted(woken) == [0, 1, 2]


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match=r"^deadline must not be NaN$"):
        corral.CancelScope(deadline=float("nan"))
    with pytest.raises(ValueError, match=r"^relative deadline must not be NaN$"):
        corral.CancelScope(relative_deadline=float("nan"))
    with pytest.raises(ValueError, match=r"^timeout must be non-negative$"):
        corral.CancelScope(relative_deadline=-1)
    with pytest.raises(ValueError, match=r"^Cannot specify both a deadline and a relative deadline$"):
        corral.CancelScope(deadline=1, relative_deadline=1)


def test_property_errors() -> None:
    rel = corral.CancelScope(relative_deadline=5)
    with pytest.raises(
        RuntimeError, match=r"^Unentered relative cancel scope does not have an absolute deadline.$"
    ):
        rel.deadline  # noqa: B018
    with pytest.raises(
        RuntimeError, match=r"^Unentered relative cancel scope does not have an absolute deadline.$"
    ):
        rel.deadline = 3
    assert rel.relative_deadline == 5
    assert rel.is_relative is True
    absolute = corral.CancelScope(deadline=5)
    with pytest.raises(
        RuntimeError, match=r"^Unentered non-relative cancel scope does not have a relative deadline$"
    ):
        absolute.relative_deadline  # noqa: B018
    with pytest.raises(
        RuntimeError, match=r"^Unentered non-relative cancel scope does not have a relative deadline$"
    ):
        absolute.relative_deadline = 1
    assert absolute.is_relative is False
    with pytest.raises(ValueError, match=r"^relative deadline must be non-negative$"):
        absolute.relative_deadline = -1
    with pytest.raises(ValueError, match=r"^relative deadline must not be NaN$"):
        absolute.relative_deadline = float("nan")
    with pytest.raises(ValueError, match=r"^deadline must not be NaN$"):
        absolute.deadline = float("nan")
    with pytest.raises(TypeError, match=r"^shield must be a bool$"):
        absolute.shield = 1  # type: ignore[assignment]
    assert corral.CancelScope().relative_deadline == inf


async def test_single_use() -> None:
    cs = corral.CancelScope()
    with cs:
        pass
    assert cs.is_relative is None
    with pytest.raises(RuntimeError, match=r"^Each CancelScope may only be used for a single 'with' block$"):
        with cs:
            pass  # pragma: no cover


async def test_repr() -> None:
    cs = corral.CancelScope()
    assert norm(repr(cs)) == "<corral.CancelScope at 0x?, unbound>"
    with cs:
        assert norm(repr(cs)) == "<corral.CancelScope at 0x?, active>"
        cs.deadline = corral.current_time() + 2.5
        assert norm(repr(cs)) == "<corral.CancelScope at 0x?, active, deadline is 2.50 seconds from now>"
        cs.deadline = corral.current_time() - 1
        assert "seconds ago" in repr(cs)
        cs.cancel()
        assert norm(repr(cs)) == "<corral.CancelScope at 0x?, active, cancelled>"
    assert norm(repr(cs)) == "<corral.CancelScope at 0x?, exited, cancelled>"


# --------------------------------------------------------------------------
# deadlines


async def test_deadline_cancels(autojump_clock: MockClock) -> None:
    start = corral.current_time()
    with corral.CancelScope(deadline=start + 5) as cs:
        assert corral.current_effective_deadline() == start + 5
        await corral.sleep_forever()
    assert cs.cancelled_caught
    assert corral.current_time() == start + 5


async def test_relative_deadline_starts_on_entry(autojump_clock: MockClock) -> None:
    cs = corral.CancelScope(relative_deadline=3)
    await corral.sleep(10)
    start = corral.current_time()
    with cs:
        assert cs.deadline == start + 3
        assert cs.relative_deadline == 3
        await corral.sleep(100)
    assert corral.current_time() == start + 3


async def test_deadline_can_move_while_waiting(autojump_clock: MockClock) -> None:
    start = corral.current_time()

    async def mover(cs: corral.CancelScope) -> None:
        await corral.sleep(1)
        cs.deadline = start + 2
        await corral.sleep(0.5)
        cs.deadline += 10
        cs.relative_deadline = 4

    async with corral.open_nursery() as nursery:
        with corral.CancelScope(deadline=start + 100) as cs:
            nursery.start_soon(mover, cs)
            await corral.sleep_forever()
    assert corral.current_time() == start + 5.5


async def test_deadline_in_past_cancels_on_entry() -> None:
    with corral.CancelScope(deadline=corral.current_time() - 1) as cs:
        assert cs.cancel_called
        await ll.checkpoint()
    assert cs.cancelled_caught


async def test_deadline_reason_and_cancel_called(autojump_clock: MockClock) -> None:
    with corral.CancelScope(deadline=corral.current_time() + 1) as cs:
        with pytest.raises(corral.Cancelled) as info:
            await corral.sleep(2)
        assert info.value.source == "deadline"
    assert cs.cancel_called


async def test_effective_deadline_and_shield(autojump_clock: MockClock) -> None:
    now = corral.current_time()
    assert corral.current_effective_deadline() == inf
    with corral.CancelScope(deadline=now + 1):
        with corral.CancelScope(deadline=now + 5):
            assert corral.current_effective_deadline() == now + 1
            with corral.CancelScope(shield=True, deadline=now + 7):
                assert corral.current_effective_deadline() == now + 7
    with corral.CancelScope() as cs:
        cs.cancel()
        assert corral.current_effective_deadline() == -inf


async def test_many_deadline_changes_keep_heap_small(autojump_clock: MockClock) -> None:
    with corral.CancelScope() as cs:
        for i in range(5000):
            cs.deadline = corral.current_time() + 1000 + (i % 2)
        runner = ll.current_task()._runner
        assert len(runner.deadlines._heap) < 3000
        assert ll.current_statistics().seconds_to_next_deadline == 1001
    for _ in range(3000):
        with corral.move_on_after(5):
            pass
    assert runner.deadlines.active == 0
    assert ll.current_statistics().seconds_to_next_deadline == inf


# --------------------------------------------------------------------------
# nursery interactions


async def test_nursery_cancel_source_for_sibling_failure() -> None:
    reasons = []

    async def waiter() -> None:
        try:
            await corral.sleep_forever()
        except corral.Cancelled as exc:
            reasons.append(exc)
            raise

    async def crasher() -> None:
        await wait_all_tasks_blocked()
        raise KeyError("bad")

    with pytest.raises(BaseExceptionGroup):
        async with corral.open_nursery() as nursery:
            nursery.start_soon(waiter)
            nursery.start_soon(crasher)
    [exc] = reasons
    assert exc.source == "nursery"
    assert exc.reason == "child task raised exception KeyError('bad')"


async def test_cancelled_in_group_is_stripped_by_scope() -> None:
    # A nursery inside a cancelled scope: the group of Cancelled dissolves.
    with corral.CancelScope() as cs:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(corral.sleep_forever)
            nursery.start_soon(corral.sleep_forever)
            await wait_all_tasks_blocked()
            cs.cancel()
    assert cs.cancelled_caught


async def test_cancelled_group_keeps_other_errors() -> None:
    async def crash_on_cancel() -> None:
        try:
            await corral.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    with pytest.raises(BaseExceptionGroup) as info:
        with corral.CancelScope() as cs:
            async with corral.open_nursery() as nursery:
                nursery.start_soon(crash_on_cancel)
                nursery.start_soon(corral.sleep_forever)
                await wait_all_tasks_blocked()
                cs.cancel()
    assert cs.cancelled_caught
    assert [type(e) for e in info.value.exceptions] == [ValueError]


# --------------------------------------------------------------------------
# corruption


MISNESTING_TAIL = "\nThis is probably a bug in your code, that has caused corral's internal state to\n"


async def test_exit_twice_error() -> None:
    cs = corral.CancelScope()
    with cs:
        pass
    with pytest.raises(RuntimeError) as info:
        cs.__exit__(None, None, None)
    assert norm(str(info.value)) == (
        "Cancel scope stack corrupted: attempted to exit "
        "<corral.CancelScope at 0x?, exited> which had already been exited"
    )


def test_misnested_exit_error() -> None:
    messages = []

    async def main() -> None:
        outer = corral.CancelScope()
        inner = corral.CancelScope()
        outer.__enter__()
        inner.__enter__()
        try:
            outer.__exit__(None, None, None)
        except RuntimeError as exc:
            messages.append(norm(str(exc)))
        # The abandoned inner scope can still be exited without a second error.
        inner.__exit__(None, None, None)

    corral.run(main)
    assert messages[0].startswith(
        "Cancel scope stack corrupted: attempted to exit <corral.CancelScope at 0x?, active> "
        "in <Task 'test_cancel.test_misnested_exit_error.<locals>.main' at 0x?> "
        "that's still within its child <corral.CancelScope at 0x?, active>\n"
    )
    assert MISNESTING_TAIL in messages[0]


def test_task_exiting_inside_closed_scope_error() -> None:
    async def main() -> None:
        async def child(task_status: corral.TaskStatus[None]) -> None:
            # Enter a scope in the child, then close the nursery scope
            # around it from outside: the child is left inside a closed
            # scope when it exits.
            task_status.started()
            await corral.sleep_forever()

        mgr = corral.open_nursery()
        nursery = await mgr.__aenter__()
        await nursery.start(child)
        # Closing the nursery's scope while the child still runs.
        nursery.cancel_scope.__exit__(None, None, None)

    with pytest.raises(BaseException) as info:
        corral.run(main)
    text = "".join(norm(str(e)) for e in _leaves(info.value))
    assert "stack corrupted" in text


async def test_exit_from_unrelated_task_error() -> None:
    async def opener(task_status: corral.TaskStatus[corral.CancelScope]) -> None:
        cs = corral.CancelScope()
        cs.__enter__()
        task_status.started(cs)
        await corral.sleep(0.001)
        cs.__exit__(None, None, None)

    async with corral.open_nursery() as nursery:
        cs = await nursery.start(opener)
        with pytest.raises(RuntimeError) as info:
            cs.__exit__(None, None, None)
    assert re.match(
        r"^Cancel scope stack corrupted: attempted to exit <corral.CancelScope at 0x\?, active> "
        r"from unrelated <Task .* at 0x\?>\n",
        norm(str(info.value)),
    )
    assert MISNESTING_TAIL in str(info.value)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    out = [exc]
    if exc.__context__ is not None:
        out += _leaves(exc.__context__)
    return out


def test_enter_outside_task() -> None:
    with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
        with corral.CancelScope():
            pass  # pragma: no cover


def test_cancel_called_outside_a_run_is_as_in_trio() -> None:
    # Answering reads the run's clock, so outside a run it raises, with or
    # without a deadline...
    for scope in (
        corral.CancelScope(),
        corral.CancelScope(deadline=5),
        corral.CancelScope(relative_deadline=5),
    ):
        with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
            scope.cancel_called  # noqa: B018
    # ...unless it is already cancelled, or was exited.
    scope = corral.CancelScope()
    scope.cancel()
    assert scope.cancel_called

    async def main() -> corral.CancelScope:
        with corral.CancelScope() as exited:
            pass
        return exited

    exited = corral.run(main)
    assert exited.cancel_called is False
